"""--warmup merf: the DP-MERF release composes into the card and the ledger (recomputed outside our
code), its noise reaches the warm-up set, it is drawn once across a resume, and requests it cannot
serve fail with the fix."""

from __future__ import annotations

import numpy as np
import pytest

import privsynth
from privsynth.errors import ConfigError
from privsynth.models import warmup as warmup_mod
from privsynth.models import warmup_merf
from privsynth.privacy import Ledger
from privsynth.privacy.accounting import epsilon_from_history
from privsynth.report.card_lines import format_card
from tests.models.test_warmup import TINY, TINY_VAE, _dp_accounting_rdp

WARM = {"epochs": 1, "images": 96}


@pytest.fixture(autouse=True)
def small_merf(monkeypatch):
    """dpmerf's recommended settings train 2 000 generator steps: a few dozen suffice here."""
    real = warmup_merf.recommended_config

    def small(method, n, epsilon=None, channels=1):
        return {**real(method, n, epsilon, channels), "steps": 60, "n_features": 200, "g_width": 8}

    monkeypatch.setattr(warmup_merf, "recommended_config", small)


def _train(data, out, method="dpvae", **kw):
    kw.setdefault("epsilon", 4.0)
    return privsynth.train(
        data,
        method,
        out,
        accountant="rdp",
        config=TINY_VAE if method == "dpvae" else TINY[method],
        progress=False,
        warmup="merf",
        warmup_config=WARM,
        **kw,
    )


def test_release_composes_into_card_and_ledger_and_recomputes(tmp_path, tiny_dataset):
    out = tmp_path / "r"
    run = _train(tiny_dataset, out)
    pv = run.card["privacy"]
    warm, sgd = pv["warmup"]["merf"], pv["dp_sgd"]
    assert pv["warmup"]["phases"] == ["merf"]
    assert sgd["history"][0] == pv["size_release"]["history"][0]  # the size release first
    assert sgd["history"][1] == [warm["noise_multiplier"], 1.0, 1] == warm["history"][0]
    assert sgd["history"][2][0] == sgd["noise_multiplier"] and sgd["includes_warmup_release"]
    assert warm["epsilon_alone"] == pytest.approx(0.3 * 4.0, rel=0.01)
    assert 4.0 * 0.99 <= pv["epsilon"] <= 4.0 + 1e-9
    assert pv["epsilon"] == pytest.approx(
        _dp_accounting_rdp(sgd["history"], sgd["delta"]), rel=5e-3
    )
    sgd_alone = epsilon_from_history(sgd["history"][2:], sgd["delta"], "rdp")
    alone = warm["epsilon_alone"] + pv["size_release"]["epsilon_alone"]
    assert pv["epsilon"] < alone + sgd_alone  # composed, not summed
    assert warm["generator"]["generator_steps"] == 60  # the card says what drew the warm-up set
    (ds,) = Ledger().datasets()
    (seg,) = ds["runs"][run.card["run_id"]]["segments"]
    assert seg["accounting"]["booked"][:2] == sgd["history"][:2]
    assert ds["epsilon_spent"] == pytest.approx(pv["epsilon"], rel=1e-9)
    assert (out / "warmup.png").exists() and not (out / warmup_mod.WARMUP_STATE).exists()
    assert "DP-MERF release" in format_card(run.card)


def test_the_noise_reaches_the_release_and_the_warmup_set(tiny_dataset, monkeypatch):
    real = warmup_merf.recommended_config
    monkeypatch.setattr(  # 200 steps: a generator that has settled on each class (60 may not)
        warmup_merf,
        "recommended_config",
        lambda m, n, e=None, channels=1: {
            **real(m, n, e, channels),
            "steps": 200,
            "n_features": 200,
            "g_width": 8,
        },
    )
    exact = warmup_merf.merf_method(tiny_dataset).statistic(tiny_dataset, 1.0).float()
    noise = warmup_merf.release_merf(tiny_dataset, sigma=3.0).released - exact
    assert noise.std().item() == pytest.approx(3.0, rel=0.05)  # per entry, at sensitivity 1

    class Ctx:
        seed, device, progress = 0, "cpu", False

    def class_corr(sigma):  # how much each class's warm-up images look like its real mean
        drawn, _ = warmup_merf.merf_warmup_set(
            warmup_merf.release_merf(tiny_dataset, sigma), tiny_dataset, 150, Ctx
        )
        real = np.stack([tiny_dataset.images[tiny_dataset.labels == k].mean(0) for k in range(3)])
        warm = np.stack([drawn.images[drawn.labels == k].astype(float).mean(0) for k in range(3)])
        a, b = real.ravel() - real.mean(), warm.ravel() - warm.mean()
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))

    assert class_corr(0.01) > 0.7
    assert class_corr(1e6) < 0.5  # huge sigma: the generator learns noise, not the classes


def test_killed_after_the_release_resumes_without_drawing_again(
    tmp_path, tiny_dataset, monkeypatch
):
    draws, sets = [], []
    real_release, real_set = warmup_merf.release_merf, warmup_merf.merf_warmup_set
    monkeypatch.setattr(
        warmup_merf, "release_merf", lambda *a, **k: draws.append(1) or real_release(*a, **k)
    )

    def killed_once(*a, **k):
        sets.append(1)
        if len(sets) == 1:
            raise KeyboardInterrupt  # killed while training the MERF generator
        return real_set(*a, **k)

    monkeypatch.setattr(warmup_merf, "merf_warmup_set", killed_once)
    out = tmp_path / "r"
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_dataset, out)
    first = warmup_mod.load_state(out)["release"]
    run = _train(tiny_dataset, out)
    assert draws == [1] and len(sets) == 2
    assert run.card["status"] == "complete"
    hist = run.card["privacy"]["dp_sgd"]["history"]
    assert hist[1] == [first["sigma"], 1.0, 1]  # after the size release
    (ds,) = Ledger().datasets()
    segs = ds["runs"][run.card["run_id"]]["segments"]
    assert segs[0]["accounting"]["booked"] == hist[:2]  # booked once, by the segment that drew it
    # the finishing segment books the whole run (each release once) and supersedes the first
    assert [h[1] for h in segs[1]["accounting"]["booked"]].count(1.0) == 2
    entry = ds["runs"][run.card["run_id"]]
    assert entry["epsilon"] == pytest.approx(run.card["privacy"]["epsilon"])


def test_dpgan_warms_up_from_merf_and_samples(tmp_path, tiny_dataset):
    run = _train(tiny_dataset, tmp_path / "r", method="dpgan", epsilon=5)
    assert run.card["privacy"]["epsilon"] <= 5 + 1e-9
    images, labels = run.sample(6, labels=[0, 1, 2] * 2)
    assert images.shape == (6, 1, 8, 8) and list(labels) == [0, 1, 2] * 2


def test_bad_merf_requests_fail_with_the_fix(tmp_path, tiny_dataset):
    with pytest.raises(ConfigError, match="without DP"):
        privsynth.train(
            tiny_dataset, "dpvae", tmp_path / "x", no_dp=True, warmup="merf", progress=False
        )
    with pytest.raises(ConfigError, match="central release"):
        privsynth.train(
            tiny_dataset,
            "dpvae",
            tmp_path / "x",
            epsilon=4.0,
            warmup="merf",
            warmup_config={"size": 4},
            progress=False,
        )
    assert not (tmp_path / "x").exists()
