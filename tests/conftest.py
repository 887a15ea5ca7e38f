"""Fixtures make tiny data in memory; nothing downloads."""

from __future__ import annotations

import numpy as np
import pytest

from privsynth.data import ImageDataset


@pytest.fixture
def tiny_dataset() -> ImageDataset:
    """120 images, 8x8, 3 classes: a bright square whose position depends on the class."""
    rng = np.random.default_rng(0)
    n, k = 120, 3
    labels = np.arange(n) % k
    images = rng.integers(0, 40, size=(n, 1, 8, 8), dtype=np.uint8)
    for i, y in enumerate(labels):
        images[i, 0, 2 * y:2 * y + 3, 2:6] = 220
    return ImageDataset(images, labels, ["a", "b", "c"], name="tiny")


@pytest.fixture
def fast_gan() -> dict:
    return {"epochs": 2, "batch_size": 32, "n_d": 2, "width": 8, "g_width": 8, "z_dim": 8}
