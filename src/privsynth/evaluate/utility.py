"""Utility: train on synthetic, test on real holdout (TSTR), next to train on real (TRTR)."""

from __future__ import annotations

import numpy as np

from .classifier import accuracy, train_classifier


def tstr(synth_images: np.ndarray, synth_labels: np.ndarray, holdout_images: np.ndarray,
         holdout_labels: np.ndarray, num_classes: int, epochs: int = 10, seed: int = 0) -> float:
    """Accuracy on the real holdout of the fixed CNN trained on synthetic data only."""
    model = train_classifier(synth_images, synth_labels, num_classes, epochs=epochs, seed=seed)
    return accuracy(model, holdout_images, holdout_labels)


def trtr(train_images: np.ndarray, train_labels: np.ndarray, holdout_images: np.ndarray,
         holdout_labels: np.ndarray, num_classes: int, epochs: int = 10, seed: int = 0) -> float:
    """The ceiling: the same CNN and budget trained on the real (private) training split."""
    model = train_classifier(train_images, train_labels, num_classes, epochs=epochs, seed=seed)
    return accuracy(model, holdout_images, holdout_labels)
