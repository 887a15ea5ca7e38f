"""Benchmark: a privacy-utility sweep, timed, written to bench/results/<name>.json.

    OMP_NUM_THREADS=1 nice -n 10 python bench/sweep_bench.py --data digits \
        --methods dpgan,dpvae,dpdiffusion,dpmerf --epsilons 1,2,5,10,inf \
        --out runs/sweep-digits --result bench/results/sweep_digits.json

If the sweep is interrupted, rerun the same command: finished cells are kept. `--collect` writes
the JSON from whatever cells have finished (marked partial) without training anything.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch


def machine() -> dict:
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "loadavg_1m": os.getloadavg()[0],
        "note": "2-core CPU, shared with 4 other engineers' jobs (load average above 2 "
        "means our timings are inflated by contention)",
    }


def collect(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "cells").glob("*/eval.json"))]


def main() -> int:
    from privsynth.atomic import write_json
    from privsynth.cli.sweep import parse_sets
    from privsynth.orchestrate.sweep import best, parse_epsilons, sweep

    p = argparse.ArgumentParser()
    p.add_argument("--data", default="digits")
    p.add_argument("--methods", default="dpgan,dpvae,dpdiffusion,dpmerf")
    p.add_argument("--epsilons", default="1,2,5,10,inf")
    p.add_argument("--holdout", type=float, default=0.2)
    p.add_argument(
        "--classes",
        default=None,
        help="class list for IDX/NPZ data without one, e.g. 10 (see --classes in train)",
    )
    p.add_argument("--delta", type=float, default=None)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--out", required=True)
    p.add_argument("--result", required=True)
    p.add_argument("--collect", action="store_true")
    p.add_argument("--jobs", type=int, default=1, help="cells trained at once (worker processes)")
    a = p.parse_args()
    out = Path(a.out)
    start = machine()
    if a.collect:
        write_json(
            a.result,
            {
                "command": " ".join(sys.argv),
                "partial": True,
                "machine": start,
                "rows": collect(out),
            },
        )
        return 0
    t0 = time.time()
    from privsynth.data import DataSource
    from privsynth.data.source import parse_classes

    data = DataSource(a.data, classes=parse_classes(a.classes) if a.classes else None)
    table = sweep(
        data,
        a.methods.split(","),
        parse_epsilons(a.epsilons),
        out,
        delta=a.delta,
        configs=parse_sets(a.set),
        holdout=a.holdout,
        split_seed=0,
        progress=False,
        jobs=a.jobs,
    )
    wall = time.time() - t0
    eps = [e for e in table["epsilons"] if e != "inf"]
    write_json(
        a.result,
        {
            "command": " ".join(sys.argv),
            "partial": False,
            "wall_seconds_total": round(wall, 1),
            "cells": len(table["rows"]),
            "machine_start": start,
            "machine_end": machine(),
            "best_per_epsilon": {str(e): best(table, e) for e in eps},
            "table": table,
        },
    )
    print(json.dumps({"wall_seconds_total": round(wall, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
