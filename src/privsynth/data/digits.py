"""The embedded default: scikit-learn's ``load_digits`` (1,797 images, 8 x 8, 10 classes)."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .dataset import Content, ImageDataset
from .labels import class_list
from .pixels import to_channels
from .source import DataSource


def load_digits(src: DataSource) -> ImageDataset:
    from sklearn.datasets import load_digits

    if src.pixel_range is not None or src.window is not None:
        raise ConfigError(
            "--pixel-range and --window do not apply to 'digits' (embedded, already 0-255)"
        )
    bunch = load_digits()
    names = [str(c) for c in bunch.target_names]
    if src.classes is not None and class_list(src.classes, None, "digits") != names:
        raise ConfigError(f"--classes {src.classes}: 'digits' has the classes 0..9")
    # Pixel values are 0..16 ink counts; scale to 0..255 so every dataset shares one range.
    images = np.clip(np.rint(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[:, None]
    return ImageDataset(
        to_channels(images, src.channels, "digits"),
        bunch.target,
        names,
        name=src.name or "digits",
        content=Content.of(images, bunch.target, names),  # the records, before --channels
    )
