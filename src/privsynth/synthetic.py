"""Writing and reading synthetic image sets (PNG folder or NPZ), atomically."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .errors import ConfigError


def write_synthetic(out: str | os.PathLike[str], images: np.ndarray, labels: np.ndarray,
                    class_names: list[str]) -> Path:
    """``out.npz`` -> arrays ``images`` (N x C x H x W uint8), ``labels``, ``class_names``;
    otherwise a folder with one sub-folder per class of PNGs (the image-folder loader's format).
    The folder is built in a temporary sibling and renamed, so it is never half-written."""
    out = Path(out)
    if out.suffix == ".npz":
        with atomic_path(out) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, images=images, labels=labels,
                                    class_names=np.array(class_names))
        return out
    from PIL import Image

    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"'{out}' exists and is not empty; choose a new --out folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        # Only classes that were drawn get a sub-folder: the folder loader (rightly) refuses an
        # empty class folder, and the output must load back as --data.
        for k in np.unique(labels):
            (tmp / class_names[k]).mkdir()
        for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
            arr = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
            Image.fromarray(arr).save(tmp / class_names[lab] / f"{i:06d}.png")
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out
