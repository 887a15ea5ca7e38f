"""NPZ arrays: keys ``x``/``y``, ``images``/``labels`` or MedMNIST-style
``train_images``/``train_labels``, plus an optional ``class_names`` array (`privsynth sample`
writes one).

Images may be N x H x W, N x H x W x C or N x C x H x W; pixels are scaled by the declared
``--pixel-range`` or the dtype's range (uint8 0-255, float 0-1, uint16 0-65535), never by the
values present. Loaded with ``allow_pickle=False``: an NPZ cannot run code.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from .dataset import Content, ImageDataset
from .labels import class_list, to_indices
from .pixels import to_channels, to_nchw, to_uint8
from .source import DataSource, default_name

_KEY_PAIRS = [("x", "y"), ("images", "labels"), ("train_images", "train_labels"), ("X", "y")]
# An .npz is a zip archive: local-file header, or the end record of an empty archive.
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
# What a damaged archive raises (a truncated one: BadZipFile, or zlib while inflating a member).
READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def to_uint8_nchw(
    images: np.ndarray, source: str, pixel_range: tuple[float, float] | None = None
) -> np.ndarray:
    """Pixels by the declared or the dtype's range -> uint8 N x C x H x W."""
    return to_nchw(to_uint8(np.asarray(images), source, pixel_range), source)


def from_arrays(
    images,
    labels,
    src: DataSource,
    source: str,
    stored: list[str] | None,
    name: str,
    label_source: str | None = None,
) -> ImageDataset:
    """The one path of the array formats (IDX, NPZ): the class list (declared, else ``stored``),
    pixels by the declared or the format's range, then ``--channels``. ``source`` (and
    ``label_source``) name the files in errors; ``name`` is the dataset's unless ``src`` has one."""
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(images):
        raise DataError(
            f"{source}: {len(images)} images but {len(labels)} labels; "
            "images and labels must have the same count"
        )
    if len(images) == 0:
        raise DataError(f"{source}: holds no images; point --data at a non-empty dataset")
    names = class_list(src.classes, stored, source)
    decoded = to_uint8_nchw(images, source, src.pixel_range)
    indices = to_indices(labels, names, label_source or source)
    return ImageDataset(
        to_channels(decoded, src.channels, source),
        indices,
        names,
        name=src.name or name,
        content=Content.of(decoded, indices, names),  # the records as decoded, before --channels
    )


def load_npz(src: DataSource) -> ImageDataset:
    path = Path(src.path)
    with open(path, "rb") as f:
        head = f.read(4)
    if head not in _ZIP_MAGIC:
        what = "an empty file" if not head else "no zip header"
        raise DataError(
            f"{path}: not an NPZ archive ({what}); save the arrays with "
            "numpy.savez(path, images=..., labels=...)"
        )
    try:
        archive = np.load(path, allow_pickle=False)
    except READ_ERRORS as e:
        raise DataError(
            f"{path}: cannot read NPZ ({type(e).__name__}: {e}); the file is damaged or "
            "cut short: save it again with numpy.savez"
        ) from None
    with archive:
        keys = set(archive.files)
        for img_key, lbl_key in _KEY_PAIRS:
            if img_key in keys and lbl_key in keys:
                try:  # arrays are read lazily: object (pickled) arrays fail only here
                    images, labels = archive[img_key], archive[lbl_key]
                    stored = (
                        [str(s) for s in archive["class_names"]] if "class_names" in keys else None
                    )
                except READ_ERRORS as e:
                    raise DataError(
                        f"{path}: cannot read '{img_key}'/'{lbl_key}' ({e}); save "
                        "plain numeric arrays with numpy.savez"
                    ) from None
                break
        else:
            raise DataError(
                f"{path}: found keys {sorted(keys)}; expected x/y, images/labels or "
                "train_images/train_labels"
            )
    if np.ndim(images) == 0 or np.ndim(labels) == 0:
        raise DataError(
            f"{path}: '{img_key}'/'{lbl_key}' hold a single value (0-d array), not one entry "
            "per image; save N images and N labels with numpy.savez"
        )
    return from_arrays(images, labels, src, str(path), stored, default_name(path))
