"""Which images of one dataset are copies of another's: the `--public-data` check.

Exact: a record of one (decoded pixels + class name, see `Content`) is a record of the other, so
any re-encoding (PNG, NPZ, IDX), re-ordering, subset or superset of the private records.
Near-copy: at the resolution both are trained at, the 8 x 8 grey thumbnails (area average, 0-255)
of two images lie within an RMS difference of ``THUMB_RMS`` grey levels, whatever their labels
(lossy re-encoding, small noise, a resize there and back, a relabelled copy). Every pair is
compared, in blocks: a few seconds for 10,000 x 10,000 images on one core. Cropped, shifted,
rotated or otherwise edited copies are not recognised.
"""

from __future__ import annotations

import numpy as np

from .dataset import ImageDataset

THUMB = 8
THUMB_RMS = 4.0  # grey levels (of 255): re-encodings differ by ~1, distinct images by far more
_BLOCK = 2048


def thumbnails(images: np.ndarray) -> np.ndarray:
    """uint8 ``N x C x H x W`` -> float32 ``N x 64``: grey 8 x 8 area averages, 0-255."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(images)).float().mean(dim=1, keepdim=True)
    size = min(THUMB, x.shape[-1], x.shape[-2])
    return F.adaptive_avg_pool2d(x, size).flatten(1).numpy()


def copies(candidate: ImageDataset, private: ImageDataset) -> tuple[int, int]:
    """``(exact, near)``: how many of ``candidate``'s records are records of ``private`` (as
    loaded), and how many of its images are near-copies of one of ``private``'s (when both have
    the same image shape; else 0)."""
    import torch

    assert candidate.content is not None and private.content is not None
    mine = set(private.content.records)
    exact = sum(r in mine for r in candidate.content.records)
    near = 0
    if candidate.image_shape == private.image_shape:
        a = torch.from_numpy(thumbnails(candidate.images))
        b = torch.from_numpy(thumbnails(private.images))
        limit = THUMB_RMS**2 * a.shape[1]  # squared L2 over the thumbnail's pixels
        for start in range(0, len(a), _BLOCK):
            block = a[start : start + _BLOCK]
            best = torch.full((len(block),), float("inf"))
            for other in range(0, len(b), _BLOCK):
                d = torch.cdist(block, b[other : other + _BLOCK]).pow(2).min(dim=1).values
                best = torch.minimum(best, d)
            near += int((best <= limit).sum())
    return exact, near
