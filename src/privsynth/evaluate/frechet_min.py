"""A minimal Fréchet distance in the LeNet feature space, for the sweep.

Placeholder until the full evaluation module (``privsynth.evaluate.features``) lands: the sweep
calls only `frechet_distance` and `lenet_features`, so switching is a two-line change.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import linalg

from .classifier import LeNet, _to_tensor


@torch.no_grad()
def lenet_features(model: LeNet, images: np.ndarray) -> np.ndarray:
    """The 128-d penultimate activations of a trained `LeNet` for uint8 images."""
    model.eval()
    return torch.cat([model.features_of(b) for b in _to_tensor(images).split(1024)]).numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a`` and ``b`` (rows: samples)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    if not np.isfinite(covmean).all():  # near-singular product: regularise, as in the FID code
        eps = np.eye(len(s1)) * 1e-6
        covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = np.real(covmean)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
