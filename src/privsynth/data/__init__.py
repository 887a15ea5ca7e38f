"""Data: loaders for digits / IDX / NPZ / image folders (PNG, 16-bit TIFF, DICOM) -> one
`ImageDataset`; the seeded split, or an official test split given as a second path."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from .dataset import Content, ImageDataset, Split, split
from .digits import load_digits
from .folder import check_resize_fits, load_folder
from .idx import load_idx
from .npz import load_npz
from .source import DataSource, as_source

__all__ = [
    "Content",
    "ImageDataset",
    "DataSource",
    "Split",
    "split",
    "load_dataset",
    "load_split",
    "resize",
]


def load_dataset(
    spec: str | os.PathLike[str] | DataSource, image_size: int | None = None, **options
) -> ImageDataset:
    """Load ``digits`` (embedded), an IDX file/folder, an ``.npz`` or a class-per-folder tree.

    ``spec`` is a path or a `DataSource`; keyword ``options`` are its format inputs, e.g.
    ``load_dataset("x.npz", classes=10)``. ``image_size`` resizes to N x N (bilinear)."""
    src = as_source(spec)
    if options:
        src = DataSource.from_options(src.path, {**src.options(), **options})
    if image_size is not None and (
        not isinstance(image_size, (int, np.integer)) or not 1 <= image_size <= 4096
    ):
        raise ConfigError(
            f"--image-size must be a whole number of pixels in 1..4096, got {image_size}"
        )
    if src.path == "digits":
        data = load_digits(src)
    else:
        path = Path(src.path).expanduser()
        src = src.with_path(path, src.name)
        if not path.exists():
            raise DataError(
                f"data path '{path}' does not exist; pass 'digits', an IDX file, "
                "an .npz file or a folder with one sub-folder per class"
            )
        if path.is_file() and path.suffix == ".npz":
            data = load_npz(src)
        elif _is_idx(path):
            data = load_idx(src)
        elif path.is_dir():
            data = load_folder(src, image_size=image_size)
        else:
            raise DataError(
                f"'{path}': unknown data format; use .npz, IDX (MNIST) files or an "
                "image folder with one sub-folder per class"
            )
    if data.num_classes < 2:
        raise DataError(f"{data.name}: only one class; conditional models need >= 2 classes")
    if image_size is not None and data.image_shape[1:] != (image_size, image_size):
        data = resize(data, image_size)
    return data


def load_split(
    data: str | os.PathLike[str] | DataSource | ImageDataset,
    holdout: float | str | os.PathLike[str] = 0.2,
    seed: int = 0,
    image_size: int | None = None,
) -> tuple[ImageDataset, Split]:
    """The dataset and which rows are trained on / held out.

    ``holdout`` is a fraction (< 1) or a count for a seeded random split, or the path of an
    official test split in the same format: then the dataset is ``data`` followed by the test
    images, and its fingerprint (the ledger's key) stays the one of ``data``."""
    dataset = data if isinstance(data, ImageDataset) else load_dataset(data, image_size)
    if not is_holdout_path(holdout):
        return dataset, split(dataset, float(holdout), seed)
    if isinstance(data, ImageDataset):
        raise ConfigError("--holdout PATH needs --data as a path too (not in-memory data)")
    if not Path(holdout).expanduser().exists():
        raise DataError(
            f"--holdout '{holdout}' is neither a number nor an existing path; pass a "
            "fraction (0.2), a count (2000) or the test split's path"
        )
    src = as_source(data)
    test = load_dataset(src.with_path(holdout), image_size)
    if test.image_shape != dataset.image_shape:
        raise DataError(
            f"holdout '{holdout}' holds {test.image_shape} images but --data holds "
            f"{dataset.image_shape}; pass --image-size N (and --channels) for both"
        )
    if test.class_names != dataset.class_names:
        raise DataError(
            f"holdout '{holdout}' has classes {test.class_names[:10]} but --data has "
            f"{dataset.class_names[:10]}; pass the same --classes list for both"
        )
    _refuse_overlap(dataset, test, holdout)
    n, m = len(dataset), len(test)
    combined = ImageDataset(
        np.concatenate([dataset.images, test.images]),
        np.concatenate([dataset.labels, test.labels]),
        dataset.class_names,
        name=dataset.name,
        fingerprint=dataset.fingerprint,
        content=dataset.content,
    )
    return combined, Split(np.arange(n), np.arange(n, n + m), seed)


def _refuse_overlap(dataset: ImageDataset, test: ImageDataset, holdout) -> None:
    """Held-out images must be non-members: one also in --data would be trained on, and the
    membership attack and TSTR would then score training images. Compared by decoded pixels, so
    a copy under another file name or format is caught too."""
    import hashlib

    def digests(images: np.ndarray) -> set[bytes]:
        return {hashlib.blake2b(im.tobytes(), digest_size=16).digest() for im in images}

    shared = digests(dataset.images) & digests(test.images)
    if shared:
        raise DataError(
            f"--holdout '{holdout}' shares {len(shared)} image(s) with --data (same pixels): "
            "held-out images must never be trained on; pass a test split disjoint from --data"
        )


def _is_idx(path: Path) -> bool:
    """An IDX file or a folder holding one, by name (as MNIST's files are named)."""
    names = [p.name for p in path.iterdir()] if path.is_dir() else [path.name]
    return any("idx" in n or "ubyte" in n for n in names)


def is_holdout_path(holdout) -> bool:
    """A test split's path, not a fraction or count (which may come as text: '0.2')."""
    if not isinstance(holdout, (str, os.PathLike)):
        return False
    try:
        float(holdout)
    except (TypeError, ValueError):
        return True
    return False


def resize(data: ImageDataset, size: int) -> ImageDataset:
    """Bilinear resize of every image to ``size x size``."""
    import torch
    import torch.nn.functional as F

    check_resize_fits(len(data), data.image_shape[0], size)
    x = torch.from_numpy(data.images).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    images = x.round().clamp(0, 255).to(torch.uint8).numpy()
    return ImageDataset(images, data.labels, data.class_names, name=data.name, content=data.content)


def to_unit_range(images: np.ndarray) -> np.ndarray:
    """uint8 0..255 -> float32 -1..1, the range every model trains in."""
    return images.astype(np.float32) / 127.5 - 1.0


def from_unit_range(x: np.ndarray) -> np.ndarray:
    """float -1..1 -> uint8 0..255."""
    return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)
