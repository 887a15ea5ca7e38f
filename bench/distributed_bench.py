"""Multi-process DP-SGD throughput: the same private run in 1 process and in N processes.

    PYTHONPATH=src python bench/distributed_bench.py                  # MNIST 2000, dpgan + dpvae
    PYTHONPATH=src python bench/distributed_bench.py --smoke          # seconds; CI keeps it alive

Each run is ``privsynth.orchestrate.distributed.train`` with a fixed noise multiplier
(no calibration search),
so both runs have the same plan (sigma, q, steps) and the same epsilon, which the JSON checks.
1 process uses all cores as torch threads; N processes get cores / N threads each (gloo on CPU).
Wall time includes starting the processes (a few seconds each); ``steps_per_second`` is planned
DP-SGD steps over that wall time. Data: a 2000-image subset of ../shared/data/mnist-t10k (the
first 2000, holdout 0.2), or the embedded digits with --data digits.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from privsynth.atomic import write_json
from privsynth.data import load_dataset
from privsynth.orchestrate import distributed
from privsynth.request import RunRequest

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT / ".." / "shared" / "data" / "mnist-t10k"
CONFIGS = {
    "dpgan": {"batch_size": 64, "epochs": 4, "n_d": 5},
    "dpvae": {"batch_size": 128, "epochs": 4},
}
SMOKE = {
    "dpgan": {"batch_size": 32, "epochs": 2, "n_d": 2, "width": 8, "g_width": 8, "z_dim": 8},
    "dpvae": {"batch_size": 32, "epochs": 2, "width": 8, "z_dim": 4},
}


def one(data, method: str, config: dict, nproc: int, workdir: Path) -> dict:
    t0, c0 = time.time(), _children_cpu()
    request = RunRequest.build(
        data,
        method=method,
        out=workdir / f"{method}-{nproc}",
        noise_multiplier=1.0,
        config=config,
        progress=False,
        checkpoint_every=10**9,
        samples=False,  # the timing is training's alone
    )
    run = distributed.train(request, nproc=nproc)
    wall = time.time() - t0
    steps = run.card["train"]["steps"]
    return {
        "nproc": nproc,
        "wall_seconds": round(wall, 2),
        "steps": steps,
        "steps_per_second": round(steps / wall, 3),
        "epsilon": run.epsilon,
        "cpu_seconds_children": round(_children_cpu() - c0, 2),
        "history": run.card["privacy"]["dp_sgd"]["history"],
    }


def _children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system + t.user + t.system


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="mnist2000", help="mnist2000 or digits")
    ap.add_argument("--mnist", default=str(MNIST), help="the MNIST t10k IDX folder")
    ap.add_argument("--methods", nargs="+", default=list(CONFIGS))
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", default="bench/results/distributed.json")
    args = ap.parse_args(argv)
    if args.smoke or args.data == "digits":
        data = load_dataset("digits")
    else:
        full = load_dataset(args.mnist, classes=[str(i) for i in range(10)])
        data = full.subset(list(range(2000)), name="mnist-t10k-2000")
    configs = SMOKE if args.smoke else CONFIGS
    result = {
        "what": "the same private run (fixed sigma) in 1 and in N processes",
        "data": data.name,
        "n_images": len(data),
        "cores": os.cpu_count(),
        "machine": platform.platform(),
        "torch": torch.__version__,
        "smoke": args.smoke,
        "load_average_start": os.getloadavg(),
        "methods": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            runs = [one(data, method, configs[method], n, Path(tmp)) for n in (1, args.nproc)]
            assert runs[0]["history"] == runs[1]["history"]
            assert abs(runs[0]["epsilon"] - runs[1]["epsilon"]) < 1e-9 * runs[0]["epsilon"]
            result["methods"][method] = {
                "config": configs[method],
                "runs": runs,
                "speedup": round(runs[1]["steps_per_second"] / runs[0]["steps_per_second"], 2),
            }
            print(method, json.dumps({r["nproc"]: r["steps_per_second"] for r in runs}), flush=True)
    result["load_average_end"] = os.getloadavg()  # other jobs on the machine skew the speed-up
    write_json(Path(args.out), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
