"""Validate the evaluation classifiers' fixed schedule on the suite's validation splits.

Each fit trains on a dataset's private-train rows (real images) and tests on its validation
rows; the holdout rows are never read. ``--scale 3`` trains the same network for 3x the epochs
of the schedule, past its epoch cap: the "well-trained" reference the schedule must come within
2 points of.

    OMP_NUM_THREADS=1 nice -n 10 python bench/classifier_schedule.py --dataset cifar5k \
        --classifier resnet --scale 1 --tag fixed
    # the schedule before this one: the same script on an older tree, with its own default
    PYTHONPATH=OLD/src python bench/classifier_schedule.py ... --images-seen 12000 --tag before
    python bench/classifier_schedule.py --summarise   # rows/*.json -> classifier_schedule.json

One JSON row per fit under bench/results/classifier_schedule/rows/ (commit of the privsynth
tree that trained it, the schedule, accuracy, wall seconds, threads).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import suite  # noqa: E402  (the benchmark's datasets and their fixed splits)

import privsynth  # noqa: E402
from privsynth.atomic import atomic_path  # noqa: E402
from privsynth.evaluate import utility  # noqa: E402
from privsynth.evaluate.classifier import fixed_epochs  # noqa: E402

RESULTS = HERE / "results" / "classifier_schedule"
SUMMARY = HERE / "results" / "classifier_schedule.json"


def code_commit() -> dict:
    """The commit (and dirty flag) of the privsynth tree actually imported."""
    src = Path(privsynth.__file__).resolve().parents[2]
    git = lambda *a: subprocess.run(  # noqa: E731
        ["git", *a], cwd=src, text=True, capture_output=True
    ).stdout.strip()
    return {
        "tree": str(src),
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--", "src")),
    }


def validation_parts(name: str):
    """(train images, labels, validation images, labels, classes) of the suite's split."""
    dataset = suite.load(name)
    record = suite.splits(name, dataset, suite.RESULTS)
    tr, va = record["train"], record["validation"]  # the holdout rows stay unread
    return (
        dataset.images[tr],
        dataset.labels[tr],
        dataset.images[va],
        dataset.labels[va],
        dataset.num_classes,
    )


def fit(name: str, classifier: str, images_seen: int, scale: float, tag: str, seed: int) -> dict:
    code = code_commit()  # before training: the tree that trains is the one recorded
    x, y, xv, yv, k = validation_parts(name)
    t0, c0 = time.perf_counter(), time.process_time()
    # the reference multiplies the schedule's own epochs, so the cap cannot clip it
    epochs = round(scale * fixed_epochs(len(x), images_seen)) if scale != 1 else None
    r = utility.fit_and_test(
        x, y, xv, yv, k, classifier=classifier, passes=images_seen, epochs=epochs, seed=seed
    )
    return {
        "dataset": name,
        "classifier": classifier,
        "tag": tag,
        "seed": seed,
        "images_seen_target": images_seen,
        "scale": scale,
        "epochs": r["epochs"],
        "images_seen": r["images_seen"],
        "n_train": r["n_train"],
        "n_validation": r["n_test"],
        "accuracy": r["accuracy"],
        "schedule": r.get("schedule", r["selection"]),
        "wall_seconds": round(time.perf_counter() - t0, 1),
        # CPU seconds of this process: the wall an idle core would take (the machine is shared)
        "cpu_seconds": round(time.process_time() - c0, 1),
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "code": code,
        "machine": platform.node(),
        "load_before": os.getloadavg()[0],
    }


def summarise() -> dict:
    rows = [json.loads(p.read_text()) for p in sorted((RESULTS / "rows").glob("*.json"))]
    table: dict = {}
    for r in rows:
        cell = table.setdefault(f"{r['dataset']}/{r['classifier']}", {})
        keys = ("accuracy", "epochs", "images_seen", "wall_seconds", "cpu_seconds")
        cell[r["tag"]] = {k: r.get(k) for k in keys}
    from privsynth.evaluate.classifier import IMAGES_SEEN, Schedule

    out = {
        "what": "TRTR on the suite's validation splits: train on private-train rows, test on "
        "validation rows (holdout never read); one fit per row, seed 0, one CPU thread",
        "commit": code_commit(),
        "config": {
            "images_seen": IMAGES_SEEN,
            "epochs": "max(1, ceil(images_seen / n)), at most 60; x3: three times that",
            "schedule": {k: v for k, v in Schedule(epochs=0).__dict__.items() if k != "epochs"},
            "augmentation": "random crop, pad 2 px (28x28 grey), 1 px (8x8), 4 px (32x32 "
            "colour); horizontal flip for colour only",
        },
        "tags": {
            "before": "the previous schedule (Adam one-cycle 3e-3, 12 000 images seen, at most "
            "20 epochs, shifts for the ResNet only), run from commit "
            "58a24cd9dc156f8caef2d59418d0664362f032ba extracted with git archive (no git "
            "metadata, so its rows record no commit)",
            "fixed": "the schedule of this commit",
            "x3": "the same network and schedule for 3x the epochs (the well-trained reference)",
        },
        "table": table,
        "rows": rows,
    }
    with atomic_path(SUMMARY) as tmp:
        tmp.write_text(json.dumps(out, indent=1) + "\n")
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=sorted(suite.DATASETS))
    p.add_argument("--classifier", choices=("lenet", "resnet"))
    p.add_argument("--images-seen", type=int, default=utility.DEFAULT_PASSES)
    p.add_argument("--scale", type=float, default=1.0, help="multiple of the schedule's epochs")
    p.add_argument("--tag", default="fixed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--summarise", action="store_true")
    a = p.parse_args(argv)
    if a.summarise:
        print(json.dumps(summarise()["table"], indent=1))
        return
    row = fit(a.dataset, a.classifier, a.images_seen, a.scale, a.tag, a.seed)
    path = RESULTS / "rows" / f"{a.dataset}-{a.classifier}-{a.tag}-s{a.seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(row, indent=1) + "\n")
    print(
        f"{a.dataset} {a.classifier} {a.tag}: {row['accuracy']:.1%} "
        f"({row['epochs']} epochs, {row['wall_seconds']} s)"
    )


if __name__ == "__main__":
    main()
