"""Resume after a kill: same accountant state; every segment that touched the data stays booked."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import privsynth
from privsynth.orchestrate import trainer
from privsynth.privacy import Ledger
from privsynth.privacy.accounting import epsilon_from_history
from privsynth.run import TRAIN_STATE, load_train_state, save_train_state

# Step counts below follow from N_hat = N (q = 1/3, 6 steps): the size release's noise is off.
pytestmark = pytest.mark.usefixtures("exact_size")


def _kill_after_first_checkpoint(monkeypatch):
    """The second checkpoint raises KeyboardInterrupt, as a Ctrl-C between checkpoints would."""
    real, calls = trainer.save_train_state, []

    def save(path, state):
        calls.append(state["step"])
        if len(calls) > 1:
            raise KeyboardInterrupt
        real(path, state)

    monkeypatch.setattr(trainer, "save_train_state", save)
    return calls


def _record_draws(monkeypatch) -> dict:
    """Record every Poisson batch (indices) and the first value of every DP noise draw."""
    from opacus.optimizers import optimizer as dp_optimizer
    from opacus.optimizers import optimizer_fast_gradient_clipping as fgc_optimizer
    from opacus.utils.uniform_sampler import UniformWithReplacementSampler

    seen = {"batches": [], "noise": []}
    real_iter, real_noise = UniformWithReplacementSampler.__iter__, dp_optimizer._generate_noise

    def batches(self):
        for indices in real_iter(self):
            seen["batches"].append(list(indices))
            yield indices

    def noise(*args, **kwargs):
        out = real_noise(*args, **kwargs)
        if len(seen["noise"]) < len(seen["batches"]):  # the first parameter of each step
            seen["noise"].append(float(out.reshape(-1)[0]))
        return out

    monkeypatch.setattr(UniformWithReplacementSampler, "__iter__", batches)
    monkeypatch.setattr(dp_optimizer, "_generate_noise", noise)
    # grad-sample mode bk uses Opacus' optimizer for pre-clipped sums, which imports it by name
    monkeypatch.setattr(fgc_optimizer, "_generate_noise", noise)
    return seen


def _segments(run_id: str) -> list[dict]:
    (ds,) = Ledger().datasets()
    return ds["runs"][run_id]["segments"]


def test_killed_run_resumes_without_resetting_or_forgetting(
    tmp_path, tiny_dataset, fast_gan, monkeypatch
):
    # A fixed sigma skips the calibration search (tested in tests/privacy); the plan is the same.
    kw = dict(
        noise_multiplier=1.2, accountant="rdp", config=fast_gan, progress=False, checkpoint_every=2
    )
    out = tmp_path / "runs" / "r"
    draws = [_record_draws(monkeypatch)]
    calls = _kill_after_first_checkpoint(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        privsynth.train(tiny_dataset, "dpgan", out, **kw)
    assert calls == [2, 4]

    # What a killed run leaves: a resumable state (tensors only) and its segment in the ledger,
    # settled to the steps it may have run: 2 checkpointed + one checkpoint interval (2) = 4.
    state = load_train_state(out / TRAIN_STATE)  # weights_only=True inside
    assert state["step"] == 2
    torch.load(out / TRAIN_STATE, weights_only=True)
    card = json.loads((out / "card.json").read_text())
    assert card["status"] == "running"
    size = tuple(state["accountant"]["history"][0])  # the size release opens the history
    assert size == tuple(card["privacy"]["size_release"]["history"][0])
    sigma, q = state["accountant"]["history"][1][:2]
    delta = card["privacy"]["dp_sgd_plan"]["delta"]
    (first,) = _segments(card["run_id"])
    assert first["status"] == "interrupted"
    assert first["counted_epsilon"] == pytest.approx(
        epsilon_from_history([size, (sigma, q, 4)], delta, "rdp")
    )

    monkeypatch.undo()
    draws.append(_record_draws(monkeypatch))
    run = privsynth.train(tiny_dataset, "dpgan", out, **kw)  # the same command again
    sgd = run.card["privacy"]["dp_sgd"]
    assert sgd["steps"] == sgd["planned_steps"] == 6
    assert sgd["history"] == [list(size), [sigma, q, 6]]
    full_plan = epsilon_from_history([size, (sigma, q, 6)], delta, "rdp")
    assert run.card["privacy"]["dp_sgd_plan"]["planned_epsilon"] == pytest.approx(full_plan)
    # Steps 2-3 ran twice (killed after them, before their checkpoint): booked ahead, they stay
    # in the run's spend, composed with the 6 steps of the model's lineage in one accountant.
    assert sgd["rerun_history"] == [[sigma, q, 2]]
    assert run.epsilon == pytest.approx(
        epsilon_from_history([(sigma, q, 2), size, (sigma, q, 6)], delta, "rdp")
    )
    assert not (out / TRAIN_STATE).exists()

    # Resuming continues    assert not (out / TRAIN_STATE).exists()

    # Resuming continues the random streams: the steps after the resume draw fresh Poisson batches
    # and fresh noise; replaying the first steps' draws would break the accountant's assumptions.
    first, resumed = draws
    assert len(first["batches"]) == 4 and len(resumed["batches"]) == 4  # steps 0-3, then 2-5
    assert resumed["batches"][:2] != first["batches"][:2]
    assert resumed["noise"][:2] != first["noise"][:2]


def test_resumed_run_is_one_ledger_entry_composed_by_its_accountant(
    tmp_path, tiny_dataset, fast_gan, monkeypatch, capsys
):
    """A killed run resumed to the end is ONE entry in the ledger: its accountant's composition
    of everything that ran (equal to the card's epsilon), its delta once, never the segments'
    sum. A resume that fits the budget only under that rule is accepted."""
    kw = dict(
        noise_multiplier=1.2, accountant="rdp", config=fast_gan, progress=False, checkpoint_every=2
    )
    out = tmp_path / "r"
    _kill_after_first_checkpoint(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        privsynth.train(tiny_dataset, "dpgan", out, **kw)
    monkeypatch.undo()
    state = load_train_state(out / TRAIN_STATE)
    size = tuple(state["accountant"]["history"][0])  # the size release, then DP-SGD
    sigma, q = state["accountant"]["history"][1][:2]
    card = json.loads((out / "card.json").read_text())
    delta = card["privacy"]["dp_sgd_plan"]["delta"]
    # Killed: its partial spend stays booked (2 checkpointed steps + one interval ahead).
    killed = Ledger().spent(tiny_dataset.source_fingerprint)
    assert killed.epsilon == pytest.approx(
        epsilon_from_history([size, (sigma, q, 4)], delta, "rdp")
    )
    # A budget the whole run fits (8 steps in one accountant) but the segments' sum does not.
    whole = epsilon_from_history([size, (sigma, q, 8)], delta, "rdp")
    assert whole < 2 * killed.epsilon - 0.2
    Ledger().set_budget(tiny_dataset.source_fingerprint, whole + 0.1, reason="test")

    run = privsynth.train(tiny_dataset, "dpgan", out, **kw)  # accepted: the run fits
    (ds,) = Ledger().datasets()
    assert list(ds["runs"]) == [run.card["run_id"]]
    entry = ds["runs"][run.card["run_id"]]
    assert entry["status"] == "complete"
    assert entry["epsilon"] == pytest.approx(run.epsilon, rel=1e-6) == pytest.approx(whole)
    assert entry["delta"] == pytest.approx(run.card["privacy"]["delta"]) == pytest.approx(delta)
    assert ds["epsilon_spent"] == pytest.approx(run.epsilon)
    assert ds["delta_spent"] == pytest.approx(delta)  # not doubled
    first, second = entry["segments"]
    assert first.get("superseded") and first["counted_epsilon"] == 0.0
    assert second["accounting"]["carried"] == [[sigma, q, 2]]
    from privsynth.cli import main

    assert main(["ledger"]) == 0
    listing = capsys.readouterr().out
    assert f"run {run.card['run_id']}" in listing and "[complete]" in listing
    assert "superseded" in listing


def test_deleting_train_state_keeps_the_abandoned_segment(
    tmp_path, tiny_dataset, fast_gan, monkeypatch
):
    """Deleting train_state.pt (as the error message for a damaged one advises) restarts from
    step 0: the first segment's spend stays booked, the warning says so, both count."""
    kw = dict(
        noise_multiplier=1.2, accountant="rdp", config=fast_gan, progress=False, checkpoint_every=2
    )
    out = tmp_path / "r"
    _kill_after_first_checkpoint(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        privsynth.train(tiny_dataset, "dpgan", out, **kw)
    monkeypatch.undo()
    (out / TRAIN_STATE).unlink()
    with pytest.warns(
        UserWarning,
        match="restarts from step 0; the spend of its earlier "
        r"segment\(s\) stays booked",
    ):
        run = privsynth.train(tiny_dataset, "dpgan", out, **kw)
    abandoned, restarted = _segments(run.card["run_id"])
    assert abandoned["status"] == "interrupted" and abandoned["superseded"]
    # The restart's 6 steps and the 4 the first segment booked: one accountant, one delta.
    sgd = run.card["privacy"]["dp_sgd"]
    size, (sigma, q, _) = sgd["history"]  # the size release: kept on the card, drawn once
    assert sgd["rerun_history"] == [[sigma, q, 4]]
    assert run.epsilon == pytest.approx(
        epsilon_from_history([(sigma, q, 4), size, (sigma, q, 6)], sgd["delta"], "rdp")
    )
    assert restarted["counted_epsilon"] == pytest.approx(run.epsilon)
    spent = Ledger().spent(tiny_dataset.source_fingerprint)
    assert spent.epsilon == pytest.approx(run.epsilon)
    assert spent.delta == pytest.approx(run.card["privacy"]["delta"])


def test_checkpoint_without_matching_accountant_history_is_refused(
    tmp_path, tiny_dataset, fast_gan, monkeypatch
):
    """A train_state.pt whose accountant history is missing, or shorter than its steps, would
    resume on a fresh accountant and understate epsilon: refused with the fix (--overwrite)."""
    kw = dict(
        noise_multiplier=1.2, accountant="rdp", config=fast_gan, progress=False, checkpoint_every=2
    )
    out = tmp_path / "r"
    _kill_after_first_checkpoint(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        privsynth.train(tiny_dataset, "dpgan", out, **kw)
    monkeypatch.undo()
    booked = Ledger().spent(tiny_dataset.source_fingerprint)
    state = load_train_state(out / TRAIN_STATE)
    size, (sigma, q, steps) = state["accountant"]["history"]
    assert (state["step"], steps) == (2, 2)
    for accountant in (None, {"accountant": "rdp", "history": [size, [sigma, q, 1]]}):
        save_train_state(out / TRAIN_STATE, {**state, "accountant": accountant})
        with pytest.raises(privsynth.errors.CheckpointError, match="--overwrite") as e:
            privsynth.train(tiny_dataset, "dpgan", out, **kw)
        assert "understate" in str(e.value) and "\n" not in str(e.value)
    # A checkpoint of another run is refused too: its steps would be booked on this run.
    save_train_state(out / TRAIN_STATE, {**state, "run_id": "0123456789ab"})
    with pytest.raises(privsynth.errors.CheckpointError, match="belongs to run.*--overwrite"):
        privsynth.train(tiny_dataset, "dpgan", out, **kw)
    assert Ledger().spent(tiny_dataset.source_fingerprint) == booked  # nothing booked
    run = privsynth.train(tiny_dataset, "dpgan", out, overwrite=True, **kw)
    assert run.card["status"] == "complete"


def test_resume_refuses_changed_privacy_flags(tmp_path, tiny_dataset, fast_gan, monkeypatch):
    kw = dict(accountant="rdp", config=fast_gan, progress=False, checkpoint_every=2)
    out = tmp_path / "r"
    _kill_after_first_checkpoint(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        privsynth.train(tiny_dataset, "dpgan", out, noise_multiplier=1.2, **kw)
    monkeypatch.undo()
    with pytest.raises(privsynth.errors.CheckpointError, match="privacy.*same flags"):
        privsynth.train(tiny_dataset, "dpgan", out, noise_multiplier=0.9, **kw)
    with pytest.raises(privsynth.errors.CheckpointError, match="holdout.*same flags"):
        privsynth.train(tiny_dataset, "dpgan", out, noise_multiplier=1.2, holdout=0.3, **kw)
    # A damaged train_state.pt is refused with the fix, not unpickled or half-loaded.
    shutil.copytree(out, tmp_path / "copy")
    state = tmp_path / "copy" / TRAIN_STATE
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    with pytest.raises(privsynth.errors.CheckpointError, match="delete it to restart"):
        privsynth.train(tiny_dataset, "dpgan", tmp_path / "copy", noise_multiplier=1.2, **kw)
    # Nothing was changed by the refusals: the same command still resumes and finishes.
    run = privsynth.train(tiny_dataset, "dpgan", out, noise_multiplier=1.2, **kw)
    assert run.card["privacy"]["dp_sgd"]["steps"] == 6


def test_a_run_killed_before_an_upgrade_resumes_when_its_card_lacks_a_new_option(
    tmp_path, tiny_dataset, fast_gan, monkeypatch
):
    """A card written before an option existed (here ``g_padding``) names no value for it: the
    option's built-in value is what that run ran, so the same command resumes it."""
    kw = dict(noise_multiplier=1.2, accountant="rdp", progress=False, checkpoint_every=2)
    out = tmp_path / "r"
    _kill_after_first_checkpoint(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        privsynth.train(tiny_dataset, "dpgan", out, config=fast_gan, **kw)
    monkeypatch.undo()
    card = json.loads((out / "card.json").read_text())
    assert card["request"]["config"].pop("g_padding") == "zeros"
    (out / "card.json").write_text(json.dumps(card))
    # the missing option reads as its built-in value, not as any value: reflect is refused
    reflect = {**fast_gan, "g_padding": "reflect"}
    with pytest.raises(privsynth.errors.CheckpointError, match="config.*same flags"):
        privsynth.train(tiny_dataset, "dpgan", out, config=reflect, **kw)
    run = privsynth.train(tiny_dataset, "dpgan", out, config=fast_gan, **kw)
    assert run.card["status"] == "complete" and run.card["privacy"]["dp_sgd"]["steps"] == 6
    assert run.card["request"]["config"]["g_padding"] == "zeros"


def test_overwrite_keeps_the_old_spend(tmp_path, tiny_dataset, fast_gan):
    kw = dict(noise_multiplier=1.2, accountant="rdp", config=fast_gan, progress=False)
    first = privsynth.train(tiny_dataset, "dpgan", tmp_path / "r", **kw)
    second = privsynth.train(tiny_dataset, "dpgan", tmp_path / "r", overwrite=True, **kw)
    assert first.card["run_id"] != second.card["run_id"]
    (row,) = Ledger().datasets()
    assert set(row["runs"]) == {first.card["run_id"], second.card["run_id"]}
    assert row["epsilon_spent"] == pytest.approx(first.epsilon + second.epsilon)
    # A replacement that is refused (over budget) leaves the finished run as it was.
    with pytest.raises(privsynth.errors.BudgetError, match="--force"):
        privsynth.train(tiny_dataset, "dpgan", tmp_path / "r", overwrite=True, budget=1.0, **kw)
    kept = privsynth.Run.load(tmp_path / "r")
    assert kept.card["run_id"] == second.card["run_id"] and (tmp_path / "r" / "split.json").exists()
    # --overwrite also replaces a run folder whose card is damaged beyond reading.
    (tmp_path / "r" / "card.json").write_text("{broken")
    third = privsynth.train(
        tiny_dataset, "gan", tmp_path / "r", overwrite=True, config=fast_gan, progress=False
    )
    assert third.card["status"] == "complete" and third.card["run_id"] != second.card["run_id"]


def test_killed_dpkernel_resumes_on_its_one_release(tmp_path, tiny_dataset, monkeypatch):
    """A one-shot method killed after its release resumes on the checkpointed release: the noise
    is drawn (and paid for) once, and the card's history is that one release."""
    import privsynth.models.base as base

    releases = []
    real_release = base.gaussian_noise_release
    monkeypatch.setattr(
        base, "gaussian_noise_release", lambda *a: releases.append(a[1]) or real_release(*a)
    )
    kw = dict(
        epsilon=4,
        config={"n_features": 16, "steps": 30, "patience": 1000},
        progress=False,
        checkpoint_every=10,
    )
    out = tmp_path / "k"
    calls = _kill_after_first_checkpoint(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        privsynth.train(tiny_dataset, "dpkernel", out, **kw)
    assert calls == [0, 10] and len(releases) == 1
    monkeypatch.setattr(trainer, "save_train_state", save_train_state)  # no more kills
    run = privsynth.train(tiny_dataset, "dpkernel", out, **kw)
    assert len(releases) == 1  # no second release on resume
    sigma = run.card["privacy"]["dp_sgd"]["noise_multiplier"]
    size = run.card["privacy"]["size_release"]["history"][0]
    assert run.card["privacy"]["dp_sgd"]["history"] == [size, [sigma, 1.0, 1]]
    assert run.card["train"]["metrics"]["generator_steps"] == 30
    assert 4 * 0.99 <= run.epsilon <= 4 * 1.01


def test_resume_checks_the_data_by_its_keyed_check_not_a_hash(
    tmp_path, tiny_dataset, fast_gan, monkeypatch
):
    """An unfinished run's card confirms the data without a plain hash of it: other pixels of
    the same size are refused, the same data resumes."""
    from privsynth.data import ImageDataset
    from privsynth.errors import CheckpointError

    kw = dict(
        noise_multiplier=1.2, accountant="rdp", config=fast_gan, progress=False, checkpoint_every=2
    )
    out = tmp_path / "r"
    _kill_after_first_checkpoint(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        privsynth.train(tiny_dataset, "dpgan", out, **kw)
    monkeypatch.undo()
    text = (out / "card.json").read_text()
    assert tiny_dataset.fingerprint[:12] not in text
    assert json.loads(text)["data"]["check"]["data"]
    images = tiny_dataset.images.copy()
    images[0, 0, 0, 0] ^= 1
    other = ImageDataset(images, tiny_dataset.labels, tiny_dataset.class_names, name="tiny")
    with pytest.raises(CheckpointError, match="holds an unfinished run on other data"):
        privsynth.train(other, "dpgan", out, **kw)
    assert privsynth.train(tiny_dataset, "dpgan", out, **kw).card["status"] == "complete"


def test_resumed_dpmerf_is_listed_complete(tmp_path, tiny_dataset, monkeypatch, capsys):
    """A one-shot run resumed after its release runs no private step: the run's one entry in
    the ledger ends complete (not abandoned or interrupted), at the card's epsilon."""
    kw = dict(
        epsilon=4,
        config={"n_features": 16, "steps": 30, "patience": 1000},
        progress=False,
        checkpoint_every=10,
    )
    out = tmp_path / "m"
    _kill_after_first_checkpoint(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        privsynth.train(tiny_dataset, "dpmerf", out, **kw)
    monkeypatch.setattr(trainer, "save_train_state", save_train_state)  # no more kills
    run = privsynth.train(tiny_dataset, "dpmerf", out, **kw)
    (ds,) = Ledger().datasets()
    entry = ds["runs"][run.card["run_id"]]
    assert entry["status"] == "complete"
    assert entry["epsilon"] == pytest.approx(run.epsilon) == pytest.approx(ds["epsilon_spent"])
    assert entry["delta"] == pytest.approx(run.card["privacy"]["delta"])
    from privsynth.cli import main

    assert main(["ledger"]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if run.card["run_id"] in x]
    assert "[complete]" in line
