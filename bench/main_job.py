"""Benchmark: the README's main job (and the same job with other methods), timed as a user runs it.

    OMP_NUM_THREADS=1 python bench/main_job.py --methods dpkernel,dpgan \
        --result bench/results/main_job_digits.json

Each method runs `privsynth train --data digits --method M --epsilon 10 --evaluate` in a child
process; wall seconds, the child's CPU seconds and peak memory come from the OS, the accuracy,
spread and epsilon from the run's quick_eval.json and card.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_one(method: str, epsilon: float, data: str, out: Path, ledger: Path) -> dict:
    cmd = [
        "privsynth",
        "train",
        "--data",
        data,
        "--method",
        method,
        "--epsilon",
        str(epsilon),
        "--out",
        str(out),
        "--evaluate",
        "--overwrite",
        "--no-progress",
        "--ledger",
        str(ledger),
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.time() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    ev = json.loads((out / "quick_eval.json").read_text())
    card = json.loads((out / "card.json").read_text())
    return {
        "method": method,
        "command": " ".join(cmd[:-2]),
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(
            (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 1
        ),
        "peak_rss_mb": round(after.ru_maxrss / 1024, 1),  # the largest child so far
        "epsilon_spent": card["privacy"]["epsilon"],
        "delta": card["privacy"]["delta"],
        "tstr_lenet": ev["tstr_accuracy"],
        "trtr_lenet": ev["trtr_accuracy"],
        "within_class_spread": ev["diversity"]["ratio_mean"],
        "least_varied_class_spread": ev["diversity"]["ratio_min"],
        "collapse_flags": ev["collapse_flags"],
        "n_synthetic": ev["n_synthetic"],
        "n_holdout": ev["n_holdout"],
        "protocol": ev["protocol"],
    }


def main(argv: list[str] | None = None) -> int:
    from privsynth.atomic import write_json

    p = argparse.ArgumentParser()
    p.add_argument("--methods", default="dpkernel,dpgan")
    p.add_argument("--epsilon", type=float, default=10.0)
    p.add_argument("--data", default="digits")
    p.add_argument("--out", default=None, help="run folders (default: a temporary folder)")
    p.add_argument("--result", required=True)
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(a.out or tmp)
        rows = [
            run_one(m, a.epsilon, a.data, out / m, out / "ledger.sqlite")
            for m in a.methods.split(",")
        ]
    write_json(
        a.result,
        {
            "command": "python bench/main_job.py " + " ".join(argv or sys.argv[1:]),
            "cpu_count": os.cpu_count(),
            "loadavg_1m_end": os.getloadavg()[0],
            "rows": rows,
        },
    )
    for r in rows:
        print(
            f"{r['method']:<10} {r['wall_seconds']:7.1f} s  TSTR {r['tstr_lenet']:.1%}  "
            f"spread {r['within_class_spread']:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
