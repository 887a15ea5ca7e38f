"""The one-run empirical lower bound on epsilon (Steinke, Nasr & Jagielski, NeurIPS 2023).

m canaries are each included in training independently with probability 1/2. After one
training run an attacker scores every canary and guesses "in" for the k+ highest scores and "out"
for the k- lowest (abstaining on the rest): r guesses, v of them right. If training is
(eps, delta)-DP, then P[V >= v] <= P[Binomial(r, e^eps / (1 + e^eps)) >= v] + 2 m delta * alpha
(their Theorem/Algorithm for delta > 0). The largest eps whose p-value is still below
1 - confidence is a lower bound on the true epsilon at that confidence: an *audit*, not
accounting — it can only show leakage, never prove privacy.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def p_value(m: int, r: int, v: int, epsilon: float, delta: float = 0.0) -> float:
    """P[>= v correct out of r guesses] under the null hypothesis "training is (eps, delta)-DP"."""
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= v <= r <= m, got v={v}, r={r}, m={m}")
    q = 1.0 / (1.0 + math.exp(-epsilon))  # accuracy of eps-DP randomised response
    beta = float(stats.binom.sf(v - 1, r, q))
    alpha = 0.0
    if delta > 0 and v > 0:
        # alpha = max_i P[v > Binomial(r, q) >= v - i] / i
        pmf = stats.binom.pmf(np.arange(v - 1, -1, -1), r, q)  # v-1, v-2, ..., 0
        alpha = float((np.cumsum(pmf) / np.arange(1, v + 1)).max())
    return min(1.0, beta + alpha * delta * 2 * m)


def epsilon_lower_bound(
    m: int, r: int, v: int, delta: float = 0.0, confidence: float = 0.95, eps_max: float = 100.0
) -> float:
    """Largest eps the guesses reject at ``confidence`` (0 when they reject nothing)."""
    level = 1.0 - confidence
    if r == 0 or p_value(m, r, v, 0.0, delta) >= level:
        return 0.0
    lo, hi = 0.0, 1.0
    while p_value(m, r, v, hi, delta) < level and hi < eps_max:
        lo, hi = hi, hi * 2
    for _ in range(50):  # bisection: p_value is increasing in eps
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if p_value(m, r, v, mid, delta) < level else (lo, mid)
    return lo


def guesses(scores: np.ndarray, included: np.ndarray, k_pos: int, k_neg: int) -> tuple[int, int]:
    """Guess "in" for the ``k_pos`` highest scores, "out" for the ``k_neg`` lowest: (r, v)."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    inc = np.asarray(included, bool)
    pos = order[:k_pos]
    neg = order[len(order) - k_neg :] if k_neg else order[:0]
    return int(len(pos) + len(neg)), int(inc[pos].sum() + (~inc[neg]).sum())


def guess_grid(m: int) -> list[tuple[int, int]]:
    """The (k+, k-) choices tried; fixed in advance so a Bonferroni correction makes them honest."""
    ks = sorted({max(1, round(m * f)) for f in (0.05, 0.1, 0.25, 0.5)})
    return [(k, k) for k in ks if 2 * k <= m] + [(k, 0) for k in ks]


def audit_scores(
    scores: dict[str, np.ndarray],
    included: np.ndarray,
    delta: float = 0.0,
    confidence: float = 0.95,
) -> dict:
    """The lower bound for each attack and overall, Bonferroni-corrected over every
    (attack, k+, k-) tried, so the overall bound holds at ``confidence`` jointly."""
    m = len(included)
    grid = guess_grid(m)
    tests = len(grid) * max(1, len(scores))
    corrected = 1.0 - (1.0 - confidence) / tests
    per_attack = {}
    for name, s in scores.items():
        best = {"epsilon_lower_bound": 0.0, "k_pos": 0, "k_neg": 0, "guesses": 0, "correct": 0}
        for k_pos, k_neg in grid:
            r, v = guesses(s, included, k_pos, k_neg)
            eps = epsilon_lower_bound(m, r, v, delta, corrected)
            if eps > best["epsilon_lower_bound"] or best["guesses"] == 0:
                best = {
                    "epsilon_lower_bound": eps,
                    "k_pos": k_pos,
                    "k_neg": k_neg,
                    "guesses": r,
                    "correct": v,
                }
        per_attack[name] = best
    overall = max((a["epsilon_lower_bound"] for a in per_attack.values()), default=0.0)
    return {
        "epsilon_lower_bound": overall,
        "confidence": confidence,
        "delta": delta,
        "canaries": m,
        "included": int(np.sum(included)),
        "tests_corrected_for": tests,
        "per_attack": per_attack,
    }
