"""Detection: can a fresh classifier tell real from synthetic?
(The seeds' "discriminator accuracy".)

Real = held-out images (never trained on by the generator), synthetic = an equal number of
samples. Half of this balanced set trains a new LeNet with the utility classifiers' loop and
fixed schedule (`classifier.train_fixed`), the other half tests it. AUC 0.5 means
indistinguishable; the confidence interval is DeLong's (normal approximation, via SciPy).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from .classifier import IMAGES_SEEN, fixed_schedule, predict, train_fixed


def delong_ci(
    labels: np.ndarray, scores: np.ndarray, confidence: float = 0.95
) -> tuple[float, float, float]:
    """AUC and its DeLong confidence interval (DeLong, DeLong & Clarke-Pearson 1988)."""
    labels = np.asarray(labels).astype(bool)
    pos, neg = np.asarray(scores)[labels], np.asarray(scores)[~labels]
    m, n = len(pos), len(neg)
    # psi(x, y) = 1 if x > y, 1/2 if tie: the Mann-Whitney kernel
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    auc = float(psi.mean())
    v10, v01 = psi.mean(1), psi.mean(0)
    var = v10.var(ddof=1) / m + v01.var(ddof=1) / n if m > 1 and n > 1 else 0.0
    half = stats.norm.ppf(0.5 + confidence / 2) * np.sqrt(var)
    return auc, float(max(0.0, auc - half)), float(min(1.0, auc + half))


def detection(
    real: np.ndarray,
    synthetic: np.ndarray,
    seed: int = 0,
    confidence: float = 0.95,
    progress: bool = False,
    passes: int = IMAGES_SEEN,
) -> dict:
    """Train a real-vs-synthetic LeNet on half of a balanced set (fixed schedule of about
    ``passes`` images seen, last epoch); accuracy and AUC on the other half."""
    rng = np.random.default_rng(seed)
    n = min(len(real), len(synthetic))
    r = real[rng.permutation(len(real))[:n]]
    s = synthetic[rng.permutation(len(synthetic))[:n]]
    order = rng.permutation(2 * n)
    x = np.concatenate([r, s])[order]
    y = np.r_[np.ones(n, np.int64), np.zeros(n, np.int64)][order]
    # the first n train, the other n test (both balanced in expectation)
    schedule = fixed_schedule(n, x.shape[1:], passes)
    model = train_fixed(x[:n], y[:n], 2, "lenet", schedule, seed, progress, "detection classifier")
    p_real = predict(model, x[n:])[:, 1]
    auc, lo, hi = delong_ci(y[n:], p_real, confidence)
    return {
        "accuracy": float(((p_real > 0.5) == y[n:].astype(bool)).mean()),
        "auc": auc,
        "auc_ci": [lo, hi],
        "confidence": confidence,
        "n_train": int(n),
        "n_test": int(n),
        "epochs": schedule.epochs,
        "classifier": "LeNet (real=1 vs synthetic=0) trained on its own half: "
        + schedule.describe(),
    }
