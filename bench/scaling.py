"""Cost growth: wall, CPU seconds and peak memory of `privsynth train` against the number of
private images, the image size and the number of DP-SGD processes.

    OMP_NUM_THREADS=1 nice -n 10 python bench/scaling.py          # the full grid (~25 min, 2 cores)
    python bench/scaling.py --quick --allow-dirty --out /tmp/s.json  # smoke size, seconds

Every cell is one fresh ``python -m privsynth.cli train`` process (one torch thread), timed from
outside: wall clock, user + system CPU seconds and peak resident memory from ``os.wait4`` (the
child and the processes it waited for: with ``--nproc 2`` the CPU is the sum, the memory the
largest single process). The card's ``train.wall_seconds`` (training alone, without start-up,
data loading and the sample grid) is recorded next to them.

The budget is fixed per image, not per run (`BUDGETS`): DP-SGD methods train one epoch at a fixed
batch size and noise multiplier (no calibration, no warm-up), so a cell's work grows with N;
dpmerf runs a fixed number of generator steps (its one release reads every image once, the
steps do not depend on N). The per-method options are the large-data defaults
(`models.defaults`) held fixed across N, so the 3 000-image switch of the defaults does not
show up as a jump.

Grid: N = 1k, 2k, 4k, 8k of 28x28 grey (MNIST test set from ``$PRIVSYNTH_SHARED_DATA`` or
``../shared/data``; without it the embedded digits drawn with replacement and resized, which the
JSON records), CIFAR-10-5k colour 32x32, image size 32 and 64 at 1k (resized by
``--image-size``), and 2 processes at 2k for the DP-SGD methods. The exponent b of
wall = a * N^b is fitted by least squares on log-log over the grey cells, per method.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from importlib import metadata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # this tree's privsynth, as the cells' PYTHONPATH
sys.path.insert(0, str(ROOT / "bench"))
from scaling_report import affine_cpu, markdown, plot  # noqa: E402,F401  (tests reach them here)

from privsynth.atomic import write_json  # noqa: E402

PROTOCOL = "privsynth-scaling/1"
RESULTS = ROOT / "bench" / "results"
HOLDOUT = 200  # rows appended to every private set and held out by --holdout, so N is exact
DP_SGD = ("dpgan", "dpvae", "dpdiffusion")
# The large-data defaults (models/defaults.py) frozen for every N; one epoch per DP-SGD cell.
BUDGETS = {
    "dpmerf": ["--set", "steps=100", "--set", "patience=100"],
    "dpgan": ["--epochs", "1", "--batch-size", "64"]
    + ["--set", "n_d=2", "--set", "g_width=16", "--set", "aux=1.0"],
    "dpvae": ["--epochs", "1", "--batch-size", "256"],
    "dpdiffusion": ["--epochs", "1", "--batch-size", "256", "--set", "multiplicity=1"],
}
FIXED_NOISE = ["--noise-multiplier", "1.0", "--warmup", "none"]
FULL = {"ns": (1000, 2000, 4000, 8000), "sizes": (32, 64), "size_n": 1000, "nproc_n": 2000}
QUICK = {"ns": (64, 128), "sizes": (), "size_n": 64, "nproc_n": 0}
QUICK_BUDGETS = {
    "dpmerf": ["--set", "steps=5", "--set", "patience=5", "--set", "n_features=200"],
    "dpgan": ["--epochs", "1", "--batch-size", "32", "--set", "width=8", "--set", "g_width=8"],
    "dpvae": ["--epochs", "1", "--batch-size", "32", "--set", "width=8"],
    "dpdiffusion": ["--epochs", "1", "--batch-size", "32", "--set", "width=8"],
}


class ScalingError(Exception):
    """A refused request; main prints it as one line and exits 2."""


def git_state(repo: Path, outputs: tuple[Path, ...]) -> dict:
    """HEAD's full commit and whether the work tree differs from it, not counting ``outputs``
    (as bench/suite.py records it; kept here so this parent process never imports torch, whose
    resident memory every child's ru_maxrss would inherit through fork)."""

    def git(*args):
        return subprocess.run(
            ["git", *args], cwd=repo, text=True, capture_output=True, check=True
        ).stdout

    excluded = [f":(exclude){Path(o).resolve().relative_to(repo)}" for o in outputs if _inside(o)]
    try:
        return {
            "commit": git("rev-parse", "HEAD").strip(),
            "dirty": bool(git("status", "--porcelain", "--", ".", *excluded).strip()),
        }
    except (OSError, subprocess.CalledProcessError) as e:
        raise ScalingError(f"{repo}: not a git work tree ({e}); results need a commit") from None


def _inside(path: Path) -> bool:
    return Path(path).resolve().is_relative_to(ROOT)


def shared_data() -> Path:
    env = os.environ.get("PRIVSYNTH_SHARED_DATA")
    return Path(env).expanduser() if env else ROOT.parent / "shared" / "data"


def grey_source(quick: bool) -> tuple[np.ndarray, np.ndarray, str]:
    """(images N x 1 x H x W uint8, labels, what) of the grey pool the N cells draw from."""
    from privsynth.data import DataSource, load_dataset
    from privsynth.data.source import parse_classes

    mnist = shared_data() / "mnist-t10k"
    if mnist.exists() and not quick:
        ds = load_dataset(DataSource(str(mnist), classes=parse_classes("10")))
        return ds.images, np.asarray(ds.labels), f"MNIST test set ({mnist.name}), 28x28"
    ds = load_dataset(DataSource("digits"))
    what = "embedded digits (8x8), drawn with replacement"
    return ds.images, np.asarray(ds.labels), what + ("" if quick else ", resized to 28x28")


def write_grey(pool, n: int, work: Path, seed: int = 0) -> Path:
    """An .npz of n + HOLDOUT images drawn from the pool (without replacement while it lasts)."""
    images, labels, _ = pool
    rng = np.random.default_rng(seed)
    rows = n + HOLDOUT
    pick = (
        rng.permutation(len(images))[:rows]
        if rows <= len(images)
        else rng.integers(0, len(images), rows)
    )
    path = work / f"grey-{n}.npz"
    np.savez(path, x=images[pick], y=labels[pick])
    return path


def cells(args, pool, work: Path) -> list[dict]:
    """The grid: each cell's descriptive fields and its `privsynth train` data flags."""
    grid = QUICK if args.quick else FULL
    native = pool[0].shape[-1]
    base = native if args.quick else 28
    resize = [] if base == native else ["--image-size", str(base)]
    out = []
    for n in grid["ns"]:
        data = ["--data", str(write_grey(pool, n, work)), "--classes", "10", *resize]
        out += [
            dict(method=m, set="grey", n=n, size=base, nproc=1, flags=data) for m in args.methods
        ]
    cifar = shared_data() / "cifar10-5k" / "cifar10_5k.npz"
    if cifar.exists() and not args.quick:
        with np.load(cifar) as z:
            n = len(z["y"]) - HOLDOUT
        flags = ["--data", str(cifar), "--channels", "3"]
        out += [
            dict(method=m, set="colour", n=n, size=32, nproc=1, flags=flags) for m in args.methods
        ]
    for size in grid["sizes"]:
        n = grid["size_n"]
        data = ["--data", str(write_grey(pool, n, work)), "--classes", "10"]
        flags = [*data, "--image-size", str(size)]
        out += [
            dict(method=m, set="size", n=n, size=size, nproc=1, flags=flags) for m in args.methods
        ]
    if grid["nproc_n"]:
        n = grid["nproc_n"]
        data = ["--data", str(write_grey(pool, n, work)), "--classes", "10", *resize]
        out += [
            dict(method=m, set="nproc", n=n, size=base, nproc=2, flags=[*data, "--nproc", "2"])
            for m in args.methods
            if m in DP_SGD
        ]
    return out


def run_cell(cell: dict, args, work: Path) -> dict:
    """Train one cell in a fresh process; its wall, CPU and peak memory from os.wait4."""
    work = work / f"cell-{cell['index']}"  # own run folder, ledger and log: cells may overlap
    work.mkdir(parents=True, exist_ok=True)
    run_dir = work / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    budget = (QUICK_BUDGETS if args.quick else BUDGETS)[cell["method"]]
    noise = FIXED_NOISE if cell["method"] in DP_SGD else []
    cmd = [sys.executable, "-m", "privsynth.cli", "train", "--method", cell["method"]]
    cmd += [*cell["flags"], "--holdout", str(HOLDOUT), *budget, *noise]
    cmd += ["--out", str(run_dir), "--ledger", str(work / "ledger.sqlite"), "-q", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT / 'src'}"}
    load_before = os.getloadavg()[0]
    with open(work / "stderr.txt", "w") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped above; Popen must not wait
    row = {k: v for k, v in cell.items() if k not in ("flags", "index")}
    row["command"] = " ".join(cmd[1:]).replace(str(work.parent), "$WORK")
    row.update(
        wall_seconds=round(wall, 2),
        cpu_seconds=round(usage.ru_utime + usage.ru_stime, 2),
        peak_rss_mb=round(usage.ru_maxrss / 1024, 1),
        load_before=round(load_before, 2),
        load_after=round(os.getloadavg()[0], 2),
        exit_code=proc.returncode,
    )
    if proc.returncode:
        row["error"] = (work / "stderr.txt").read_text().strip().splitlines()[-1:]
        return row
    card = json.loads((run_dir / "card.json").read_text())
    row["train_wall_seconds"] = card["train"].get("wall_seconds")
    row["steps"] = card["train"].get("steps")
    return row


def fit_exponent(ns, values) -> dict | None:
    """Least-squares fit of log(value) = log(a) + b log(N): {'b', 'a', 'r2', 'points'}."""
    pts = [(n, v) for n, v in zip(ns, values, strict=True) if v and v > 0]
    if len(pts) < 2 or len({n for n, _ in pts}) < 2:
        return None
    x = np.log([n for n, _ in pts])
    y = np.log([v for _, v in pts])
    b, log_a = np.polyfit(x, y, 1)
    resid = y - (log_a + b * x)
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / total if total > 0 else 1.0
    return {
        "b": round(float(b), 3),
        "a": float(math.exp(log_a)),
        "r2": round(r2, 4),
        "points": len(pts),
    }


def exponents(rows: list[dict], methods) -> dict:
    """Per method and measure: the fit over the grey, one-process, base-size cells."""
    out = {}
    for m in methods:
        series = [r for r in rows if r["method"] == m and r["set"] == "grey" and not r["exit_code"]]
        ns = [r["n"] for r in series]
        out[m] = {
            key: fit_exponent(ns, [r.get(key) for r in series])
            for key in ("wall_seconds", "cpu_seconds", "train_wall_seconds")
        }
    return out


def machine() -> dict:
    mem = Path("/proc/meminfo").read_text().split("\n")[0].split()[1]
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "memory_gb": round(int(mem) / 1024**2, 1),
        "python": sys.version.split()[0],
        "torch": metadata.version("torch"),
        "opacus": metadata.version("opacus"),
        "omp_num_threads": 1,
    }


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", default="dpmerf,dpgan,dpvae,dpdiffusion")
    p.add_argument("--quick", action="store_true", help="smoke size (digits 8x8, N 64/128)")
    p.add_argument("--out", default=str(RESULTS / "scaling.json"))
    p.add_argument("--plot", default=None, help="default: --out with .png")
    p.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--jobs", type=int, default=1, help="cells run at the same time")
    p.add_argument("--resume", action="store_true", help="keep --out's finished cells")
    p.add_argument("--table", action="store_true", help="print --out as Markdown and stop")
    p.add_argument("--allow-dirty", action="store_true", help="write results marked dirty")
    args = p.parse_args(argv)
    args.methods = [m for m in args.methods.split(",") if m]
    unknown = set(args.methods) - set(BUDGETS)
    if unknown:
        raise ScalingError(
            f"--methods: {', '.join(sorted(unknown))} not measured; use {', '.join(BUDGETS)}"
        )
    args.out = Path(args.out)
    args.plot = Path(args.plot) if args.plot else args.out.with_suffix(".png")
    return args


def run(argv) -> dict | None:
    args = parse_args(argv)
    if args.table:
        print(markdown(json.loads(args.out.read_text())))
        return None
    git = git_state(ROOT, (args.out, args.plot))
    if git["dirty"] and not args.allow_dirty:
        raise ScalingError(
            f"{ROOT}: uncommitted changes; commit them (results record the commit) or pass "
            "--allow-dirty to write results marked dirty"
        )
    work = Path(args.work or tempfile.mkdtemp(prefix="privsynth-scaling-"))
    work.mkdir(parents=True, exist_ok=True)
    pool = grey_source(args.quick)
    grid = cells(args, pool, work)
    for i, cell in enumerate(grid):
        cell["index"] = i
    result = header(args, git, pool[2], len(grid))
    if args.resume:
        result["cells"] = resumed_rows(args, result)
    measured = {cell_key(r) for r in result["cells"]}
    todo = [c for c in grid if cell_key(c) not in measured]
    started = time.time()
    with ThreadPoolExecutor(max_workers=args.jobs) as executor:
        futures = [executor.submit(run_cell, c, args, work) for c in todo]
        for future in as_completed(futures):
            r = {**future.result(), "commit": git["commit"]}
            result["cells"].append(r)
            print(
                f"[{len(result['cells'])}/{len(grid)}] {r['method']} {r['set']} N={r['n']} "
                f"{r['size']}px nproc={r['nproc']}: {r['wall_seconds']} s wall, "
                f"{r['cpu_seconds']} s CPU, {r['peak_rss_mb']} MB, exit {r['exit_code']}",
                flush=True,
            )
            # written after every cell: a run cut short still leaves its measured rows
            result["complete"] = len(result["cells"]) == len(grid)
            result["seconds"] = round(time.time() - started, 1)
            result["machine"]["load_after"] = os.getloadavg()
            result["exponents"] = exponents(result["cells"], args.methods)
            write_json(args.out, result)
    plot(result, args.plot)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return result


def cell_key(cell: dict) -> tuple:
    return (cell["method"], cell["set"], cell["n"], cell["size"], cell["nproc"])


def resumed_rows(args, result: dict) -> list[dict]:
    """The finished rows of an earlier, interrupted run in --out with the same protocol and
    budgets (each row keeps the commit it was measured at)."""
    if not args.out.exists():
        return []
    old = json.loads(args.out.read_text())
    same = (
        old.get("protocol") == PROTOCOL
        and old.get("config", {}).get("budgets") == result["config"]["budgets"]
        and old["config"].get("grey_data") == result["config"]["grey_data"]
    )
    if not same:
        raise ScalingError(f"--resume: {args.out} was measured with another protocol or budgets")
    rows = [{"commit": old["commit"], **r} for r in old["cells"] if r["exit_code"] == 0]
    result["resumed"] = {"commit": old["commit"], "dirty": old["dirty"], "cells": len(rows)}
    return rows


def header(args, git: dict, grey_data: str, n_cells: int) -> dict:
    """The result's fixed part: commit, machine, configuration and protocol."""
    return {
        "protocol": PROTOCOL,
        **git,
        "machine": {**machine(), "load_before": os.getloadavg(), "load_after": None},
        "config": {
            "methods": args.methods,
            "quick": args.quick,
            "grey_data": grey_data,
            "holdout_rows": HOLDOUT,
            "budgets": {m: (QUICK_BUDGETS if args.quick else BUDGETS)[m] for m in args.methods},
            "dp_sgd_fixed": FIXED_NOISE,
            "grid": {
                k: list(v) if isinstance(v, tuple) else v
                for k, v in (QUICK if args.quick else FULL).items()
            },
            "cells": n_cells,
            "jobs": args.jobs,
        },
        "protocol_text": __doc__.split("\n\n", 2)[2].strip(),
        "complete": False,
        "seconds": 0.0,
        "cells": [],
        "exponents": {},
    }


def main(argv=None) -> int:
    try:
        result = run(sys.argv[1:] if argv is None else argv)
    except ScalingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if result is None:
        return 0
    print(json.dumps({m: e["wall_seconds"] for m, e in result["exponents"].items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
