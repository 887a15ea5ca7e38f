"""Nearest-neighbour gallery: each synthetic image beside its nearest training image."""

from __future__ import annotations

import io

import numpy as np


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
    from PIL import Image

    canvas = gallery_array(pairs, synthetic, train)
    img = Image.fromarray(canvas.squeeze(-1) if canvas.shape[-1] == 1 else canvas)
    scale = max(1, min(8, 96 // synthetic.shape[-1]))
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
