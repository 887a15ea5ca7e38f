"""The ceiling that (epsilon, delta)-DP puts on any membership test: TPR <= e^eps * FPR + delta
and 1 - FPR <= e^eps * (1 - TPR) + delta (Kairouz et al. 2015, the hypothesis-testing view of
DP). DP math, so it lives here; evaluation and report read it."""

from __future__ import annotations

import math

import numpy as np


def dp_ceiling(epsilon: float, delta: float, fpr: np.ndarray | float) -> np.ndarray | float:
    """Largest TPR any membership test can reach at ``fpr`` against an (eps, delta)-DP release."""
    fpr = np.asarray(fpr, dtype=np.float64)
    if math.isinf(epsilon):
        return np.ones_like(fpr) if fpr.ndim else 1.0
    e = math.exp(min(epsilon, 700))
    tpr = np.minimum.reduce([np.ones_like(fpr), e * fpr + delta, 1 - (1 - delta - fpr) / e])
    return tpr if tpr.ndim else float(tpr)


def dp_auc_ceiling(epsilon: float, delta: float) -> float:
    """Area under the DP ceiling curve (the largest AUC the guarantee allows)."""
    if math.isinf(epsilon):
        return 1.0
    f = np.linspace(0, 1, 20001)
    return float(np.trapezoid(dp_ceiling(epsilon, delta, f), f))


def guess_accuracy(epsilon: float, delta: float) -> float:
    """Best accuracy of any yes/no guess 'was this image used?' at a 50/50 prior under
    (epsilon, delta)-DP: maximise (TPR + 1 - FPR)/2 subject to TPR <= e^eps FPR + delta and
    1 - FPR <= e^eps (1 - TPR) + delta (the ceiling above, at its best point)."""
    if math.isinf(epsilon):
        return 1.0
    e = math.exp(min(epsilon, 700.0))
    return min(1.0, ((1 - delta) * (e - 1) / (e + 1) + 1 + delta) / 2)
