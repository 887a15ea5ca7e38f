"""Measurement: does the fidelity feature space tell blurred colour noise from real CIFAR images?

Real CIFAR holdout vs real CIFAR train, and a set of blurred, saturated colour-noise blobs vs
the same train images: FD and precision / recall / density / coverage in the LeNet-only space
and in the default colour space (`evaluate.feature_space`). Small sizes, one thread:

    OMP_NUM_THREADS=1 nice -n 10 python bench/colour_space.py \
        --data ../shared/data/cifar10-5k/cifar10_5k.npz --n 1000

Writes bench/results/colour_space.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def blurred_colour_noise(n: int, size: int, seed: int = 0) -> np.ndarray:
    """N x 3 x size x size uint8 blobs: coarse random colour fields, upsampled smoothly and
    stretched to full saturation; no objects, no edges."""
    import torch
    from torch.nn import functional as F

    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    x = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    lo, hi = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
    x = (x - lo) / (hi - lo + 1e-6)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    shared = os.environ.get("PRIVSYNTH_SHARED_DATA") or str(ROOT.parent / "shared" / "data")
    p.add_argument("--data", default=str(Path(shared) / "cifar10-5k" / "cifar10_5k.npz"))
    p.add_argument("--n", type=int, default=1000, help="images per set (train, holdout, blobs)")
    p.add_argument("--passes", type=int, default=12000, help="LeNet training budget")
    p.add_argument("--result", default=str(ROOT / "bench/results/colour_space.json"))
    a = p.parse_args(argv)
    from privsynth.atomic import write_json
    from privsynth.data import DataSource, load_dataset
    from privsynth.evaluate import fidelity
    from privsynth.evaluate.feature_space import fitted_space
    from privsynth.evaluate.features import feature_model

    t0 = time.time()
    data = load_dataset(DataSource(a.data, channels=3))
    perm = np.random.default_rng(0).permutation(len(data))
    n = a.n
    train, hold, ref = (data.subset(perm[i * n : (i + 1) * n]) for i in range(3))
    blobs = blurred_colour_noise(n, data.image_shape[1], seed=1)
    extractor, fx = feature_model(ref, ROOT / "runs/colour_space_cache", 0, False, a.passes)
    rows = []
    for space in ("lenet", "lenet+colour"):
        fs = fitted_space(extractor, train.images, space)
        f_train = fs(train.images)
        for what, imgs in (("real holdout", hold.images), ("blurred colour noise", blobs)):
            f = fs(imgs)
            rows.append(
                {
                    "space": space,
                    "set": what,
                    "fd": fidelity.frechet(f_train, f),
                    "prdc": fidelity.prdc_scores(f_train, f),
                }
            )
    result = {
        "command": "python bench/colour_space.py " + " ".join(argv or sys.argv[1:]),
        "data": a.data,
        "n_each": n,
        "split": "seeded permutation (seed 0): train, holdout, LeNet reference; disjoint",
        "feature_extractor": {k: v for k, v in fx.items() if k != "path"},
        "rows": rows,
        "seconds": round(time.time() - t0, 1),
    }
    write_json(Path(a.result), result)
    print("| space | set vs real train | FD | precision | recall | density | coverage |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        q = r["prdc"]
        print(
            f"| {r['space']} | {r['set']} | {r['fd']:.2f} | {q['precision']:.2f} | "
            f"{q['recall']:.2f} | {q['density']:.2f} | {q['coverage']:.2f} |"
        )
    print(json.dumps({"seconds": result["seconds"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
