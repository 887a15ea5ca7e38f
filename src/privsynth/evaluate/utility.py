"""Utility: train on synthetic, test on real holdout (TSTR), next to train on real (TRTR).

Every classifier picks its number of epochs on a validation split of *its own training data*
(synthetic data for TSTR), never on the real holdout: selecting on the sensitive test set both
breaks DP and inflates utility (DPImageBench, Gao et al. 2025). All use one network and one
budget rule (`classifier.budget_epochs`).
"""

from __future__ import annotations

import numpy as np

from .classifier import accuracy, budget_epochs, predict, train_selected


def tstr(synth_images: np.ndarray, synth_labels: np.ndarray, holdout_images: np.ndarray,
         holdout_labels: np.ndarray, num_classes: int, epochs: int = 10, seed: int = 0) -> float:
    """Accuracy on the real holdout of the fixed CNN trained on synthetic data only."""
    model, _, _ = train_selected(synth_images, synth_labels, num_classes, epochs, 0.0, seed=seed)
    return accuracy(model, holdout_images, holdout_labels)


def trtr(train_images: np.ndarray, train_labels: np.ndarray, holdout_images: np.ndarray,
         holdout_labels: np.ndarray, num_classes: int, epochs: int = 10, seed: int = 0) -> float:
    """The ceiling: the same CNN and budget trained on the real (private) training split."""
    model, _, _ = train_selected(train_images, train_labels, num_classes, epochs, 0.0, seed=seed)
    return accuracy(model, holdout_images, holdout_labels)


def selected_accuracy(images: np.ndarray, labels: np.ndarray, test_images: np.ndarray,
                      test_labels: np.ndarray, num_classes: int, seed: int = 0,
                      progress: bool = False, desc: str = "classifier", passes: int = 12000
                      ) -> dict:
    """Train with epochs chosen on a 10% validation split of (images, labels); test once.
    ``passes``: the training budget in images seen (see `classifier.budget_epochs`)."""
    model, epochs, val = train_selected(images, labels, num_classes,
                                        budget_epochs(len(images), passes),
                                        0.1, seed=seed, progress=progress, desc=desc)
    pred = predict(model, test_images).argmax(1)
    per_class = [float((pred[test_labels == k] == k).mean()) if np.any(test_labels == k)
                 else float("nan") for k in range(num_classes)]
    return {"accuracy": float((pred == test_labels).mean()), "epochs": epochs,
            "val_accuracy": val, "n_train": int(len(images)), "per_class": per_class}


def imbalance_split(labels: np.ndarray, num_classes: int, keep: float = 0.1, seed: int = 0
                    ) -> tuple[np.ndarray, list[int]]:
    """Indices that keep every image of the first half of the classes and ``keep`` of the rest
    (the minority classes); returns (indices, minority classes)."""
    rng = np.random.default_rng(seed)
    minority = list(range(num_classes // 2, num_classes))
    idx = [np.flatnonzero(labels == k) for k in range(num_classes)]
    chosen = [i if k not in minority else rng.permutation(i)[:max(1, int(keep * len(i)))]
              for k, i in enumerate(idx)]
    return np.sort(np.concatenate(chosen)), minority


def augmentation(train_images: np.ndarray, train_labels: np.ndarray, synth_images: np.ndarray,
                 synth_labels: np.ndarray, test_images: np.ndarray, test_labels: np.ndarray,
                 num_classes: int, keep: float = 0.1, seed: int = 0, progress: bool = False,
                 baseline: dict | None = None, passes: int = 12000) -> dict:
    """Class imbalance: the minority classes (upper half of the labels) keep ``keep`` of their
    real images. Compare the CNN trained on that imbalanced real set with the same set topped up
    by synthetic images of the minority classes to the majority classes' size.

    ``baseline`` reuses an earlier imbalanced-real result (it does not depend on the model)."""
    idx, minority = imbalance_split(train_labels, num_classes, keep, seed)
    xr, yr = train_images[idx], train_labels[idx]
    if baseline is None:
        baseline = selected_accuracy(xr, yr, test_images, test_labels, num_classes, seed,
                                     progress, "imbalanced real", passes)
    target = int(np.bincount(yr, minlength=num_classes)[:num_classes // 2].mean())
    rng = np.random.default_rng(seed)
    add = []
    for k in minority:
        pool = np.flatnonzero(synth_labels == k)
        need = max(0, target - int((yr == k).sum()))
        add.append(rng.choice(pool, min(need, len(pool)), replace=False) if len(pool) else pool)
    add = np.concatenate(add).astype(np.int64)
    xa, ya = np.concatenate([xr, synth_images[add]]), np.concatenate([yr, synth_labels[add]])
    augmented = selected_accuracy(xa, ya, test_images, test_labels, num_classes, seed, progress,
                                  "real + synthetic", passes)
    mean_minor = lambda r: float(np.nanmean([r["per_class"][k] for k in minority]))
    return {"minority_classes": minority, "keep_fraction": keep, "n_synthetic_added": int(len(add)),
            "imbalanced_real": baseline, "real_plus_synthetic": augmented,
            "minority_accuracy": {"imbalanced_real": mean_minor(baseline),
                                  "real_plus_synthetic": mean_minor(augmented)}}
