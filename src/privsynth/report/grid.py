"""Sample grids as PNG: one row per class, so a reviewer sees every class at a glance."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_path


def grid_array(
    images: np.ndarray, labels: np.ndarray, num_classes: int, per_class: int = 10, pad: int = 1
) -> np.ndarray:
    """uint8 H x W x C mosaic: row k holds up to ``per_class`` images of class k."""
    n, c, h, w = images.shape
    canvas = np.full((num_classes * (h + pad) + pad, per_class * (w + pad) + pad, c), 255, np.uint8)
    for k in range(num_classes):
        idx = np.flatnonzero(labels == k)[:per_class]
        for j, i in enumerate(idx):
            y, x = pad + k * (h + pad), pad + j * (w + pad)
            canvas[y : y + h, x : x + w] = images[i].transpose(1, 2, 0)
    return canvas


def grid_png(
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    per_class: int = 10,
    scale: int | None = None,
) -> bytes:
    """The grid as PNG bytes (for reports that embed images)."""
    import io

    from PIL import Image

    canvas = grid_array(images, labels, num_classes, per_class)
    # Upscale small images (8x8 digits) so the PNG is readable; nearest keeps pixels honest.
    scale = scale or max(1, min(8, 160 // images.shape[-1]))
    img = Image.fromarray(canvas.squeeze(-1) if canvas.shape[-1] == 1 else canvas)
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def save_grid(
    path: str | os.PathLike[str],
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    per_class: int = 10,
    scale: int | None = None,
) -> None:
    png = grid_png(images, labels, num_classes, per_class, scale)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(png)
