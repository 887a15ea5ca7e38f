"""Seconds per TSTR classifier at the benchmark's size: n class-balanced synthetic images from a
run folder (DPImageBench: 60 000), tested on the run's real holdout, one CPU thread.

    OMP_NUM_THREADS=1 python bench/tstr_speed.py runs/dpvae10 --n 60000 --trtr \
        --out bench/results/tstr_speed_mnist10k.json

Reports, per classifier (LeNet, ResNet-8): accuracy, epochs, wall and CPU seconds (CPU seconds
are what an idle machine's wall time would be at one thread), the load average while it ran,
the sampling time, and the within-class spread (and its seconds). ``--smoke`` uses 100 images.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

import privsynth
from privsynth.atomic import write_json
from privsynth.evaluate.diversity import collapse_flags, within_class_diversity
from privsynth.evaluate.utility import UTILITY_CLASSIFIERS, balanced_labels, trtr, tstr
from privsynth.run import Run


def timed(fn, *args, **kwargs) -> tuple[dict, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, round(time.perf_counter() - wall, 1), round(time.process_time() - cpu, 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a run folder written by `privsynth train`")
    ap.add_argument("--n", type=int, default=60_000, help="synthetic images (default 60000)")
    ap.add_argument("--trtr", action="store_true", help="also time TRTR (real training split)")
    ap.add_argument("--smoke", action="store_true", help="100 images, for CI")
    ap.add_argument("--out", default=None, help="JSON to write")
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    n = 100 if args.smoke else args.n
    run = Run.load(args.run)
    train, hold = run.load_data()
    k = len(run.class_names)
    (images, labels), wall, _ = timed(run.sample, n, labels=balanced_labels(n, k), seed=0)
    result = {
        "run": str(args.run),
        "method": run.method,
        "epsilon": run.card["privacy"]["epsilon"],
        "n_synthetic": n,
        "n_train": len(train),
        "n_holdout": len(hold),
        "image_shape": list(train.image_shape),
        "sample_wall_seconds": wall,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "privsynth": privsynth.__version__,
    }
    div, wall, cpu = timed(within_class_diversity, train.images, train.labels, images, labels, k)
    result["diversity"] = {
        "ratio_mean": div["ratio_mean"],
        "ratio_min": div["ratio_min"],
        "flags": collapse_flags(div),
        "wall_seconds": wall,
        "cpu_seconds": cpu,
    }
    for clf in UTILITY_CLASSIFIERS:
        jobs = [("tstr", tstr, images, labels)]
        if args.trtr:
            jobs.append(("trtr", trtr, train.images, train.labels))
        for kind, fn, x, y in jobs:
            r, wall, cpu = timed(fn, x, y, hold.images, hold.labels, k, classifier=clf)
            result[f"{kind}_{clf}"] = {
                "accuracy": r["accuracy"],
                "epochs": r["epochs"],
                "images_seen": r["images_seen"],
                "wall_seconds": wall,
                "cpu_seconds": cpu,
                "load_average": os.getloadavg()[0],
            }
            print(kind, clf, result[f"{kind}_{clf}"], flush=True)
    if args.out:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
