"""Within-class diversity and the collapse flags a data owner reads next to every Fréchet figure.

A Fréchet distance compares means and covariances and can rank a generator that draws one good
image per class above an honest, varied one (it did: a fully collapsed DP-GAN scored best on a
medical set). So every Fréchet figure is shown beside
- the within-class spread: the mean pairwise distance between images of one class, synthetic
  divided by real (1 = as varied as the real data, 0.33 = three times less varied), on pixels
  standardised per image (so dim or low-contrast images are not mistaken for identical ones);
  it needs no trained network and means the same on every dataset;
- recall / coverage (how much of the real variety the synthetic set reproduces), when known;
and a plain-words flag when either says the variety is gone. Pixel spread cannot tell variety
from noise (random pixels are "varied"); recall can, which is why both are shown.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import pdist

# A class whose synthetic images are less than half as varied as its real ones is collapsed;
# real-vs-real ratios stay within ~0.9..1.1 for a few dozen images per class.
COLLAPSE_RATIO = 0.5
# Recall below half of what a second real sample scores (or below 0.1 with no real reference).
LOW_RECALL_SHARE, LOW_RECALL = 0.5, 0.1
MIN_PER_CLASS = 3


def standardise(images: np.ndarray) -> np.ndarray:
    """Each image flattened, minus its mean, divided by its length (a blank image stays 0): the
    distance between two such images depends on their shapes, not their brightness."""
    x = images.reshape(len(images), -1).astype(np.float64)
    x -= x.mean(1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def within_class_spread(
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    max_per_class: int = 300,
    seed: int = 0,
) -> list[float]:
    """Mean pairwise L2 distance between the `standardise`d images of each class (0 = all the
    same, sqrt(2) = unrelated), on up to ``max_per_class`` images per class (seeded); NaN for a
    class with fewer than 3 images."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(num_classes):
        idx = np.flatnonzero(np.asarray(labels) == k)
        if len(idx) < MIN_PER_CLASS:
            out.append(float("nan"))
            continue
        idx = rng.permutation(idx)[:max_per_class]
        out.append(float(pdist(standardise(images[idx])).mean()))
    return out


def within_class_diversity(
    real_images: np.ndarray,
    real_labels: np.ndarray,
    synth_images: np.ndarray,
    synth_labels: np.ndarray,
    num_classes: int | None = None,
    max_per_class: int = 300,
    seed: int = 0,
) -> dict:
    """Per class: real spread, synthetic spread and their ratio (synthetic / real), plus the
    mean ratio over classes, the least varied class and the classes below `COLLAPSE_RATIO`.

    Images are uint8 N x C x H x W with labels 0..K-1; the real ones are usually the training
    split (what the generator imitated)."""
    k = num_classes or int(max(np.max(real_labels), np.max(synth_labels))) + 1
    real = within_class_spread(real_images, real_labels, k, max_per_class, seed)
    synth = within_class_spread(synth_images, synth_labels, k, max_per_class, seed)
    ratio = [s / r if r > 0 else float("nan") for r, s in zip(real, synth, strict=True)]
    valid = [i for i in range(k) if np.isfinite(ratio[i])]
    worst = min(valid, key=lambda i: ratio[i], default=None)
    return {
        "per_class": [
            {"class": i, "real": real[i], "synthetic": synth[i], "ratio": ratio[i]}
            for i in range(k)
        ]
        if valid
        else [],
        "ratio_mean": float(np.mean([ratio[i] for i in valid])) if valid else float("nan"),
        "ratio_min": float("nan") if worst is None else float(ratio[worst]),
        "least_varied_class": worst,
        "collapsed_classes": [i for i in valid if ratio[i] < COLLAPSE_RATIO],
        "space": "pixels, standardised per image",
        "max_per_class": max_per_class,
    }


def _less(ratio: float) -> str:
    if ratio < 0.01:
        return "(nearly) all the same image"
    return f"{1 / ratio:.1f}x less varied than real ones"


def collapse_flags(
    diversity: dict,
    prdc: dict | None = None,
    real_prdc: dict | None = None,
    class_names: list[str] | None = None,
) -> list[str]:
    """Plain-words warnings (empty list = no sign of collapse or noise).

    ``prdc``: the synthetic set's precision/recall/density/coverage; ``real_prdc``: the same
    for a second real sample (the floor), which sets what "low" recall means on this data."""
    flags = []
    name = (lambda i: f"'{class_names[i]}'") if class_names else (lambda i: f"{i}")
    collapsed = diversity.get("collapsed_classes", [])
    n_classes = sum(1 for c in diversity.get("per_class", []) if np.isfinite(c["ratio"]))
    if collapsed:
        mean_ratio = float(np.mean([diversity["per_class"][i]["ratio"] for i in collapsed]))
        worst = diversity["least_varied_class"]
        flags.append(
            f"mode collapse: synthetic images of a class are {_less(mean_ratio)} "
            f"({len(collapsed)} of {n_classes} classes below half the real variety; "
            f"least varied: class {name(worst)}, {_less(diversity['ratio_min'])})"
        )
    if prdc is not None and np.isfinite(prdc.get("recall", np.nan)):
        floor = real_prdc.get("recall") if real_prdc else None
        low = (prdc["recall"] < LOW_RECALL_SHARE * floor) if floor else prdc["recall"] < LOW_RECALL
        if low:
            ref = f"; two real samples score {floor:.2f}" if floor else ""
            flags.append(
                f"low recall: the synthetic images reproduce little of the real variety "
                f"(recall {prdc['recall']:.3f}, coverage {prdc['coverage']:.3f}{ref})"
            )
    return flags
