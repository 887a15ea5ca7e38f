"""Fidelity: how closely synthetic images match real ones (plain functions, plain data).

Pixel statistics (the seeds' table) and, in a feature space, the Fréchet distance, KID and
precision / recall / density / coverage (Naeem et al. 2020, via the ``prdc`` package).
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
from scipy import linalg, stats


def pixel_stats(images: np.ndarray) -> dict[str, float]:
    """Mean, standard deviation, skewness and (excess) kurtosis of pixel intensities in 0..1."""
    x = np.asarray(images, dtype=np.float64).reshape(-1) / 255.0
    return {
        "mean": float(x.mean()),
        "std": float(x.std()),
        "skewness": float(stats.skew(x)),
        "kurtosis": float(stats.kurtosis(x)),
    }


def stats_table(real: np.ndarray, synthetic: dict[str, np.ndarray]) -> list[dict]:
    """The seeds' table: one row for the real data, one per model, with differences to real."""
    ref = pixel_stats(real)
    rows = [{"model": "real", **ref}]
    for name, images in synthetic.items():
        s = pixel_stats(images)
        rows.append({"model": name, **s, **{f"d_{k}": s[k] - ref[k] for k in ref}})
    return rows


def per_class_diff(
    real: np.ndarray,
    real_labels: np.ndarray,
    synth: np.ndarray,
    synth_labels: np.ndarray,
    num_classes: int,
) -> list[dict]:
    """Per class: synthetic minus real for each pixel statistic (classes present in both)."""
    out = []
    for k in range(num_classes):
        if np.any(real_labels == k) and np.any(synth_labels == k):
            r, s = pixel_stats(real[real_labels == k]), pixel_stats(synth[synth_labels == k])
            out.append({"class": k, **{f"d_{m}": s[m] - r[m] for m in r}})
    return out


def frechet(real_feats: np.ndarray, synth_feats: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (0 = same mean/covariance)."""
    mu1, mu2 = real_feats.mean(0), synth_feats.mean(0)
    s1, s2 = np.cov(real_feats, rowvar=False), np.cov(synth_feats, rowvar=False)
    # ReLU features have dead units, so covariances are often singular: regularise as
    # pytorch-fid does (a tiny ridge), which changes the distance by ~1e-6 x dims.
    off = np.eye(len(s1)) * 1e-6
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        covmean = linalg.sqrtm((s1 + off) @ (s2 + off))
    covmean = np.real(covmean)
    d = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
    return max(d, 0.0)


def standardise(real_feats: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sets centred and scaled per dimension by the real features' mean and standard
    deviation. The cubic kernel is not shift- or scale-invariant: on raw LeNet features
    (non-negative ReLU outputs whose scale grows with training) x.y / d is far from 0, the kernel
    values run into the thousands and the unbiased estimate's noise swamps it (a real-vs-real
    floor read -1.8 where differences of 0.01 matter). A dimension nearly constant in the real
    set (a dead or rarely firing ReLU) is scaled by at least 10% of the typical dimension's
    spread, so one such unit cannot dominate the kernel."""
    real = np.asarray(real_feats, dtype=np.float64)
    mu, sd = real.mean(0), real.std(0)
    typical = float(np.sqrt(np.mean(sd**2)))
    sd = np.maximum(sd, 0.1 * typical) if typical > 0 else np.ones_like(sd)
    return (real - mu) / sd, (np.asarray(other, dtype=np.float64) - mu) / sd


def kid(
    real_feats: np.ndarray,
    synth_feats: np.ndarray,
    subsets: int = 10,
    subset_size: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Kernel Inception-style distance: unbiased MMD^2 with the cubic polynomial kernel
    (x.y / d + 1)^3 (Bińkowski et al. 2018), averaged over random subsets; mean and std over
    subsets. Both feature sets are first standardised with the real features' per-dimension
    mean and standard deviation (see `standardise`), so KID is 0 in expectation for two samples
    of one distribution and its noise does not grow with the feature scale."""
    real_feats, synth_feats = standardise(real_feats, synth_feats)
    rng = np.random.default_rng(seed)
    m = min(subset_size, len(real_feats), len(synth_feats))
    d = real_feats.shape[1]
    vals = []
    for _ in range(subsets):
        x = real_feats[rng.choice(len(real_feats), m, replace=False)]
        y = synth_feats[rng.choice(len(synth_feats), m, replace=False)]
        kxx, kyy, kxy = [(a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y))]
        mmd = (
            (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
            + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.mean()
        )
        vals.append(mmd)
    return {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "subset_size": m}


def prdc_scores(
    real_feats: np.ndarray,
    synth_feats: np.ndarray,
    nearest_k: int = 5,
    max_n: int = 2000,
    seed: int = 0,
) -> dict[str, float]:
    """Precision, recall, density, coverage (``prdc`` package) on up to ``max_n`` of each set."""
    from prdc import compute_prdc

    rng = np.random.default_rng(seed)
    r = real_feats[rng.permutation(len(real_feats))[:max_n]]
    s = synth_feats[rng.permutation(len(synth_feats))[:max_n]]
    k = min(nearest_k, len(r) - 1, len(s) - 1)
    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the set sizes
        scores = compute_prdc(r, s, nearest_k=k)
    return {key: float(v) for key, v in scores.items()} | {"nearest_k": k}
