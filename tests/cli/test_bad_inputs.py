"""The bad-input corpus: every case stops with exit 2, exactly one line on stderr (no traceback)
naming the problem, and leaves nothing behind — no run folder, no ledger, no lock, no temp file.

Cases from issue 12 (item 13) and issue 15 (first-hour problems). Each builds its inputs in
``tmp_path``; the test compares every path under ``tmp_path`` before and after the command.
"""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from privsynth.cli import main

# A tiny GAN (never reached: every case stops before training).
TINY = ["--set=epochs=2", "--set=batch_size=32", "--set=width=8", "--set=g_width=8"]


def _npz(root: Path, **arrays) -> Path:
    path = root / "d.npz"
    np.savez(path, **arrays)
    return path


def _tiny(root: Path) -> Path:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(60, 1, 8, 8), dtype=np.uint8)
    return _npz(root, images=images, labels=np.arange(60) % 3, class_names=["0", "1", "2"])


def write_idx(path: Path, array: np.ndarray) -> Path:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    raw = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(
        gzip.compress(raw + array.tobytes()) if path.suffix == ".gz" else raw + array.tobytes()
    )
    return path


def _train(
    root: Path, *extra: str, data: Path | str | None = None, out: Path | None = None
) -> list[str]:
    data = str(data if data is not None else _tiny(root))
    return [
        "train",
        "--method",
        "dpgan",
        "--data",
        data,
        "--out",
        str(out if out is not None else root / "runs" / "r"),
        "--no-progress",
        *TINY,
        *extra,
    ]


def _png_folder(root: Path, colour: bool = False) -> Path:
    from PIL import Image

    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            pixels = np.full((6, 6, 3), [10 * i, 200 if colour else 10 * i, 10 * i], np.uint8)
            Image.fromarray(pixels, "RGB").save(root / c / f"{i}.png")
    return root


def _run_copy(root: Path, trained_run) -> Path:
    return Path(shutil.copytree(trained_run["out"], root / "run"))


CASES = {
    # --- issue 12, item 13 ---------------------------------------------------------------------
    "image-size 0": (lambda r, t: _train(r, "--image-size", "0"), "--image-size"),
    "empty npz archive": (lambda r, t: _train(r, data=_npz(r)), "found keys []"),
    "zero-byte npz": (lambda r, t: _train(r, data=_write(r / "z.npz", b"")), "empty file"),
    "npz with no images": (
        lambda r, t: _train(
            r, data=_npz(r, x=np.zeros((0, 4, 4), np.uint8), y=np.zeros(0), class_names=["a", "b"])
        ),
        "holds no images",
    ),
    "--set steps=abc": (
        lambda r, t: _train(r, "--set", "n_d=abc"),
        "n_d='abc' must be a whole number",
    ),
    "--set without =": (lambda r, t: _train(r, "--set", "nonsense"), "KEY=VALUE"),
    "--device banana": (lambda r, t: _train(r, "--device", "banana"), "not a device"),
    "--device cuda without CUDA": (
        lambda r, t: _train(r, "--device", "cuda"),
        "CUDA is not available",
    ),
    "--out names a file": (
        lambda r, t: [
            "train",
            "--method",
            "dpgan",
            "--data",
            str(_tiny(r)),
            "--out",
            str(_write(r / "f.txt", b"x")),
            *TINY,
        ],
        "is a file; pass a folder",
    ),
    "--out under a file": (
        lambda r, t: [
            "train",
            "--method",
            "dpgan",
            "--data",
            str(_tiny(r)),
            "--out",
            str(_write(r / "f.txt", b"x") / "run"),
            *TINY,
        ],
        "is a file, not a folder",
    ),
    # --- issue 15 --------------------------------------------------------------------------------
    "random-bytes npz": (
        lambda r, t: _train(r, data=_write(r / "rb.npz", bytes(range(256)) * 8)),
        "not an NPZ archive",
    ),
    "holdout path missing": (
        lambda r, t: _train(r, "--holdout", str(r / "no" / "test")),
        "neither a number nor an existing path",
    ),
    "holdout 0": (lambda r, t: _train(r, "--holdout", "0"), "--holdout"),
    "data: parent of train/ and test/": (
        lambda r, t: _train(r, data=_split_parent(r)),
        "not classes; pass --data",
    ),
    "idx without --classes": (lambda r, t: _train(r, data=_idx(r)), "--classes N"),
    "float npz outside 0-1": (
        lambda r, t: _train(
            r,
            data=_npz(
                r, x=np.full((9, 4, 4), 3.0), y=np.arange(9) % 3, class_names=["a", "b", "c"]
            ),
        ),
        "--pixel-range",
    ),
    "colour image without --channels": (
        lambda r, t: _train(r, data=_png_folder(r / "png", colour=True)),
        "--channels 3",
    ),
    "--pixel-range reversed": (
        lambda r, t: _train(r, "--pixel-range", "255,0"),
        "LOW must be below HIGH",
    ),
    "--window on digits": (
        lambda r, t: _train(r, "--window", "0,100", data="digits"),
        "do not apply to 'digits'",
    ),
    "--classes 1": (lambda r, t: _train(r, "--classes", "1"), "need >= 2 classes"),
    "--method banana": (lambda r, t: _train(r, "--method", "banana"), "invalid choice"),
    "--epochs -1": (lambda r, t: _train(r, "--epochs", "-1"), "--epochs"),
    "--budget 0": (lambda r, t: _train(r, "--budget", "0"), "--budget"),
    "sample --out x.txt": (
        lambda r, t: ["sample", str(t["out"]), "-n", "3", "--out", str(r / "x.txt")],
        "looks like a file name",
    ),
    "sample onto an existing npz": (
        lambda r, t: [
            "sample",
            str(t["out"]),
            "-n",
            "3",
            "--out",
            str(_write(r / "s.npz", b"old")),
        ],
        "pass --overwrite",
    ),
    "sample -n 0": (lambda r, t: ["sample", str(t["out"]), "-n", "0", "--out", str(r / "s")], "-n"),
    "evaluate onto an existing report": (
        lambda r, t: [
            "evaluate",
            str(t["out"]),
            "--out",
            str(_write(r / "ev" / "metrics.json", b"{}").parent),
        ],
        "pass --overwrite",
    ),
    "evaluate a folder that is no run": (
        lambda r, t: ["evaluate", str(r), "--out", str(r / "ev")],
        "not a run folder",
    ),
    "export into a non-empty folder": (
        lambda r, t: ["export", str(t["out"]), str(_write(r / "pub" / "x", b"x").parent)],
        "pass --overwrite",
    ),
    "export a non-private run": (
        lambda r, t: ["export", str(_non_private(r, t)), str(r / "pub")],
        "without differential privacy",
    ),
    "export an unfinished run": (
        lambda r, t: ["export", str(_unfinished(r, t)), str(r / "pub")],
        "not finished",
    ),
    "info of a missing run": (lambda r, t: ["info", str(r / "nope")], "not a run folder"),
    "sweep --jobs 0": (
        lambda r, t: ["sweep", "--data", str(_tiny(r)), "--out", str(r / "sw"), "--jobs", "0"],
        "--jobs",
    ),
    "federate --clients 0": (
        lambda r, t: [
            "federate",
            "--data",
            str(_tiny(r)),
            "--out",
            str(r / "fed"),
            "--clients",
            "0",
        ],
        "--clients",
    ),
}
if Path("/proc").is_dir():  # root may write anywhere else; not even root creates files in /proc
    CASES["--out unwritable (/proc)"] = (
        lambda r, t: [
            "train",
            "--method",
            "dpgan",
            "--data",
            str(_tiny(r)),
            "--out",
            "/proc/privsynth-test/run",
            *TINY,
        ],
        "cannot write --out",
    )


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _split_parent(root: Path) -> Path:
    _png_folder(root / "png" / "train")
    _png_folder(root / "png" / "test")
    return root / "png"


def _idx(root: Path) -> Path:
    folder = root / "idx"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte", np.zeros((6, 4, 4), np.uint8))
    write_idx(folder / "train-labels-idx1-ubyte", np.arange(6, dtype=np.uint8) % 2)
    return folder


def _non_private(root: Path, trained_run) -> Path:
    import json

    run = _run_copy(root, trained_run)
    card = json.loads((run / "card.json").read_text())
    card["private"] = False
    (run / "card.json").write_text(json.dumps(card))
    return run


def _unfinished(root: Path, trained_run) -> Path:
    import json

    run = _run_copy(root, trained_run)
    card = json.loads((run / "card.json").read_text())
    card["status"] = "running"
    (run / "card.json").write_text(json.dumps(card))
    return run


def _tree(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): (p.stat().st_size if p.is_file() else -1) for p in root.rglob("*")
    }


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(
    case, tmp_path, trained_run, capsys, monkeypatch
):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    build, expected = CASES[case]
    argv = build(tmp_path, trained_run)
    before, run_before = _tree(tmp_path), _tree(trained_run["out"])
    capsys.readouterr()

    code = main(argv)

    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (case, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "error:" in lines[0] and expected in lines[0], lines[0]
    assert _tree(tmp_path) == before  # nothing created, nothing changed, nothing removed
    assert _tree(trained_run["out"]) == run_before
    assert not Path("/proc/privsynth-test").exists()
