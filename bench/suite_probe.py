"""Probe a trained suite cell on its validation split: re-sample it with other sampling-time
settings, or post-process its draws, and score each variant with the suite's evaluation (TSTR
LeNet, fidelity space, detection). Validation only; writes one JSON of all variants.

    PRIVSYNTH_SHARED_DATA=../shared/data OMP_NUM_THREADS=1 python bench/suite_probe.py \
        --cell runs/suite/cells/mnist10k-660e0dac93ad/dpmerf-eps1-seed0-9d09f7b9 \
        --ref runs/suite/ref/mnist10k-validation-seed0 --dataset mnist10k \
        --variants none,despeckle,median3,witness_floor=0 --result /tmp/probe.json

``--ref`` is the suite's cached reference folder for (dataset, validation, seed) (``<out>/ref/``;
computed there if absent). Variants: ``none`` (the cell as it samples), ``despeckle`` (zero a
bright pixel, > 64, whose eight neighbours average under 32), ``median3`` (3x3 median filter),
``KEY=VALUE`` (sample with that config field overridden, e.g. ``witness_floor=0``),
``confident=SHARE`` (draw n / SHARE images and keep the SHARE of each class that a classifier
fitted on the draws themselves finds surest: `keep_confident`); parts join with ``+``, e.g.
``contrast=1.0+witness_floor=0.8``. Post-processing a release is free under DP; none of these
variants is a default.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import suite  # noqa: E402
import utility  # noqa: E402


def despeckle(images: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    f = images.astype(np.float32)
    neighbours = (ndimage.uniform_filter(f, size=(1, 1, 3, 3)) * 9 - f) / 8
    return np.where((f > 64) & (neighbours < 32), 0, images).astype(images.dtype)


def median3(images: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.median_filter(images, size=(1, 1, 3, 3))


POST = {"none": lambda x: x, "despeckle": despeckle, "median3": median3}


def keep_confident(images: np.ndarray, labels: np.ndarray, share: float, seed: int):
    """The ``share`` of each class's draws that a logistic regression on pixels finds surest of
    their class. Cross-fitted: each half of the draws is scored by a fit on the other half, so
    no draw scores itself. Uses the draws only (post-processing)."""
    from sklearn.linear_model import LogisticRegression

    x = images.reshape(len(images), -1).astype(np.float32) / 255.0
    # a stream of its own: balanced_labels shuffles with default_rng(seed), whose permutation's
    # parity would split the draws by class
    half = np.random.default_rng([seed, 1]).permutation(len(x)) % 2 == 0
    sure = np.zeros(len(x))
    for fit, scored in ((half, ~half), (~half, half)):
        clf = LogisticRegression(max_iter=300, C=0.1).fit(x[fit], labels[fit])
        p = clf.predict_proba(x[scored])
        sure[scored] = p[np.arange(len(p)), np.searchsorted(clf.classes_, labels[scored])]
    kept = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        kept.extend(members[np.argsort(-sure[members])[: round(len(members) * share)]])
    kept = np.sort(np.array(kept))
    return images[kept], labels[kept]


def parse_variant(name: str) -> tuple:
    """``despeckle+contrast=1.0+confident=0.7`` -> (post-processing, config overrides, share
    kept)."""
    post, settings, share = POST["none"], {}, 1.0
    for part in name.split("+"):
        if "=" not in part:
            if part not in POST:
                raise SystemExit(
                    f"suite_probe: unknown variant part {part!r}; use {', '.join(POST)}, "
                    "confident=SHARE or KEY=VALUE, joined by '+'"
                )
            post = POST[part]
            continue
        key, value = part.split("=", 1)
        if key == "confident":
            share = float(value)
        else:
            settings[key] = float(value)
    return post, settings, share


def main(argv=None) -> int:
    from privsynth.atomic import write_json
    from privsynth.evaluate import detection, fidelity
    from privsynth.evaluate import utility as evaluate_utility
    from privsynth.models.base import build_config
    from privsynth.run import Run

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cell", required=True)
    p.add_argument("--ref", required=True, help="the suite's reference folder for this split")
    p.add_argument("--dataset", default="mnist10k")
    p.add_argument("--variants", default="none")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--passes", type=int, default=150000)
    p.add_argument("--result", required=True)
    a = p.parse_args(argv)
    dataset = suite.load(a.dataset)
    split = suite.splits(a.dataset, dataset, suite.RESULTS)
    train = dataset.subset(split["train"], name=f"{a.dataset}-train")
    val = dataset.subset(split["validation"], name=f"{a.dataset}-validation")
    ref = utility.Reference(train, val, Path(a.ref), 5000, a.passes, a.seed)
    k = train.num_classes
    labels_wanted = evaluate_utility.balanced_labels(a.n, k, a.seed)
    out = {"cell": a.cell, "dataset": a.dataset, "split": "validation", "seed": a.seed,
           "git": suite.git_state(suite.ROOT), "variants": {}}  # fmt: skip
    variants = {name: parse_variant(name) for name in a.variants.split(",")}  # all checked first
    for name, (post, settings, share) in variants.items():
        run = Run.load(a.cell)
        if settings:  # sampling-time settings, rebuilt like any config (type/range checks)
            synth = run.synthesizer
            synth.config = build_config(type(synth.config), {**synth.config_dict(), **settings})
        t = time.time()
        if share < 1:
            wanted = evaluate_utility.balanced_labels(round(a.n / share), k, a.seed)
            images, labels = run.sample(len(wanted), labels=wanted, seed=a.seed)
            images, labels = keep_confident(np.asarray(images), np.asarray(labels), share, a.seed)
        else:
            images, labels = run.sample(a.n, labels=labels_wanted, seed=a.seed)
        images = post(np.asarray(images))
        tstr = evaluate_utility.tstr(
            images,
            labels,
            val.images,
            val.labels,
            k,
            classifier="lenet",
            passes=a.passes,
            seed=a.seed,
        )
        f_syn = ref.space(images)
        prdc = fidelity.prdc_scores(ref.f_train, f_syn, seed=a.seed)
        auc = detection.detection(val.images, images, a.seed, passes=a.passes)["auc"]
        out["variants"][name] = {
            "tstr_lenet": tstr["accuracy"],
            "fd": fidelity.frechet(ref.f_train, f_syn),
            "prdc": prdc,
            "detection_auc": auc,
            "n": len(images),
            "seconds": time.time() - t,
        }
        print(name, {k: v for k, v in out["variants"][name].items() if k != "prdc"},
              "recall", round(prdc["recall"], 3), flush=True)  # fmt: skip
        write_json(Path(a.result), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
