"""The size release: a private run publishes no value computed from its exact training-set size N.
N_hat = N + Gaussian noise (OpenDP) is released first, composed at the head of the run's
accountant history, and the sample rate, the steps and the default delta are computed from it
(docs/privacy.md, "Neighbouring relation and published counts")."""

from __future__ import annotations

import math

import pytest

import privsynth
from privsynth.privacy import Ledger
from privsynth.privacy import size_release as size_mech
from privsynth.privacy.accounting import epsilon_from_history
from privsynth.privacy.release import gaussian
from tests.models.test_warmup import _dp_accounting_rdp
from tests.test_published_counts import _walk

N_TOTAL, N_TRAIN = 120, 96  # make_tiny_dataset's default size, holdout 0.2
OFFSET = 37  # the noise the patched mechanism adds (a large sigma's draw, made repeatable)


@pytest.fixture
def draws(monkeypatch):
    """Every size release drawn: (the exact N it saw, its scale); the noise is +OFFSET."""
    seen = []

    def fixed(values, sigma, sensitivity=1.0, name="", q=1.0):
        seen.append((float(values[0]), sigma * sensitivity))
        return values.double() + OFFSET, gaussian(name, sigma, sensitivity)

    monkeypatch.setattr(size_mech, "gaussian_noise_release", fixed)
    return seen


def _gan(data, out, fast_gan, **kw):
    kw.setdefault("epsilon", 8.0)
    return privsynth.train(
        data, "dpgan", out, config=fast_gan, accountant="rdp", progress=False, **kw
    )


def test_size_release_noise_reaches_the_published_sample_rate_and_delta(
    tmp_path, tiny_dataset, fast_gan, draws
):
    run = _gan(tiny_dataset, tmp_path / "r", fast_gan, size_sigma=50.0)
    assert draws == [(N_TRAIN, 50.0)]  # one release, at the option's sigma
    pv = run.card["privacy"]
    n_hat = N_TRAIN + OFFSET
    assert pv["size_release"]["dp_count"] == n_hat and pv["size_release"]["sigma"] == 50.0
    b = fast_gan["batch_size"]
    sgd = pv["dp_sgd"]
    assert sgd["sample_rate"] == pytest.approx(b / n_hat)
    assert sgd["sample_rate"] != pytest.approx(1 / math.ceil(N_TRAIN / b))
    assert sgd["planned_steps"] == math.ceil(fast_gan["epochs"] / (b / n_hat))
    assert sgd["delta"] == pytest.approx(1 / (10 * n_hat)) == run.delta
    assert pv["dp_sgd_plan"]["sample_rate"] == sgd["sample_rate"]
    nb = pv["neighbouring"]
    assert "limitation" not in nb and "disclosed_by_parameters" not in nb
    assert {"release": "size_release", "dp_count": n_hat} in [
        {k: c[k] for k in ("release", "dp_count")} for c in nb["published_counts"]
    ]
    exact = [
        p
        for p, v in _walk(run.card)
        if isinstance(v, (int, float))
        and not isinstance(v, bool)
        and (v in (N_TRAIN, N_TOTAL) or v == pytest.approx(1 / (10 * N_TRAIN), rel=1e-9))
    ]
    assert exact == []


def test_card_and_ledger_epsilon_compose_the_size_release(tmp_path, tiny_dataset, fast_gan):
    run = _gan(tiny_dataset, tmp_path / "r", fast_gan, delta=1e-4, size_share=0.2)
    pv = run.card["privacy"]
    size, sgd = pv["size_release"], pv["dp_sgd"]
    assert sgd["history"][0] == [size["sigma"], 1.0, 1] == size["history"][0]
    assert sgd["includes_size_release"] and not sgd["includes_warmup_release"]
    # the release alone costs its share of the target (Opacus' PRV calibration at the user's
    # delta); the card states it in the run's accountant (RDP here: a looser bound)
    alone = epsilon_from_history(size["history"], 1e-4, "prv")
    assert alone == pytest.approx(0.2 * 8.0, rel=0.01)
    assert size["epsilon_alone"] == epsilon_from_history(size["history"], 1e-4, "rdp")
    assert 8.0 * 0.99 <= pv["epsilon"] <= 8.0 + 1e-9
    assert pv["epsilon"] == pytest.approx(_dp_accounting_rdp(sgd["history"], 1e-4), rel=5e-3)
    sgd_alone = epsilon_from_history(sgd["history"][1:], 1e-4, "rdp")
    assert pv["epsilon"] < size["epsilon_alone"] + sgd_alone  # composed, not a naive sum
    (ds,) = Ledger().datasets()
    (seg,) = ds["runs"][run.card["run_id"]]["segments"]
    assert seg["accounting"]["booked"] == sgd["history"]
    assert ds["epsilon_spent"] == pytest.approx(pv["epsilon"], rel=1e-9)


def test_killed_and_resumed_run_keeps_its_n_hat(tmp_path, tiny_dataset, fast_gan, monkeypatch):
    real, calls = size_mech.release_size, []
    monkeypatch.setattr(size_mech, "release_size", lambda *a: calls.append(1) or real(*a))
    from privsynth.orchestrate import trainer

    real_fit, fits = trainer._fit, []

    def killed_once(*a, **k):
        fits.append(1)
        if len(fits) == 1:
            raise KeyboardInterrupt  # killed after the size release, before the first step
        return real_fit(*a, **k)

    monkeypatch.setattr(trainer, "_fit", killed_once)
    out = tmp_path / "r"
    with pytest.raises(KeyboardInterrupt):
        _gan(tiny_dataset, out, fast_gan, delta=1e-4)
    first = privsynth.run.read_card(out)["privacy"]["size_release"]
    run = _gan(tiny_dataset, out, fast_gan, delta=1e-4)
    assert calls == [1] and len(fits) == 2  # drawn once, never again on resume
    pv = run.card["privacy"]
    assert pv["size_release"]["dp_count"] == first["dp_count"]
    hist = pv["dp_sgd"]["history"]
    assert hist[0] == first["history"][0]
    assert [h for h in hist if h[1] == 1.0] == [hist[0]]  # in the history once
    b = fast_gan["batch_size"]
    assert pv["dp_sgd"]["sample_rate"] == pytest.approx(min(1.0, b / first["dp_count"]))
    (ds,) = Ledger().datasets()
    entry = ds["runs"][run.card["run_id"]]
    first_seg, last = entry["segments"]
    assert first_seg["accounting"]["booked"] == [hist[0]]  # booked before it was drawn
    assert [h[1] for h in last["accounting"]["booked"]].count(1.0) == 1  # once for the run
    assert entry["epsilon"] == pytest.approx(pv["epsilon"])


def test_dpmerf_card_publishes_n_hat_and_a_data_independent_delta(tmp_path, tiny_dataset, draws):
    run = privsynth.train(
        tiny_dataset,
        "dpmerf",
        tmp_path / "m",
        epsilon=5.0,
        accountant="rdp",
        config={"steps": 3, "n_features": 20},
        progress=False,
    )
    n_hat = N_TRAIN + OFFSET
    pv = run.card["privacy"]
    assert pv["delta"] == pytest.approx(1 / (10 * n_hat)) == pv["dp_sgd"]["delta"]
    releases = {c["release"]: c["dp_count"] for c in pv["neighbouring"]["published_counts"]}
    assert releases["size_release"] == n_hat and "dpmerf" in releases
    hist = pv["dp_sgd"]["history"]
    assert hist[0] == [pv["size_release"]["sigma"], 1.0, 1] and len(hist) == 2
    assert pv["epsilon"] <= 5.0 + 1e-9
    assert pv["epsilon"] == pytest.approx(_dp_accounting_rdp(hist, pv["delta"]), rel=5e-3)


def test_fixed_noise_multiplier_uses_the_public_default_sigma(tmp_path, tiny_dataset, fast_gan):
    run = _gan(tiny_dataset, tmp_path / "r", fast_gan, epsilon=None, noise_multiplier=1.0)
    size = run.card["privacy"]["size_release"]
    assert size["sigma"] == size_mech.MAX_SIGMA and size["share"] is None


def test_small_n_card_note_follows_n_hat_not_the_exact_n():
    from privsynth.privacy.checks import PrivacyWarning, check_delta

    with pytest.warns(PrivacyWarning, match="only 50 private"):  # the owner's: exact n
        assert check_delta(1e-4, 50, given=True, force=False, shown_n=500) == []
    with pytest.warns(PrivacyWarning):
        (note,) = check_delta(1e-4, 50, given=True, force=False, shown_n=60)
    assert "under 100" in note and "50" not in note


def test_n_hat_far_below_n_refuses_a_vacuous_default_delta(
    tmp_path, tiny_dataset, fast_gan, monkeypatch
):
    from privsynth.errors import ConfigError

    monkeypatch.setattr(
        size_mech, "gaussian_noise_release", lambda v, s, *a: (v.double() - 90, gaussian("", s))
    )
    with pytest.raises(ConfigError, match="pass --force"):  # N_hat 6: delta 1/60 >= 1/96
        _gan(tiny_dataset, tmp_path / "r", fast_gan, size_sigma=size_mech.MAX_SIGMA)
    assert not (tmp_path / "r").exists()  # refused before any step: no run folder
    (ds,) = Ledger().datasets()
    (entry,) = ds["runs"].values()  # the release was drawn: it stays booked, alone
    (seg,) = entry["segments"]
    assert seg["accounting"]["booked"] == [[size_mech.MAX_SIGMA, 1.0, 1]]


def test_cli_size_sigma_and_share_reach_the_card(tmp_path, tiny_npz):
    import json

    from privsynth.cli import main
    from tests.test_ledger_runs import TINY

    base = ["train", "--method", "dpgan", "--data", str(tiny_npz), "--no-progress", *TINY]
    flags = ["--accountant", "rdp", "--epsilon", "8", "--delta", "1e-4"]
    assert main([*base, "--out", str(tmp_path / "a"), *flags, "--size-sigma", "7"]) == 0
    a = json.loads((tmp_path / "a" / "card.json").read_text())["privacy"]["size_release"]
    assert a["sigma"] == 7.0 and a["share"] is None
    assert main([*base, "--out", str(tmp_path / "b"), *flags, "--size-share", "0.1"]) == 0
    b = json.loads((tmp_path / "b" / "card.json").read_text())["privacy"]["size_release"]
    assert b["share"] == 0.1
    assert b["sigma"] == pytest.approx(size_mech.size_sigma(_spec(8.0, 1e-4), 0.1))


def _spec(epsilon, delta):
    from privsynth.privacy import PrivacySpec

    return PrivacySpec(epsilon=epsilon, delta=delta, accountant="rdp")
