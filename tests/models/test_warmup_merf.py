"""--warmup merf: the one-shot DP-MERF release composes into the card and the ledger (recomputed
outside our code), its noise reaches the warm-up images, and a resumed run never releases twice."""

from __future__ import annotations

import numpy as np
import pytest

import privsynth
from privsynth.errors import ConfigError
from privsynth.models import warmup as warmup_mod
from privsynth.models import warmup_merf
from privsynth.models.base import TrainContext
from privsynth.privacy import Ledger
from privsynth.privacy.accounting import epsilon_from_history
from privsynth.report.card_lines import format_card
from tests.models.test_warmup import TINY, _card, _dp_accounting_rdp

GAN = {**TINY["dpgan"], "aux": 1.0}
WARM = {"epochs": 1, "images": 96, "merf_steps": 30}


def _train(tiny_dataset, out, **kw):
    args = dict(
        epsilon=4.0,
        accountant="rdp",
        config=GAN,
        progress=False,
        warmup="merf",
        warmup_config=WARM,
    )
    return privsynth.train(tiny_dataset, "dpgan", out, **{**args, **kw})


def test_merf_release_composes_into_card_and_ledger(tmp_path, tiny_dataset):
    run = _train(tiny_dataset, tmp_path / "r")
    pv = run.card["privacy"]
    warm, sgd = pv["warmup"]["merf"], pv["dp_sgd"]
    assert pv["warmup"]["phases"] == ["merf"]
    assert sgd["history"][0] == [warm["noise_multiplier"], 1.0, 1]
    assert warm["epsilon_alone"] == pytest.approx(0.3 * 4.0, rel=0.01)
    assert warm["generator"]["generator_steps"] <= 30  # the card says what the fit did
    assert 4.0 * 0.99 <= pv["epsilon"] <= 4.0 + 1e-9
    assert pv["epsilon"] == pytest.approx(
        epsilon_from_history(sgd["history"], sgd["delta"], "rdp"), rel=1e-9
    )
    assert pv["epsilon"] == pytest.approx(
        _dp_accounting_rdp(sgd["history"], sgd["delta"]), rel=5e-3
    )
    (ds,) = Ledger().datasets()
    (seg,) = ds["runs"][run.card["run_id"]]["segments"]
    assert seg["accounting"]["booked"][0] == sgd["history"][0]
    assert seg["epsilon"] == pytest.approx(pv["epsilon"], rel=1e-9)
    assert "DP-MERF embedding" in format_card(run.card)


def test_the_merf_warmup_set_carries_the_release_noise(tiny_dataset):
    """Small sigma: each class's warm-up images look like its real mean; a huge sigma: they do
    not (the noise of the release reaches the images DP-SGD pretrains on)."""
    ctx = TrainContext(privacy=None, progress=False)

    def class_corr(sigma):
        released = warmup_merf.release_embedding(tiny_dataset, sigma)
        ds, _ = warmup_merf.merf_warmup_set(released, tiny_dataset, 90, ctx, steps=300)
        real = np.stack([tiny_dataset.images[tiny_dataset.labels == k].mean(0) for k in range(3)])
        warm = np.stack([ds.images[ds.labels == k].astype(float).mean(0) for k in range(3)])
        a = real - real.mean(0)  # what tells the classes apart
        b = warm - warm.mean(0)
        return float((a.ravel() @ b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))

    assert class_corr(0.05) > 0.6
    assert class_corr(1e5) < 0.3


def test_killed_after_merf_warmup_resumes_without_a_second_release(
    tmp_path, tiny_dataset, monkeypatch
):
    from privsynth import trainer

    draws, fits = [], []
    real_release, real_set = warmup_merf.release_embedding, warmup_merf.merf_warmup_set
    monkeypatch.setattr(
        warmup_merf, "release_embedding", lambda *a, **k: draws.append(1) or real_release(*a, **k)
    )
    monkeypatch.setattr(
        warmup_merf, "merf_warmup_set", lambda *a, **k: fits.append(1) or real_set(*a, **k)
    )
    real_save, calls = trainer.save_train_state, []

    def kill_at_first_dp_checkpoint(path, state):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        real_save(path, state)

    monkeypatch.setattr(trainer, "save_train_state", kill_at_first_dp_checkpoint)
    out = tmp_path / "r"
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_dataset, out, checkpoint_every=2)
    first = _card(out)["privacy"]["warmup"]["merf"]
    assert warmup_mod.load_state(out)["done"] == ["merf"]
    run = _train(tiny_dataset, out, checkpoint_every=2)
    assert draws == [1] and fits == [1]  # one release, one generator fit, reused on resume
    assert run.card["privacy"]["dp_sgd"]["history"][0] == first["history"][0]
    (ds,) = Ledger().datasets()
    segs = ds["runs"][run.card["run_id"]]["segments"]
    assert segs[0]["accounting"]["booked"][0] == first["history"][0]
    assert all(h[1] < 1 for h in segs[1]["accounting"]["booked"])


def test_bad_merf_warmup_requests_name_the_fix(tmp_path, tiny_dataset):
    with pytest.raises(ConfigError, match="private run"):
        privsynth.train(
            tiny_dataset, "gan", tmp_path / "a", config=GAN, progress=False, warmup="merf"
        )
    with pytest.raises(ConfigError, match="one release of the whole training set"):
        _train(tiny_dataset, tmp_path / "b", warmup_config={**WARM, "queries": 3})
    with pytest.raises(ConfigError, match="merf_steps"):
        _train(tiny_dataset, tmp_path / "c", warmup_config={**WARM, "merf_steps": 0})
