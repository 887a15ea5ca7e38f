"""bench/gpu_check.sh at smoke size on CPU (so the GPU check cannot rot between GPU slots), and
bench/scaling.py's exponent fit on numbers whose exponent is known."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .test_bench_smoke import load

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_smoke_writes_times_and_quality(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh"), "--device", "cpu", "--smoke"]
        + ["--out", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    assert summary["smoke"] is True and summary["machine"]["device"] == "cpu"
    cells = {(c["dataset"], c["method"]): c for c in summary["cells"]}
    assert set(cells) == {
        (d, m) for d in ("grey", "colour") for m in ("dpmerf", "dpgan", "dpdiffusion")
    }
    for cell in cells.values():
        assert cell["exit_code"] == 0
        assert cell["wall_seconds"] > 0 and cell["train_wall_seconds"] > 0
        assert 0.0 <= cell["tstr_accuracy"] <= 1.0 and 0.0 <= cell["trtr_accuracy"] <= 1.0
        assert 0 < cell["epsilon"] <= 10 * 1.01  # a private run at the default target
    run = tmp_path / "runs" / "colour-dpgan"
    assert json.loads((run / "card.json").read_text())["data"]  # the run folder is complete
    assert (run / "quick_eval.json").exists()


def test_gpu_check_refuses_a_machine_without_cuda(tmp_path, monkeypatch, capsys):
    import torch

    gpu_check = load("gpu_check")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--device", "cuda", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--device cpu" in err


def test_scaling_fits_the_known_exponent():
    scaling = load("scaling")
    ns = [1000, 2000, 4000, 8000]
    fit = scaling.fit_exponent(ns, [3.0 * n**1.25 for n in ns])
    assert fit["b"] == pytest.approx(1.25, abs=1e-3)
    assert fit["a"] == pytest.approx(3.0, rel=1e-6)
    assert fit["r2"] == pytest.approx(1.0) and fit["points"] == 4
    assert scaling.fit_exponent([1000], [2.0]) is None  # one point fixes no slope
    assert scaling.fit_exponent(ns, [None, 0.0, 5.0, 9.0])["points"] == 2  # failed cells drop


def test_scaling_exponents_use_only_the_grey_one_process_cells(tmp_path):
    scaling = load("scaling")
    row = dict(method="dpgan", exit_code=0, cpu_seconds=1.0, train_wall_seconds=1.0)
    rows = [
        {**row, "set": "grey", "n": n, "wall_seconds": 0.01 * n, "cpu_seconds": 5 + 0.002 * n}
        for n in (1000, 2000, 4000)
    ]
    rows.append({**row, "set": "colour", "n": 5000, "wall_seconds": 1e6})  # not in the fit
    rows.append({**row, "set": "grey", "n": 8000, "wall_seconds": 1e6, "exit_code": 1})
    fits = scaling.exponents(rows, ["dpgan"])["dpgan"]
    assert fits["wall_seconds"]["b"] == pytest.approx(1.0, abs=1e-6)
    assert 0 < fits["cpu_seconds"]["b"] < 1  # a fixed cost bends the power law under 1
    for r in rows:
        r.update(size=28, nproc=1, peak_rss_mb=1.0, load_before=0.5)
    result = {"config": {"methods": ["dpgan"]}, "exponents": {"dpgan": fits}, "cells": rows}
    assert scaling.affine_cpu(result, "dpgan") == pytest.approx((5.0, 2.0))
    table = scaling.markdown(result)
    assert "| dpgan | 1.00 |" in table and "| dpgan | colour | 5000 |" in table
    scaling.plot(result, tmp_path / "scaling.png")
    assert (tmp_path / "scaling.png").read_bytes()[:4] == b"\x89PNG"


def test_scaling_refuses_a_dirty_tree(tmp_path, monkeypatch):
    scaling = load("scaling")
    monkeypatch.setattr(scaling, "git_state", lambda repo, outputs: {"commit": "x", "dirty": True})
    assert scaling.main(["--quick", "--out", str(tmp_path / "s.json")]) == 2
    assert not (tmp_path / "s.json").exists()
