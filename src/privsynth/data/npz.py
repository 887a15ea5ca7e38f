"""NPZ arrays: keys ``x``/``y``, ``images``/``labels`` or MedMNIST-style
``train_images``/``train_labels``.

Images may be N x H x W, N x H x W x C or N x C x H x W, uint8 0-255 or float 0-1.
Loaded with ``allow_pickle=False``: an NPZ cannot run code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .dataset import ImageDataset, source_fingerprint

_KEY_PAIRS = [("x", "y"), ("images", "labels"), ("train_images", "train_labels"), ("X", "y")]


def relabel(labels: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Map arbitrary label values to 0..K-1, keeping their names."""
    values, inverse = np.unique(labels, return_inverse=True)
    return inverse.astype(np.int64), [str(v) for v in values]


def to_uint8_nchw(images: np.ndarray, source: str) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype.kind == "f":
        if not np.isfinite(images).all():
            raise DataError(f"{source}: images contain NaN or infinite values; clean or drop them")
        scale = 255.0 if images.max() <= 1.0 + 1e-6 else 1.0
        images = np.clip(np.rint(images * scale), 0, 255).astype(np.uint8)
    elif images.dtype.kind in "iu":
        if images.min() < 0 or images.max() > 255:
            raise DataError(f"{source}: integer pixels must be 0-255; rescale the images")
        images = images.astype(np.uint8)
    else:
        raise DataError(f"{source}: images have dtype {images.dtype}; use uint8 or float arrays")
    if images.ndim == 3:
        return images[:, None]
    if images.ndim == 4:
        if images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
            return np.ascontiguousarray(images.transpose(0, 3, 1, 2))
        return images
    raise DataError(f"{source}: images must be 3-D or 4-D, got shape {images.shape}")


def load_npz(path: Path) -> ImageDataset:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read NPZ ({e}); save it with numpy.savez") from None
    with archive:
        keys = set(archive.files)
        for img_key, lbl_key in _KEY_PAIRS:
            if img_key in keys and lbl_key in keys:
                try:  # arrays are read lazily: object (pickled) arrays fail only here
                    images, labels = archive[img_key], archive[lbl_key]
                except (OSError, ValueError) as e:
                    raise DataError(f"{path}: cannot read '{img_key}'/'{lbl_key}' ({e}); save "
                                    "plain numeric arrays with numpy.savez") from None
                break
        else:
            raise DataError(f"{path}: found keys {sorted(keys)}; expected x/y, images/labels or "
                            "train_images/train_labels")
    source = source_fingerprint(np.asarray(images), np.asarray(labels))  # before any conversion
    labels = np.asarray(labels).reshape(-1)
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise DataError(f"{path}: labels contain NaN; every image needs a class")
    if len(labels) != len(images):
        raise DataError(f"{path}: {len(images)} images but {len(labels)} labels; "
                        "images and labels must have the same count")
    labels, names = relabel(labels)
    return ImageDataset(to_uint8_nchw(images, str(path)), labels, names, name=path.stem,
                        source_fingerprint=source)
