"""Fidelity: how closely synthetic pixels match real ones (plain functions, plain data)."""

from __future__ import annotations

import numpy as np
from scipy import stats


def pixel_stats(images: np.ndarray) -> dict[str, float]:
    """Mean, standard deviation, skewness and (excess) kurtosis of pixel intensities in 0..1."""
    x = np.asarray(images, dtype=np.float64).reshape(-1) / 255.0
    return {"mean": float(x.mean()), "std": float(x.std()),
            "skewness": float(stats.skew(x)), "kurtosis": float(stats.kurtosis(x))}


def stats_table(real: np.ndarray, synthetic: dict[str, np.ndarray]) -> list[dict]:
    """The seeds' table: one row for the real data, one per model, with differences to real."""
    ref = pixel_stats(real)
    rows = [{"model": "real", **ref}]
    for name, images in synthetic.items():
        s = pixel_stats(images)
        rows.append({"model": name, **s, **{f"d_{k}": s[k] - ref[k] for k in ref}})
    return rows


def per_class_stats(images: np.ndarray, labels: np.ndarray, num_classes: int) -> list[dict]:
    return [{"class": k, **pixel_stats(images[labels == k])} for k in range(num_classes)
            if np.any(labels == k)]
