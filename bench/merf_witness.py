"""Benchmark: how well the witness floor separates blown-out images from real-like ones.

    OMP_NUM_THREADS=1 python bench/merf_witness.py RUN_FOLDER --data ../shared/data/mnist-t10k \
        --result bench/results/dpmerf_rerun/witness_eps10_seed1.json

For a finished dpmerf / dpkernel run (weights with the released embedding), the witness
``<f(x), released class mean>`` of (a) the generator's raw draws (floor off), split into
"blown-out" (over 35% of pixels above mid-grey; real MNIST digits rarely are) and the rest, and
(b) the real holdout images, each divided by the class median the floor uses. The floor redraws
what sits below `witness_floor` (0.2) on that scale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
QUANTILES = [0.01, 0.05, 0.1, 0.5, 0.9, 0.99]
BRIGHT_SHARE = 0.35  # share of pixels above mid-grey that calls an image blown out


def ratios(synth, images_unit: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Witness / the class's median witness (the scale `witness_floor` is on)."""
    return synth.witness(images_unit, labels) / synth.embedding.median[labels]


def summary(values: torch.Tensor) -> dict:
    if len(values) == 0:
        return {"n": 0}
    q = torch.quantile(values.double(), torch.tensor(QUANTILES, dtype=torch.float64))
    return {"n": len(values), "quantiles": dict(zip(map(str, QUANTILES), q.tolist(), strict=True))}


def main(argv=None) -> int:
    from privsynth.atomic import write_json
    from privsynth.data import to_unit_range
    from privsynth.run import Run

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run")
    p.add_argument("--data", default=None, help="the run's dataset, if moved")
    p.add_argument("--n", type=int, default=5000, help="generated images (class-balanced)")
    p.add_argument("--result", required=True)
    a = p.parse_args(argv)
    run = Run.load(a.run)
    synth = run.synthesizer
    if not hasattr(synth, "embedding") or not synth.embedding.ready:
        sys.exit(
            f"error: {a.run} has no released embedding (a dpmerf / dpkernel run of this version)"
        )
    _, holdout = run.load_data(a.data)
    k = len(run.class_names)
    labels = np.arange(a.n) % k
    floor = synth.config.witness_floor
    synth.config.witness_floor = 0.0  # the raw draws: what the floor would see
    raw = torch.from_numpy(to_unit_range(synth.sample(a.n, labels, seed=0)))
    synth.config.witness_floor = floor
    y = torch.from_numpy(labels).long()
    with torch.no_grad():
        r_gen = ratios(synth, raw, y)
        real = torch.from_numpy(to_unit_range(holdout.images))
        r_real = ratios(synth, real, torch.from_numpy(holdout.labels).long())
    blown = (raw.flatten(1) > 0).float().mean(1) > BRIGHT_SHARE
    result = {
        "command": "python bench/merf_witness.py " + " ".join(argv or sys.argv[1:]),
        "run": str(a.run),
        "epsilon": run.epsilon if np.isfinite(run.epsilon) else "infinity",
        "witness_floor": floor,
        "blown_out_share": round(float(blown.float().mean()), 4),
        "generated_blown_out": summary(r_gen[blown]),
        "generated_other": summary(r_gen[~blown]),
        "real_holdout": summary(r_real),
        "share_below_floor": {
            "generated_blown_out": round(float((r_gen[blown] < floor).float().mean()), 4)
            if blown.any()
            else None,
            "generated_other": round(float((r_gen[~blown] < floor).float().mean()), 4),
            "real_holdout": round(float((r_real < floor).float().mean()), 4),
        },
    }
    write_json(a.result, result)
    print(
        f"blown-out {result['blown_out_share']:.1%} of raw draws; below the floor: "
        + ", ".join(f"{k} {v}" for k, v in result["share_below_floor"].items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
