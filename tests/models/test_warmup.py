"""--warmup central and --public-data through `privsynth.train`: the release composes into the card
and the ledger (recomputed outside our code), public pretraining spends nothing, resume keeps the
release, every DP-SGD method takes the same path."""

from __future__ import annotations

import json

import dp_accounting as dpa
import numpy as np
import pytest
from dp_accounting import rdp

import privsynth
from privsynth.errors import ConfigError, DataError
from privsynth.models import warmup as warmup_mod
from privsynth.models import warmup_merf
from privsynth.privacy import Ledger
from privsynth.privacy.accounting import epsilon_from_history
from privsynth.privacy.central import release_central
from tests.conftest import make_tiny_dataset

TINY_VAE = {"epochs": 2, "batch_size": 32, "width": 8, "z_dim": 4}
TINY = {
    "dpvae": TINY_VAE,
    "dpgan": {"epochs": 2, "batch_size": 32, "n_d": 2, "width": 8, "g_width": 8, "z_dim": 8},
    "dpdiffusion": {
        "epochs": 1,
        "batch_size": 32,
        "width": 8,
        "multiplicity": 2,
        "sample_steps": 2,
    },
}
WARM = {"epochs": 1, "images": 96}


def _card(out):
    return json.loads((out / "card.json").read_text())


def _dp_accounting_rdp(history, delta) -> float:
    """Epsilon of an Opacus history recomputed with Google's dp-accounting (RDP)."""
    acc = rdp.RdpAccountant()
    for sigma, q, steps in history:
        event = dpa.GaussianDpEvent(sigma)
        if q < 1:
            event = dpa.PoissonSampledDpEvent(q, event)
        acc.compose(dpa.SelfComposedDpEvent(event, int(steps)))
    return acc.get_epsilon(delta)


def test_release_composes_into_card_and_ledger_and_recomputes(tmp_path, tiny_dataset):
    out = tmp_path / "r"
    run = privsynth.train(
        tiny_dataset,
        "dpvae",
        out,
        epsilon=4.0,
        accountant="rdp",
        config=TINY_VAE,
        progress=False,
        warmup="central",
        warmup_config=WARM,
    )
    pv = run.card["privacy"]
    warm, sgd = pv["warmup"]["central"], pv["dp_sgd"]
    # The release follows the size release in the one accountant history, DP-SGD's steps follow.
    assert sgd["history"][0] == pv["size_release"]["history"][0]
    assert sgd["history"][1] == [warm["noise_multiplier"], 1.0, 1]
    assert sgd["history"][2][0] == sgd["noise_multiplier"] and sgd["includes_warmup_release"]
    assert sum(h[2] for h in sgd["history"][2:]) == sgd["steps"]
    # Its share: alone it spends 0.3 * target (calibrated by Opacus), together exactly the target.
    assert warm["epsilon_alone"] == pytest.approx(0.3 * 4.0, rel=0.01)
    assert 4.0 * 0.99 <= pv["epsilon"] <= 4.0 + 1e-9
    # Exact composition: a fresh accountant over the card's history, and Google's dp-accounting.
    fresh = epsilon_from_history(sgd["history"], sgd["delta"], "rdp")
    assert pv["epsilon"] == pytest.approx(fresh, rel=1e-9)
    assert pv["epsilon"] == pytest.approx(
        _dp_accounting_rdp(sgd["history"], sgd["delta"]), rel=5e-3
    )
    # Not a naive sum: the releases and DP-SGD alone add up to more than the card's total.
    sgd_alone = epsilon_from_history(sgd["history"][2:], sgd["delta"], "rdp")
    alone = warm["epsilon_alone"] + pv["size_release"]["epsilon_alone"]
    assert pv["epsilon"] < alone + sgd_alone
    # The ledger booked the same total, with the release in its accounting.
    (ds,) = Ledger().datasets()
    (seg,) = ds["runs"][run.card["run_id"]]["segments"]
    assert seg["status"] == "complete"
    assert seg["epsilon"] == pytest.approx(pv["epsilon"], rel=1e-9)
    assert seg["accounting"]["booked"][:2] == sgd["history"][:2]
    assert ds["epsilon_spent"] == pytest.approx(pv["epsilon"], rel=1e-9)
    assert (out / "warmup.png").exists() and not (out / warmup_mod.WARMUP_STATE).exists()


def test_release_is_booked_before_it_is_drawn(tmp_path, tiny_dataset, monkeypatch):
    seen = []

    def spy(*args, **kwargs):
        (ds,) = Ledger().datasets()
        (run,) = ds["runs"].values()
        seen.append(run["segments"][0]["epsilon"])
        return release_central(*args, **kwargs)

    monkeypatch.setattr(warmup_mod, "release_central", spy)
    run = privsynth.train(
        tiny_dataset,
        "dpvae",
        tmp_path / "r",
        epsilon=4.0,
        accountant="rdp",
        config=TINY_VAE,
        progress=False,
        warmup="central",
        warmup_config=WARM,
    )
    # booked before the draw: the size release (drawn first) composed with this release
    sgd = run.card["privacy"]["dp_sgd"]
    alone = epsilon_from_history(sgd["history"][:2], sgd["delta"], "rdp")
    assert seen == [pytest.approx(alone, rel=1e-9)]


def test_the_warmup_set_carries_the_release_noise(tiny_dataset):
    cfg = warmup_mod.WarmupConfig(images=90, augment=False)

    def warmup_set(sigma):
        r = release_central(tiny_dataset.images, tiny_dataset.labels, 3, sigma=sigma, size=4)
        return warmup_mod.central_warmup_set(r, tiny_dataset, cfg, seed=0)

    def class_corr(ds):  # how much the warm-up images of each class look like its real mean
        real = np.stack([tiny_dataset.images[tiny_dataset.labels == k].mean(0) for k in range(3)])
        warm = np.stack([ds.images[ds.labels == k].astype(float).mean(0) for k in range(3)])
        a, b = real.ravel() - real.mean(), warm.ravel() - warm.mean()
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))

    assert class_corr(warmup_set(0.5)) > 0.8
    assert abs(class_corr(warmup_set(1e6))) < 0.5  # huge sigma: the pretraining data is noise


def test_public_data_spends_nothing_and_the_card_says_so(tmp_path, tiny_dataset):
    public = make_tiny_dataset(n=96, seed=7)
    plain = privsynth.train(
        tiny_dataset,
        "dpvae",
        tmp_path / "a",
        noise_multiplier=1.5,
        accountant="rdp",
        config=TINY_VAE,
        progress=False,
    )
    warmed = privsynth.train(
        tiny_dataset,
        "dpvae",
        tmp_path / "b",
        noise_multiplier=1.5,
        accountant="rdp",
        config=TINY_VAE,
        progress=False,
        public_data=public,
        warmup_config={"epochs": 1},
    )
    a, b = plain.card["privacy"], warmed.card["privacy"]
    # no entry for the public phase: the size release, then DP-SGD (q from each run's N_hat)
    assert len(b["dp_sgd"]["history"]) == len(a["dp_sgd"]["history"]) == 2
    assert b["dp_sgd"]["history"][1][0] == a["dp_sgd"]["history"][1][0] == 1.5
    hist_eps = epsilon_from_history(b["dp_sgd"]["history"], b["dp_sgd"]["delta"], "rdp")
    assert b["epsilon"] == pytest.approx(hist_eps, rel=1e-12)
    assert b["warmup"]["public_data"]["fingerprint"] == public.fingerprint
    assert b["warmup"]["public_data"]["spent_epsilon"] == 0.0
    assert "central" not in b["warmup"]
    (ds,) = Ledger().datasets()
    assert ds["epsilon_spent"] == pytest.approx(a["epsilon"] + b["epsilon"], rel=1e-9)
    # A non-private run with public data touches no ledger at all.
    privsynth.train(
        tiny_dataset,
        "vae",
        tmp_path / "c",
        config=TINY_VAE,
        progress=False,
        public_data=public,
        warmup_config={"epochs": 1},
    )
    assert Ledger().datasets()[0]["segments"] == 2


def test_public_pretraining_changes_the_starting_weights(tmp_path, tiny_dataset, monkeypatch):
    from privsynth.models.vae import VAESynthesizer

    starts = []
    real_fit = VAESynthesizer.fit

    def fit(self, data, ctx):
        starts.append((data.name, self.model.decoder.fc[0].weight.detach().clone()))
        return real_fit(self, data, ctx)

    monkeypatch.setattr(VAESynthesizer, "fit", fit)
    public = make_tiny_dataset(n=96, seed=7)
    public.name = "public"
    privsynth.train(
        tiny_dataset,
        "dpvae",
        tmp_path / "r",
        epsilon=5,
        config=TINY_VAE,
        progress=False,
        public_data=public,
        warmup_config={"epochs": 1},
    )
    (p_name, p_w), (d_name, d_w) = starts
    assert (p_name, d_name) == ("public", "tiny")
    assert not np.allclose(p_w.numpy(), d_w.numpy())  # DP-SGD starts from pretrained weights


def test_killed_after_warmup_resumes_with_the_same_release(tmp_path, tiny_dataset, monkeypatch):
    from privsynth.orchestrate import trainer

    draws = []
    real_release = warmup_mod.release_central

    def counting(*args, **kwargs):
        draws.append(1)
        return real_release(*args, **kwargs)

    monkeypatch.setattr(warmup_mod, "release_central", counting)
    real_save, calls = trainer.save_train_state, []

    def kill_at_first_dp_checkpoint(path, state):
        calls.append(state["step"])
        if len(calls) == 1:
            raise KeyboardInterrupt
        real_save(path, state)

    monkeypatch.setattr(trainer, "save_train_state", kill_at_first_dp_checkpoint)
    kw = dict(
        epsilon=4.0,
        accountant="rdp",
        config=TINY_VAE,
        progress=False,
        warmup="central",
        warmup_config=WARM,
        checkpoint_every=2,
    )
    out = tmp_path / "r"
    with pytest.raises(KeyboardInterrupt):
        privsynth.train(tiny_dataset, "dpvae", out, **kw)
    first = _card(out)["privacy"]["warmup"]["central"]
    kept = warmup_mod.load_state(out)
    assert kept["done"] == ["central"] and kept["release"] is not None

    run = privsynth.train(tiny_dataset, "dpvae", out, **kw)
    assert len(draws) == 1  # never released twice
    central = run.card["privacy"]["warmup"]["central"]
    assert central["noise_multiplier"] == first["noise_multiplier"]
    assert run.card["privacy"]["dp_sgd"]["history"][1] == first["history"][0]
    # Two segments: the first booked the release (+ one interval); the second books the whole
    # run (the release once, then DP-SGD) and supersedes it: the run counts once, as its card.
    (ds,) = Ledger().datasets()
    entry = ds["runs"][run.card["run_id"]]
    segs = entry["segments"]
    assert [s["status"] for s in segs] == ["interrupted", "complete"]
    assert segs[0]["accounting"]["booked"][1] == first["history"][0] and segs[0]["superseded"]
    # the size release and the central release, once each
    assert [h[1] for h in segs[1]["accounting"]["booked"]].count(1.0) == 2
    assert entry["epsilon"] == pytest.approx(run.card["privacy"]["epsilon"])


def test_killed_while_pretraining_resumes_the_pretraining(tmp_path, tiny_dataset, monkeypatch):
    draws, saves = [], []
    real_release, real_save = warmup_mod.release_central, warmup_mod.save_state
    monkeypatch.setattr(
        warmup_mod, "release_central", lambda *a, **k: draws.append(1) or real_release(*a, **k)
    )

    def kill_in_pretraining(out, state):
        saves.append(state.get("checkpoint", {}).get("step"))
        if len(saves) == 3:  # release, first pretraining checkpoint, then killed at the second
            raise KeyboardInterrupt
        real_save(out, state)

    monkeypatch.setattr(warmup_mod, "save_state", kill_in_pretraining)
    kw = dict(
        epsilon=4.0,
        accountant="rdp",
        config=TINY_VAE,
        progress=False,
        warmup="central",
        warmup_config={"epochs": 4, "images": 96},
        checkpoint_every=2,
    )
    out = tmp_path / "r"
    with pytest.raises(KeyboardInterrupt):
        privsynth.train(tiny_dataset, "dpvae", out, **kw)
    assert warmup_mod.load_state(out)["checkpoint"]["step"] == 2
    monkeypatch.setattr(warmup_mod, "save_state", real_save)
    resumed = []
    real_pretrain = warmup_mod.WarmUp._pretrain
    monkeypatch.setattr(
        warmup_mod.WarmUp,
        "_pretrain",
        lambda self, s, p, d, c, o, resume: (
            resumed.append(resume and resume["step"]) or real_pretrain(self, s, p, d, c, o, resume)
        ),
    )
    run = privsynth.train(tiny_dataset, "dpvae", out, **kw)
    assert draws == [1] and resumed == [2]
    assert run.card["status"] == "complete"
    (ds,) = Ledger().datasets()
    segs = ds["runs"][run.card["run_id"]]["segments"]
    # The release is drawn and booked once: by the segment that drew it, then in the run's
    # whole booking by the segment that finished it (the run counts once, as its card).
    assert segs[0]["accounting"]["booked"] == run.card["privacy"]["dp_sgd"]["history"][:2]
    assert [h[1] for h in segs[1]["accounting"]["booked"]].count(1.0) == 2  # size, central
    assert ds["runs"][run.card["run_id"]]["epsilon"] == pytest.approx(
        run.card["privacy"]["epsilon"]
    )


@pytest.mark.parametrize("method", ["dpgan", "dpdiffusion"])
def test_every_dp_sgd_method_warms_up(tmp_path, tiny_dataset, method):
    run = privsynth.train(
        tiny_dataset,
        method,
        tmp_path / "r",
        epsilon=5,
        accountant="rdp",
        config=TINY[method],
        progress=False,
        warmup="central",
        warmup_config=WARM,
    )
    hist = run.card["privacy"]["dp_sgd"]["history"]
    assert hist[0][1:] == hist[1][1:] == [1.0, 1] and len(hist) == 3  # size, central, DP-SGD
    assert run.card["privacy"]["epsilon"] <= 5 + 1e-9
    images, labels = run.sample(6, labels=[0, 1, 2] * 2)
    assert images.shape == (6, 1, 8, 8) and list(labels) == [0, 1, 2] * 2


def test_bad_warmup_requests_fail_with_the_fix(tmp_path, tiny_dataset):
    def train(method="dpvae", **kw):
        return privsynth.train(
            tiny_dataset, method, tmp_path / "x", config=TINY.get(method), progress=False, **kw
        )

    with pytest.raises(ConfigError, match="DP-SGD method"):
        train("dpmerf", warmup="central")
    with pytest.raises(ConfigError, match="without DP"):
        train(warmup="central", no_dp=True)
    with pytest.raises(ConfigError, match="warmup-set sigma"):
        train(warmup="central", noise_multiplier=1.0)
    with pytest.raises(ConfigError, match="unknown warm-up option"):
        train(warmup="central", warmup_config={"sharee": 0.2})
    with pytest.raises(ConfigError, match="warmup-share"):
        train(warmup="central", warmup_config={"share": 1.5})
    with pytest.raises(ConfigError, match="exceeds the 8-pixel images"):
        train(warmup="central", warmup_config={"size": 16})
    with pytest.raises(ConfigError, match="none by default; add --warmup central or --public-data"):
        train(warmup_config={"share": 0.2})
    with pytest.raises(DataError, match="classes"):
        train(public_data=make_tiny_dataset(n=60, k=2))
    with pytest.raises(DataError, match="copies of the private data"):
        train(public_data=tiny_dataset)
    assert not (tmp_path / "x").exists()


def test_recommended_warmup_applies_only_when_the_user_chose_none(tmp_path, monkeypatch):
    """dpgan on large data defaults to --warmup central below eps 3.5 and --warmup merf from it
    (models/defaults.py); warm-up options alone tune that default; an explicit --warmup none, a
    fixed noise multiplier or no DP leave it out."""
    from privsynth.models import defaults

    for eps in (1.0, 2.0):
        assert defaults.recommended_warmup("dpgan", 8000, eps) == ("central", {"epochs": 5})
    for eps in (5.0, 10.0):
        assert defaults.recommended_warmup("dpgan", 8000, eps) == ("merf", {})
    assert defaults.recommended_warmup("gan", 8000, 1.0) == ("central", {"epochs": 5})
    assert defaults.recommended_warmup("dpgan", 1500, 10.0)[0] == "none"
    assert defaults.recommended_warmup("dpvae", 8000, 10.0)[0] == "none"
    # The tiny set is "small": give the small row a warm-up to see train() apply it, and the
    # epsilon rule pick the kind.
    rows = [(5.0, {"kind": "central", **WARM}), (float("inf"), {"kind": "merf", **WARM})]
    monkeypatch.setitem(defaults._WARMUPS, "dpvae", {"small": rows})
    real = warmup_merf.recommended_config
    monkeypatch.setattr(
        warmup_merf,
        "recommended_config",
        lambda m, n, e=None, channels=1: {
            **real(m, n, e, channels),
            "steps": 30,
            "n_features": 100,
            "g_width": 8,
        },
    )
    data = make_tiny_dataset()

    def phases(name, **kwargs):
        kwargs.setdefault("epsilon", 4.0)
        run = privsynth.train(
            data, "dpvae", tmp_path / name, config=TINY_VAE, progress=False, **kwargs
        )
        return (run.card["privacy"].get("warmup") or {}).get("phases", [])

    assert phases("default") == ["central"]
    assert phases("high", epsilon=8.0) == ["merf"]
    assert _card(tmp_path / "default")["request"]["warmup"]["config"]["images"] == 96
    tuned = phases("tuned", warmup_config={"images": 48, "share": 0.2})
    assert tuned == ["central"]
    request = _card(tmp_path / "tuned")["request"]["warmup"]
    assert request["config"]["images"] == 48 and request["config"]["share"] == 0.2
    assert phases("none", warmup="none") == []
    assert phases("fixed", epsilon=None, noise_multiplier=2.0) == []
    assert phases("nodp", epsilon=None, no_dp=True) == []
