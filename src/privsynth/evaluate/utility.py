"""Utility: train on synthetic, test on the real holdout (TSTR), next to train on real (TRTR).

The protocol (docs/evaluation.md, "Utility protocol"): ``n_synthetic`` images sampled
class-balanced from the generator (DPImageBench uses 60,000; `evaluate` defaults to
`DEFAULT_N_SYNTHETIC`); a LeNet (the field's yardstick) and a small ResNet (a stronger learner)
side by side, each trained by `classifier.train_fixed` on a fixed schedule with no model
selection, so the holdout is read once, for the final test and a collapsed synthetic set has no
validation split of its own to flatter itself on. TRTR: the same classifier, rule and holdout on
the real training split.
"""

from __future__ import annotations

import time

import numpy as np

from .classifier import (
    CLASSIFIERS,
    IMAGES_SEEN,
    fixed_schedule,
    predict,
    train_fixed,
)

DEFAULT_N_SYNTHETIC = 10_000
DEFAULT_PASSES = IMAGES_SEEN
UTILITY_CLASSIFIERS = ("lenet", "resnet")
PROTOCOL = (
    "fixed schedule (epochs from the training-set size; 3x as long on colour), SGD Nesterov, "
    "one-cycle LR, label smoothing, random crops (+ flips for colour), last epoch"
)


def balanced_labels(n: int, num_classes: int, seed: int = 0) -> np.ndarray:
    """``n`` labels with every class equally often (the first ``n % K`` classes once more),
    shuffled: what a class-balanced synthetic set is sampled with."""
    labels = np.arange(n) % num_classes
    return np.random.default_rng(seed).permutation(labels).astype(np.int64)


def balanced_subset(labels: np.ndarray, n: int, num_classes: int, seed: int = 0) -> np.ndarray:
    """Indices of up to ``n`` images, as class-balanced as ``labels`` allows (seeded)."""
    rng = np.random.default_rng(seed)
    pools = [rng.permutation(np.flatnonzero(labels == k))[::-1] for k in range(num_classes)]
    # round robin: every class's r-th image comes before any class's (r+1)-th
    ranked = sorted((r, k, i) for k, pool in enumerate(pools) for r, i in enumerate(pool))
    return np.sort(np.asarray([i for _, _, i in ranked[:n]], dtype=np.int64))


def fit_and_test(
    images: np.ndarray,
    labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    num_classes: int | None = None,
    *,
    classifier: str = "lenet",
    passes: int = DEFAULT_PASSES,
    epochs: int | None = None,
    seed: int = 0,
    progress: bool = False,
    desc: str = "classifier",
) -> dict:
    """Train ``classifier`` on (images, labels) with the fixed schedule; test once on the test set.

    ``epochs`` overrides the size rule (`fixed_schedule(len(images), ..., passes)`)."""
    t0 = time.perf_counter()
    k = num_classes or int(max(np.max(labels), np.max(test_labels))) + 1
    schedule = fixed_schedule(len(images), images.shape[1:], passes, epochs, classifier)
    ep = schedule.epochs
    model = train_fixed(
        images, labels, k, classifier, schedule, seed=seed, progress=progress, desc=desc
    )
    pred = predict(model, test_images).argmax(1)
    test_labels = np.asarray(test_labels)
    per_class = [
        float((pred[test_labels == c] == c).mean()) if np.any(test_labels == c) else float("nan")
        for c in range(k)
    ]
    return {
        "accuracy": float((pred == test_labels).mean()),
        "classifier": classifier,
        "network": CLASSIFIERS[classifier][1],
        "epochs": int(ep),
        "images_seen": int(ep * len(images)),
        "n_train": int(len(images)),
        "n_test": int(len(test_images)),
        "per_class": per_class,
        "selection": PROTOCOL,
        "schedule": schedule.describe(),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def tstr(
    synth_images: np.ndarray,
    synth_labels: np.ndarray,
    holdout_images: np.ndarray,
    holdout_labels: np.ndarray,
    num_classes: int | None = None,
    **kw,
) -> dict:
    """Train on synthetic, test on the real holdout: ``{"accuracy": ..., "epochs": ...,
    "per_class": [...], "seconds": ..., ...}``. Images uint8 N x C x H x W, labels 0..K-1;
    ``kw``: `fit_and_test`'s classifier, passes, epochs, seed, progress.

    Trains on every synthetic image given (sample them class-balanced, e.g. with
    `balanced_labels`); the holdout is read once, for the final test."""
    kw.setdefault("desc", f"TSTR {kw.get('classifier', 'lenet')}")
    return fit_and_test(
        synth_images, synth_labels, holdout_images, holdout_labels, num_classes, **kw
    )


def trtr(train_images: np.ndarray, train_labels: np.ndarray, *holdout, **kw) -> dict:
    """The reference: the same classifier and rule trained on the real (private) training split
    (``holdout``: images, labels and num_classes, as for `tstr`)."""
    kw.setdefault("desc", f"TRTR {kw.get('classifier', 'lenet')}")
    return tstr(train_images, train_labels, *holdout, **kw)


def per_classifier(fit, images, labels, test, classifiers, **kw) -> dict:
    """``fit`` (`tstr` or `trtr`) once per classifier name, tested on the ``test`` dataset."""
    return {
        c: fit(images, labels, test.images, test.labels, test.num_classes, classifier=c, **kw)
        for c in classifiers
    }


def imbalance_split(
    labels: np.ndarray, num_classes: int, keep: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, list[int]]:
    """Indices that keep every image of the first half of the classes and ``keep`` of the rest
    (the minority classes); returns (indices, minority classes)."""
    rng = np.random.default_rng(seed)
    minority = list(range(num_classes // 2, num_classes))
    idx = [np.flatnonzero(labels == k) for k in range(num_classes)]
    chosen = [
        i if k not in minority else rng.permutation(i)[: max(1, int(keep * len(i)))]
        for k, i in enumerate(idx)
    ]
    return np.sort(np.concatenate(chosen)), minority


def augmentation(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    synth_images: np.ndarray,
    synth_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    num_classes: int,
    keep: float = 0.1,
    seed: int = 0,
    progress: bool = False,
    baseline: dict | None = None,
    passes: int = DEFAULT_PASSES,
) -> dict:
    """Class imbalance: the minority classes (upper half of the labels) keep ``keep`` of their
    real images. Compare the LeNet trained on that imbalanced real set with the same set topped
    up by synthetic images of the minority classes to the majority classes' size (same protocol
    as TSTR: fixed schedule, last epoch).

    ``baseline`` reuses an earlier imbalanced-real result (it does not depend on the model)."""
    idx, minority = imbalance_split(train_labels, num_classes, keep, seed)
    xr, yr = train_images[idx], train_labels[idx]

    def fit(x, y, desc):
        kw = dict(passes=passes, seed=seed, progress=progress, desc=desc)
        return fit_and_test(x, y, test_images, test_labels, num_classes, **kw)

    baseline = baseline or fit(xr, yr, "imbalanced real")
    target = int(np.bincount(yr, minlength=num_classes)[: num_classes // 2].mean())
    rng = np.random.default_rng(seed)
    add = []
    for k in minority:
        pool = np.flatnonzero(synth_labels == k)
        need = max(0, target - int((yr == k).sum()))
        add.append(rng.choice(pool, min(need, len(pool)), replace=False) if len(pool) else pool)
    add = np.concatenate(add).astype(np.int64)
    xa, ya = np.concatenate([xr, synth_images[add]]), np.concatenate([yr, synth_labels[add]])
    augmented = fit(xa, ya, "real + synthetic")
    mean_minor = lambda r: float(np.nanmean([r["per_class"][k] for k in minority]))
    return {
        "minority_classes": minority,
        "keep_fraction": keep,
        "n_synthetic_added": int(len(add)),
        "imbalanced_real": baseline,
        "real_plus_synthetic": augmented,
        "minority_accuracy": {
            "imbalanced_real": mean_minor(baseline),
            "real_plus_synthetic": mean_minor(augmented),
        },
    }
