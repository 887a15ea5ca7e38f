"""Turning attack scores into the numbers a reviewer reads: AUC, TPR at low FPR, ROC points, and
the ceiling that (epsilon, delta)-DP puts on any attack: TPR <= e^eps * FPR + delta
(Kairouz et al. 2015 hypothesis-testing view of DP)."""

from __future__ import annotations

import math

import numpy as np

from ..privacy.ceiling import dp_auc_ceiling, dp_ceiling
from .detection import delong_ci

FPRS = (0.01, 0.001)
__all__ = ["FPRS", "dp_auc_ceiling", "dp_ceiling", "exceeds_ceiling", "roc_summary"]


def exceeds_ceiling(summary: dict, n_members: int, n_nonmembers: int, level: float = 0.01) -> bool:
    """True when, at an FPR the non-members can resolve (>= 1/n), the members caught are
    significantly more than the DP ceiling allows (one-sided binomial test at ``level``): a sign
    that the claim is wrong, rather than the noise of a few hundred images."""
    from scipy import stats

    for f in FPRS:
        if f < 1.0 / max(1, n_nonmembers):
            continue
        caught = round(summary[f"tpr_at_{f:g}_fpr"] * n_members)
        ceiling = summary[f"dp_ceiling_tpr_at_{f:g}_fpr"]
        if ceiling < 1 and caught and stats.binom.sf(caught - 1, n_members, ceiling) < level:
            return True
    return False


def roc_summary(
    member_scores: np.ndarray,
    nonmember_scores: np.ndarray,
    epsilon: float = math.inf,
    delta: float = 0.0,
    points: int = 400,
) -> dict:
    """AUC (with a 95% DeLong interval), TPR at 1% and 0.1% FPR (sklearn roc_curve), ROC points
    for plotting, and the DP ceiling at the same FPRs. ``min_resolvable_fpr`` = 1 / #non-members:
    TPR at a smaller FPR is read off a single non-member and is only indicative."""
    from sklearn.metrics import roc_auc_score, roc_curve

    y = np.r_[np.ones(len(member_scores)), np.zeros(len(nonmember_scores))]
    s = np.r_[member_scores, nonmember_scores]
    fpr, tpr, _ = roc_curve(y, s)
    _, lo, hi = delong_ci(y, s)
    out = {
        "auc": float(roc_auc_score(y, s)),
        "auc_ci95": [lo, hi],
        "n_members": int(len(member_scores)),
        "n_nonmembers": int(len(nonmember_scores)),
        "min_resolvable_fpr": 1.0 / max(1, len(nonmember_scores)),
    }
    for f in FPRS:
        ok = fpr <= f + 1e-12
        out[f"tpr_at_{f:g}_fpr"] = float(tpr[ok].max()) if ok.any() else 0.0
        out[f"dp_ceiling_tpr_at_{f:g}_fpr"] = float(dp_ceiling(epsilon, delta, f))
    out["dp_ceiling_auc"] = dp_auc_ceiling(epsilon, delta)
    out["exceeds_dp_ceiling"] = exceeds_ceiling(out, len(member_scores), len(nonmember_scores))
    if len(fpr) > points:  # keep the low-FPR end dense: the plot is log-scale
        keep = np.unique(np.geomspace(1, len(fpr), points).astype(int) - 1)
        fpr, tpr = fpr[keep], tpr[keep]
    out["roc"] = {"fpr": fpr.round(6).tolist(), "tpr": tpr.round(6).tolist()}
    return out
