"""Writing synthetic image sets (PNG folder or NPZ), atomically, under one rule for existing
outputs: refuse unless ``overwrite``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .atomic import atomic_dir, atomic_path
from .errors import ConfigError
from .preflight import check_output_file, check_output_folder


def check_synthetic_out(out: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """``out`` ends in .npz (a file) or names a folder; an existing output needs ``overwrite``."""
    out = Path(out)
    if out.suffix == ".npz":
        check_output_file(out)
        if out.exists() and not overwrite:
            raise ConfigError(
                f"'{out}' exists; pass --overwrite to replace it or choose another --out"
            )
        return out
    if out.suffix and not out.is_dir():
        raise ConfigError(
            f"--out '{out}' looks like a file name; pass a folder (PNGs, one "
            "sub-folder per class) or a path ending in .npz"
        )
    check_output_folder(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(
            f"'{out}' exists and is not empty; pass --overwrite to replace it or "
            "choose a new --out folder"
        )
    return out


def write_synthetic(
    out: str | os.PathLike[str],
    images: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    overwrite: bool = False,
) -> Path:
    """``out.npz`` -> arrays ``images`` (N x C x H x W uint8), ``labels``, ``class_names``;
    otherwise a folder with one sub-folder per class of PNGs (the image-folder loader's format).
    The folder is built in a temporary sibling and renamed, so it is never half-written; an
    existing output is replaced only with ``overwrite``."""
    out = check_synthetic_out(out, overwrite)
    if out.suffix == ".npz":
        with atomic_path(out) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(
                    f, images=images, labels=labels, class_names=np.array(class_names)
                )
        return out
    from PIL import Image

    with atomic_dir(out) as tmp:  # an existing (empty, or --overwrite) folder is swapped out
        # Only classes that were drawn get a sub-folder: the folder loader (rightly) refuses an
        # empty class folder, and the output must load back as --data.
        for k in np.unique(labels):
            (tmp / class_names[k]).mkdir()
        for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
            arr = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
            Image.fromarray(arr).save(tmp / class_names[lab] / f"{i:06d}.png")
    return out
