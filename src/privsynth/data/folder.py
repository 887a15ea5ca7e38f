"""An image folder with one sub-folder per class (PNG/JPEG, grayscale or RGB)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .dataset import ImageDataset, files_fingerprint

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff"}


def load_folder(
    path: Path, image_size: int | None = None, channels: int | None = None
) -> ImageDataset:
    from PIL import Image, UnidentifiedImageError

    classes = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"folder '{path}' has {len(classes)} class sub-folder(s); "
                        "conditional models "
                        "need >= 2 (put each class's images in its own sub-folder)")
    files = [(f, k) for k, c in enumerate(classes) for f in sorted(c.iterdir())
             if f.suffix.lower() in EXTENSIONS]
    if not files:
        raise DataError(f"folder '{path}' has no PNG/JPEG images in its class sub-folders")
    empty = [c.name for k, c in enumerate(classes) if not any(kk == k for _, kk in files)]
    if empty:
        raise DataError(f"folder '{path}': class sub-folder(s) {empty} hold no images; "
                        "remove them or add images")
    images = []
    for f, _ in files:
        try:
            with Image.open(f) as im:
                im.load()
                images.append(im.copy())
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"{f}: corrupt or unreadable image ({e.__class__.__name__}); "
                            "fix or remove the file") from None
    if channels is None:
        channels = 1 if all(im.mode in ("L", "1", "I;16", "I", "LA") for im in images) else 3
    mode = "L" if channels == 1 else "RGB"
    sizes = {im.size for im in images}
    if image_size is None and len(sizes) > 1:
        raise DataError(f"folder '{path}' mixes {len(sizes)} image sizes "
                        f"(e.g. {sorted(sizes)[:2]}); "
                        "pass --image-size N to resize all to N x N")
    arrays = []
    for im in images:
        im = im.convert(mode)
        if image_size is not None and im.size != (image_size, image_size):
            im = im.resize((image_size, image_size), Image.BILINEAR)
        a = np.asarray(im, dtype=np.uint8)
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    labels = np.array([k for _, k in files], dtype=np.int64)
    return ImageDataset(np.stack(arrays), labels, [c.name for c in classes], name=path.name,
                        source_fingerprint=files_fingerprint([(f, classes[k].name)
                                                              for f, k in files]))
