"""Data: loaders for digits / IDX / NPZ / image folders -> one `ImageDataset`; seeded split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .dataset import ImageDataset, Split, split
from .digits import load_digits_dataset
from .folder import load_folder
from .idx import load_idx
from .npz import load_npz

__all__ = ["ImageDataset", "Split", "split", "load_dataset", "resize"]


def load_dataset(spec: str | Path, image_size: int | None = None) -> ImageDataset:
    """Load ``digits`` (embedded), an IDX file/folder, an ``.npz`` or a class-per-folder tree.

    ``image_size`` resizes every image to ``image_size x image_size`` (bilinear).
    """
    spec_str = str(spec)
    if spec_str == "digits":
        data = load_digits_dataset()
    else:
        path = Path(spec_str).expanduser()
        if not path.exists():
            raise DataError(f"data path '{path}' does not exist; pass 'digits', an IDX file, "
                            "an .npz file or a folder with one sub-folder per class")
        if path.is_file() and path.suffix == ".npz":
            data = load_npz(path)
        elif path.is_file() and ("idx" in path.name or "ubyte" in path.name):
            data = load_idx(path)
        elif path.is_dir() and any(("idx" in p.name or "ubyte" in p.name) for p in path.iterdir()):
            data = load_idx(path)
        elif path.is_dir():
            return load_folder(path, image_size=image_size)
        else:
            raise DataError(f"'{path}': unknown data format; use .npz, IDX (MNIST) files or an "
                            "image folder with one sub-folder per class")
    if data.num_classes < 2:
        raise DataError(f"{data.name}: only one class; conditional models need >= 2 classes")
    if image_size is not None and data.image_shape[1:] != (image_size, image_size):
        data = resize(data, image_size)
    return data


def resize(data: ImageDataset, size: int) -> ImageDataset:
    """Bilinear resize of every image to ``size x size``."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(data.images).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    images = x.round().clamp(0, 255).to(torch.uint8).numpy()
    return ImageDataset(images, data.labels, data.class_names, name=data.name,
                        source_fingerprint=data.source_fingerprint)


def to_unit_range(images: np.ndarray) -> np.ndarray:
    """uint8 0..255 -> float32 -1..1, the range every model trains in."""
    return images.astype(np.float32) / 127.5 - 1.0


def from_unit_range(x: np.ndarray) -> np.ndarray:
    """float -1..1 -> uint8 0..255."""
    return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)
