"""The bad-input corpus, continued: options checked before anything is released, inputs an output
would delete, overlapping holdouts, and the output-folder lock. Each corpus case asserts what
test_bad_inputs.py asserts: exit 2, one line on stderr, no traceback, no file or ledger change
(the ledger lives in tmp_path, so a reservation would show as a new file).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_bad_inputs import _npz, _png_folder, _run_copy, _tiny, _train, _tree, _write

from privsynth.cli import main


def _sample(run: Path, out: Path) -> list[str]:
    return ["sample", str(run), "-n", "3", "--out", str(out), "--overwrite"]


CASES = {
    # --- options validated before the ledger reservation and before any noise is drawn -------
    "--set lr_d=-1": (lambda r, t: _train(r, "--set", "lr_d=-1"), "lr_d=-1 must be > 0"),
    "--checkpoint-every 0": (
        lambda r, t: _train(r, "--checkpoint-every", "0"),
        "--checkpoint-every",
    ),
    "--checkpoint-every -3": (
        lambda r, t: _train(r, "--checkpoint-every", "-3"),
        "--checkpoint-every",
    ),
    "--set n_d=1e999": (lambda r, t: _train(r, "--set", "n_d=1e999"), "must be a whole number"),
    "--set lr_g=1e999": (lambda r, t: _train(r, "--set", "lr_g=1e999"), "must be a finite"),
    "--set z_dim=2.5": (lambda r, t: _train(r, "--set", "z_dim=2.5"), "must be a whole number"),
    "--set n_d={[]:1}": (lambda r, t: _train(r, "--set", "n_d={[]:1}"), "must be a whole"),
    "--seed 2**80": (lambda r, t: _train(r, "--seed", str(2**80)), "--seed"),
    "--split-seed -1": (lambda r, t: _train(r, "--split-seed", "-1"), "--split-seed"),
    "--holdout 10.5": (lambda r, t: _train(r, "--holdout", "10.5"), "whole count"),
    "--overwrite with --set lr_d=-1 keeps the old run": (
        lambda r, t: _train(r, "--overwrite", "--set", "lr_d=-1", out=_run_copy(r, t)),
        "lr_d=-1 must be > 0",
    ),
    # --- an output that is or contains an input ------------------------------------------------
    "sample RUN --out RUN --overwrite": (
        lambda r, t: _sample(_run_copy(r, t), r / "run"),
        "is or contains the input RUN",
    ),
    "sample --out the run's parent --overwrite": (
        lambda r, t: _sample(_run_copy(r, t), r),
        "is or contains the input RUN",
    ),
    "export RUN into its parent --overwrite": (
        lambda r, t: ["export", str(_run_copy(r, t)), str(r), "--overwrite"],
        "is or contains the input RUN",
    ),
    "train --out the folder holding --data": (
        lambda r, t: _train(r, "--overwrite", data=_tiny(_run_copy(r, t)), out=r / "run"),
        "is or contains the input --data",
    ),
    # --- a holdout that overlaps --data by content ---------------------------------------------
    "--holdout the same file as --data": (
        lambda r, t: _train(r, "--holdout", str(_tiny(r))),
        "shares 60 image(s) with --data",
    ),
    "--holdout a renamed copy of --data": (
        lambda r, t: _train(r, "--holdout", str(_copy(_tiny(r), r / "test" / "t.npz"))),
        "shares 60 image(s) with --data",
    ),
    # --- tracebacks that are one line now -------------------------------------------------------
    "truncated npz": (lambda r, t: _train(r, data=_truncated(r)), "BadZipFile"),
    "evaluate --synthetic truncated npz": (
        lambda r, t: [
            "evaluate",
            "--synthetic",
            str(_truncated(r)),
            "--data",
            str(t["data"]),
            "--out",
            str(r / "ev"),
        ],
        "BadZipFile",
    ),
    "npz of 0-d arrays": (
        lambda r, t: _train(r, data=_npz(r, images=np.array(5), labels=np.array(1))),
        "single value (0-d array)",
    ),
    "png header claiming 30000x30000": (
        lambda r, t: _train(r, data=_bomb_folder(r)),
        "too large to decode",
    ),
    "--epsilon 500": (lambda r, t: _train(r, "--epsilon", "500"), "is above 200"),
    "--epsilon 1e4": (lambda r, t: _train(r, "--epsilon", "1e4"), "is above 200"),
    "--epsilon 1e300": (lambda r, t: _train(r, "--epsilon", "1e300"), "is above 200"),
    "info: privacy is a string": (
        lambda r, t: ["info", str(_edited(r, t, privacy="x"))],
        "privacy is str, expected a JSON object",
    ),
    "info: privacy is a list": (
        lambda r, t: ["info", str(_edited(r, t, privacy=[1]))],
        "privacy is list, expected a JSON object",
    ),
    "info: data is null": (
        lambda r, t: ["info", str(_edited(r, t, data=None))],
        "data is null, expected a JSON object",
    ),
    # --- bounds and empty leftovers ----------------------------------------------------------
    "sample -n 100000000000": (
        lambda r, t: ["sample", str(t["out"]), "-n", str(10**11), "--out", str(r / "s.npz")],
        "GiB available",
    ),
    "federate --clients 1": (
        lambda r, t: _federate(r, "--clients", "1"),
        "--clients must be >= 2",
    ),
    "federate --fraction 0": (
        lambda r, t: _federate(r, "--fraction", "0"),
        "--fraction must lie in (0, 1]",
    ),
    "--classes 100000": (
        lambda r, t: _train(r, "--classes", "100000"),
        "100000 classes for 48 training images",
    ),
    # --- smaller ----------------------------------------------------------------------------------
    "sweep --methods ''": (
        lambda r, t: ["sweep", "--data", str(_tiny(r)), "--out", str(r / "sw"), "--methods", ""],
        "names no method",
    ),
    "sweep --methods ,": (
        lambda r, t: ["sweep", "--data", str(_tiny(r)), "--out", str(r / "sw"), "--methods", ","],
        "names no method",
    ),
    "sweep --set for a method not in --methods": (
        lambda r, t: [
            "sweep",
            "--data",
            str(_tiny(r)),
            "--out",
            str(r / "sw"),
            "--methods",
            "dpvae",
            "--set",
            "dpgan:n_d=2",
        ],
        "--set names ['dpgan']",
    ),
    "export --license with a newline": (
        lambda r, t: ["export", str(t["out"]), str(r / "pub"), "--license", "mit\nlicense_x: y"],
        "is not a license identifier the Hugging Face Hub accepts",
    ),
    "export --license not an HF identifier": (
        lambda r, t: ["export", str(t["out"]), str(r / "pub"), "--license", "MIT License"],
        "is not a license identifier",
    ),
    "export a run whose weights are not safetensors": (
        lambda r, t: ["export", str(_damaged_weights(r, t)), str(r / "pub")],
        "is not valid safetensors",
    ),
    "ledger set-budget with an empty --reason": (
        lambda r, t: ["ledger", "set-budget", "--data", str(_tiny(r)), "5", "--reason", " "],
        "--reason is empty",
    ),
}


def _federate(root: Path, *extra: str) -> list[str]:
    return ["federate", "--data", str(_tiny(root)), "--out", str(root / "fed"), *extra]


def _damaged_weights(root: Path, trained_run) -> Path:
    run = _run_copy(root, trained_run)
    weights = run / "weights.safetensors"
    whole = weights.read_bytes()
    weights.write_bytes(whole[: len(whole) // 2])
    return run


def _truncated(root: Path) -> Path:
    whole = _tiny(root).read_bytes()
    return _write(root / "cut.npz", whole[: len(whole) // 2])


def _bomb_folder(root: Path) -> Path:
    """Two classes of small PNGs, plus one whose IHDR claims 30000 x 30000 pixels."""
    import struct
    import zlib

    folder = _png_folder(root / "png")

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + kind + data + crc

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0))
    body = chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    _write(folder / "a" / "big.png", b"\x89PNG\r\n\x1a\n" + header + body)
    return folder


def _edited(root: Path, trained_run, **fields) -> Path:
    run = _run_copy(root, trained_run)
    card = json.loads((run / "card.json").read_text())
    card.update(fields)
    (run / "card.json").write_text(json.dumps(card))
    return run


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src.read_bytes())
    return dst


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_before_release(case, tmp_path, trained_run, capsys):
    build, expected = CASES[case]
    argv = build(tmp_path, trained_run)
    before, run_before = _tree(tmp_path), _tree(trained_run["out"])
    capsys.readouterr()

    code = main(argv)

    line = _one_line(capsys)
    assert code == 2, line
    assert "error:" in line and expected in line, line
    assert _tree(tmp_path) == before  # no run folder, no ledger, no lock, no staging folder
    assert _tree(trained_run["out"]) == run_before


def _fast_train(data: Path, out: Path, *extra: str) -> list[str]:
    from tests.conftest import FAST_GAN

    sets = [f"--set={k}={v}" for k, v in FAST_GAN.items()]
    return [
        "train",
        "--method",
        "dpgan",
        "--data",
        str(data),
        "--out",
        str(out),
        "-q",
        *sets,
        *extra,
    ]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_overwrite_keeps_the_old_run_when_the_replacement_fails(tmp_path, trained_run, capsys):
    """--overwrite is an atomic swap: a replacement that fails after its spend was booked
    (here: it diverges) leaves the finished run byte for byte, and no staging folder."""
    run = _run_copy(tmp_path, trained_run)
    old = _files(run)
    argv = _fast_train(
        trained_run["data"], run, "--overwrite", "--set=lr_d=1e30", "--set=lr_g=1e30"
    )

    code = main(argv)

    line = _one_line(capsys)
    assert code == 2 and "TrainingDiverged" in line, line
    assert _files(run) == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.sqlite", "run"]


def test_overwrite_swaps_in_the_new_run_once_complete(tmp_path, trained_run):
    run = _run_copy(tmp_path, trained_run)
    old_id = json.loads((run / "card.json").read_text())["run_id"]

    assert main(_fast_train(trained_run["data"], run, "--overwrite", "--seed", "1")) == 0

    card = json.loads((run / "card.json").read_text())
    assert card["status"] == "complete" and card["run_id"] != old_id
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.sqlite", "run"]


def test_second_train_into_a_running_out_is_refused(tmp_path, trained_run, capsys):
    """While a run holds --out, a second `train` into it stops with one line naming the running
    one (it would otherwise finish too, and one of the two results would be lost)."""
    from privsynth.lock import hold_output

    out = tmp_path / "runs" / "r"
    with hold_output(out, "privsynth train"):
        before = _tree(tmp_path)
        code = main(_fast_train(trained_run["data"], out))
        line = _one_line(capsys)
        assert _tree(tmp_path) == before
    assert code == 2, line
    assert "is in use by another run (privsynth train, pid" in line, line
    assert not (tmp_path / "runs").exists()  # the lock's file and folders went with it


def test_resume_from_a_checkpoint_with_wrong_shapes_is_one_line(
    tmp_path, trained_run, capsys, monkeypatch
):
    """A train_state.pt whose tensors do not fit the model stops before the ledger is touched."""
    import torch

    from privsynth.orchestrate import trainer
    from privsynth.run import load_train_state, save_train_state

    real, calls = trainer.save_train_state, []

    def killed_after_first(path, state):
        calls.append(state["step"])
        if len(calls) > 1:
            raise KeyboardInterrupt
        real(path, state)

    out = tmp_path / "run"
    argv = _fast_train(trained_run["data"], out, "--checkpoint-every", "2")
    with monkeypatch.context() as m:
        m.setattr(trainer, "save_train_state", killed_after_first)
        assert main(argv) == 130
    state = load_train_state(out / "train_state.pt")
    name = next(iter(state["private"]))
    state["private"][name] = torch.zeros(3, 3)
    save_train_state(out / "train_state.pt", state)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    capsys.readouterr()

    code = main(argv)

    line = _one_line(capsys)
    assert code == 2 and "train_state.pt does not fit this run's model" in line, line
    assert f"e.g. {name}: (3, 3) saved" in line, line
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_set_budget_below_the_spend_warns(tmp_path, trained_run, capsys):
    ledger = tmp_path / "copy.sqlite"
    ledger.write_bytes(trained_run["ledger"].read_bytes())
    argv = ["ledger", "set-budget", "--data", str(trained_run["data"]), "0.01"]

    assert main([*argv, "--reason", "DPO sign-off", "--ledger", str(ledger)]) == 0

    err = capsys.readouterr().err
    assert "warning: the budget 0.01 is below the epsilon" in err, err
    assert "every further run on it will be refused" in err


def test_a_read_only_ledger_is_called_read_only(tmp_path):
    """root writes through file permissions, so the driver's own error is what is checked."""
    import sqlite3

    from privsynth.privacy.ledger.store import Store

    error = sqlite3.OperationalError("attempt to write a readonly database")
    message = str(Store(str(tmp_path / "l.sqlite"))._damaged(error))
    assert "is read-only" in message and "restore it from a backup" not in message


def test_sigterm_keeps_the_checkpoint_and_names_the_resume_command(
    tmp_path, trained_run, capsys, monkeypatch
):
    """SIGTERM mid-run: exit 2, one line with the command that resumes; rerunning it finishes."""
    import os
    import signal

    from privsynth.orchestrate import trainer

    real, calls = trainer.save_train_state, []

    def terminated_after_first(path, state):
        calls.append(state["step"])
        if len(calls) > 1:
            os.kill(os.getpid(), signal.SIGTERM)
        real(path, state)

    out = tmp_path / "run"
    argv = _fast_train(trained_run["data"], out, "--checkpoint-every", "2")
    with monkeypatch.context() as m:
        m.setattr(trainer, "save_train_state", terminated_after_first)
        code = main(argv)
    line = _one_line(capsys)
    assert code == 2 and "terminated (SIGTERM)" in line, line
    assert f"resume with `privsynth train --method dpgan --data {trained_run['data']}" in line
    assert json.loads((out / "card.json").read_text())["status"] == "running"
    assert (out / "train_state.pt").exists()

    assert main(argv) == 0
    assert json.loads((out / "card.json").read_text())["status"] == "complete"


def test_images_that_cannot_fit_memory_are_refused_with_the_numbers(
    tmp_path, trained_run, capsys, monkeypatch
):
    """Estimated before the resize allocates anything: needed vs available, one line, nothing
    written. (Free memory is pinned to 64 MiB so the case does not depend on the host: 60 images
    at 1024 x 1024 need about 0.3 GiB as uint8 plus float.)"""
    from privsynth import preflight

    monkeypatch.setattr(preflight, "available_memory", lambda: 64 * 2**20)
    argv = _train(tmp_path, "--image-size", "1024")
    before = _tree(tmp_path)
    capsys.readouterr()

    code = main(argv)

    line = _one_line(capsys)
    assert code == 2, line
    assert "60 images resized to 1x1024x1024 needs about 0.3 GiB" in line, line
    assert "this machine has 0.1 GiB available" in line, line
    assert _tree(tmp_path) == before
