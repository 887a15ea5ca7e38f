"""A run whose loss or weights go NaN/inf stops with one line naming the fix, keeps its spend in
the ledger, is never marked complete; `sample` refuses non-finite weights."""

from __future__ import annotations

import json
import shutil

import pytest

import privsynth
from privsynth.cli import main
from privsynth.errors import CheckpointError, TrainingDiverged
from privsynth.privacy import Ledger, epsilon_from_history
from privsynth.run import TRAIN_STATE, WEIGHTS

MERF = {"n_features": 64, "steps": 20, "batch_size": 30, "g_width": 8, "z_dim": 8}


def _segment() -> dict:
    (ds,) = Ledger().datasets()
    ((seg,),) = [r["segments"] for r in ds["runs"].values()]
    return seg


def test_diverged_release_keeps_its_spend_and_is_never_complete(tmp_path, tiny_dataset):
    """dpmerf spends its epsilon on one release, then its generator diverges (lr 1e30)."""
    out = tmp_path / "r"
    with pytest.raises(
        TrainingDiverged,
        match=r"training diverged at step 20: generator\..* "
        r"NaN or infinite; lower the learning rate",
    ):
        privsynth.train(
            tiny_dataset,
            "dpmerf",
            out,
            noise_multiplier=2.0,
            accountant="rdp",
            config={**MERF, "lr": 1e30},
            progress=False,
        )
    card = json.loads((out / "card.json").read_text())
    assert card["status"] == "diverged" and card["diverged"]["step"] == 20
    assert not (out / WEIGHTS).exists() and not (out / TRAIN_STATE).exists()
    seg = _segment()
    sigma = card["privacy"]["dp_sgd_plan"]["noise_multiplier"]
    delta = card["privacy"]["dp_sgd_plan"]["delta"]
    size = tuple(card["privacy"]["size_release"]["history"][0])  # released first
    assert seg["status"] == "diverged"
    assert seg["counted_epsilon"] == pytest.approx(
        epsilon_from_history([size, (sigma, 1.0, 1)], delta, "rdp")
    )  # the release happened: booked
    with pytest.raises(CheckpointError, match="did not finish"):
        privsynth.Run.load(out)
    with pytest.raises(CheckpointError, match="diverged .*--overwrite"):  # no silent retry
        privsynth.train(
            tiny_dataset,
            "dpmerf",
            out,
            noise_multiplier=2.0,
            accountant="rdp",
            config={**MERF, "lr": 1e30},
            progress=False,
        )


def test_dp_sgd_divergence_stops_at_a_checkpoint_booking_what_ran(tmp_path, tiny_dataset, fast_gan):
    with pytest.raises(TrainingDiverged, match="at step 2:"):
        privsynth.train(
            tiny_dataset,
            "dpgan",
            tmp_path / "r",
            noise_multiplier=1.0,
            accountant="rdp",
            config={**fast_gan, "lr_d": 1e30},
            progress=False,
            checkpoint_every=2,
        )
    card = json.loads((tmp_path / "r" / "card.json").read_text())
    plan = card["privacy"]["dp_sgd_plan"]
    seg = _segment()
    size = card["privacy"]["size_release"]["history"][0]  # the size release, then 2 steps
    assert seg["status"] == "diverged" and seg["accounting"]["booked"] == [
        size,
        [plan["noise_multiplier"], plan["sample_rate"], 2],
    ]
    assert seg["counted_epsilon"] == pytest.approx(
        epsilon_from_history(
            [size, (plan["noise_multiplier"], plan["sample_rate"], 2)], plan["delta"], "rdp"
        )
    )


def test_cli_divergence_and_empty_batches_are_one_line_exit_2(tmp_path, tiny_npz, capsys):
    base = [
        "train",
        "--method",
        "dpmerf",
        "--data",
        str(tiny_npz),
        "--no-progress",
        "--noise-multiplier",
        "2",
        "--accountant",
        "rdp",
        *[f"--set={k}={v}" for k, v in MERF.items() if k != "batch_size"],
    ]
    assert main([*base, "--out", str(tmp_path / "a"), "--set", "lr=1e30"]) == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("privsynth: error:")]
    assert "TrainingDiverged" in line and "--set lr=" in line
    # --batch-size 0 stops at parse time; the same size through --set reaches train's check.
    assert main([*base, "--out", str(tmp_path / "b"), "--batch-size", "0"]) == 2
    err = capsys.readouterr().err
    assert "--batch-size: must be >= 1, got 0" in err and "Traceback" not in err
    assert main([*base, "--out", str(tmp_path / "b"), "--set", "batch_size=0"]) == 2
    err = capsys.readouterr().err
    assert "--batch-size must be > 0, got 0" in err and "Traceback" not in err
    assert not (tmp_path / "b").exists()


def test_sample_refuses_non_finite_weights(tmp_path, trained_run, capsys):
    from safetensors.torch import load_file, save_file

    run = shutil.copytree(trained_run["out"], tmp_path / "r")
    state = load_file(run / WEIGHTS)
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name] * float("nan")
    save_file(state, str(run / WEIGHTS))
    assert main(["sample", str(run), "-n", "10", "--out", str(tmp_path / "s")]) == 2
    assert "NaN/infinite weights" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
