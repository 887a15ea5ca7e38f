"""The embedded default: scikit-learn's ``load_digits`` (1,797 images, 8 x 8, 10 classes)."""

from __future__ import annotations

import numpy as np

from .dataset import ImageDataset


def load_digits_dataset() -> ImageDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixel values are 0..16 ink counts; scale to 0..255 so every dataset shares one range.
    images = np.clip(np.rint(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return ImageDataset(
        images[:, None],
        bunch.target.astype(np.int64),
        [str(c) for c in bunch.target_names],
        name="digits",
    )
