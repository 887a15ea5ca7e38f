"""IDX files (the MNIST format), raw or gzip-compressed.

``--data path/to/folder`` finds ``*images*`` and ``*labels*`` IDX files inside; ``--data
images.idx3-ubyte.gz`` finds the labels file beside it by replacing ``images`` with ``labels``.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from ..errors import DataError
from .dataset import ImageDataset
from .npz import from_arrays
from .source import SPLIT_NAMES, DataSource, default_name

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(
            f"{path}: cannot read IDX file ({e}); re-download or re-extract it"
        ) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number); pass MNIST-format files")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header; the file is incomplete, re-download it")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: IDX header says {shape} but the file holds {len(raw) - header} "
            f"bytes instead of {expected}; the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def find_idx_pair(path: Path) -> tuple[Path, Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if "idx" in p.name or p.name.endswith("-ubyte"))
        images = [p for p in files if "image" in p.name]
        labels = [p for p in files if "label" in p.name]
        if len(images) != 1 or len(labels) != 1:
            raise DataError(
                f"{path}: expected one *images* and one *labels* IDX file, found "
                f"{len(images)} and {len(labels)}; point --data at the images file"
            )
        return images[0], labels[0]
    labels = path.with_name(path.name.replace("images", "labels").replace("idx3", "idx1"))
    if labels == path or not labels.exists():
        raise DataError(
            f"{path}: no labels file found beside it (looked for {labels.name}); "
            "keep the MNIST file names or put both files in one folder"
        )
    return path, labels


def load_idx(src: DataSource) -> ImageDataset:
    path = Path(src.path)
    img_path, lbl_path = find_idx_pair(path)
    images = read_idx(img_path)
    labels = read_idx(lbl_path)
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4:  # N x H x W x C
        images = images.transpose(0, 3, 1, 2)
    else:
        raise DataError(f"{img_path}: IDX images must be 3-D (N x H x W), got {images.ndim}-D")
    if len(labels) != len(images):
        raise DataError(
            f"{img_path.name} holds {len(images)} images but {lbl_path.name} holds "
            f"{len(labels)} labels; use matching files"
        )
    # IDX stores no class names: the list is declared (--classes), never the labels present.
    name = _idx_name(path, img_path)
    return from_arrays(images, labels, src, str(img_path), None, name, str(lbl_path))


def _idx_name(path: Path, img_path: Path) -> str:
    """The folder's name (mnist-t10k), or the file's prefix (train-images-... -> its folder)."""
    if path.is_dir():
        return default_name(path)
    prefix = img_path.name.split("-images")[0].split(".")[0]
    if prefix.lower() in SPLIT_NAMES | {"t10k"}:
        return default_name(img_path.parent)
    return prefix
