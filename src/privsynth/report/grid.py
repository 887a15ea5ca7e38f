"""Image mosaics as PNG: sample grids (one row per class, so a reviewer sees every class at a
glance) and the nearest-neighbour gallery (each synthetic image beside its nearest training
image)."""

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
    # Upscale small images (8x8 digits) so the PNG is readable; nearest keeps pixels honest.
    scale = scale or max(1, min(8, 160 // images.shape[-1]))
    return _png(grid_array(images, labels, num_classes, per_class), scale)


def _png(canvas: np.ndarray, scale: int) -> bytes:
    import io

    from PIL import Image

    img = Image.fromarray(canvas.squeeze(-1) if canvas.shape[-1] == 1 else canvas)
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def save_grid(path: str | os.PathLike[str], *grid, **kw) -> None:
    """`grid_png` of ``grid`` (images, labels, num_classes...), written atomically to ``path``."""
    png = grid_png(*grid, **kw)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(png)


def gallery_array(
    pairs: list[dict], synthetic: np.ndarray, train: np.ndarray, columns: int = 6, pad: int = 2
) -> np.ndarray:
    """uint8 H x W x C mosaic of (synthetic | nearest training) pairs, ``columns`` pairs a row."""
    c, h, w = synthetic.shape[1:]
    rows = max(1, -(-len(pairs) // columns))
    cell_w = 2 * w + 3 * pad
    canvas = np.full((rows * (h + pad) + pad, columns * cell_w, c), 255, np.uint8)
    for i, p in enumerate(pairs):
        y, x = pad + (i // columns) * (h + pad), (i % columns) * cell_w + pad
        canvas[y : y + h, x : x + w] = synthetic[p["synthetic"]].transpose(1, 2, 0)
        canvas[y : y + h, x + w + pad // 2 : x + 2 * w + pad // 2] = train[p["train"]].transpose(
            1, 2, 0
        )
    return canvas


def gallery_png(pairs: list[dict], synthetic: np.ndarray, train: np.ndarray) -> bytes:
    return _png(gallery_array(pairs, synthetic, train), max(1, min(8, 96 // synthetic.shape[-1])))
