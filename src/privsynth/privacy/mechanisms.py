"""One-shot releases of counts (class proportions) with the Laplace or Gaussian mechanism.

The mechanisms are IBM's diffprivlib (not hand-rolled). Add/remove one image changes one class
count by 1: L1 and L2 sensitivity 1.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError

COUNT_MECHANISMS = ("uniform", "laplace", "gaussian")


def release_proportions(counts: np.ndarray, mechanism: str, epsilon: float, delta: float,
                        seed: int | None = None) -> tuple[np.ndarray, float, float]:
    """Return ``(proportions, epsilon_spent, delta_spent)``.

    ``uniform`` spends nothing and returns 1/K for every class.
    """
    k = len(counts)
    if mechanism == "uniform":
        return np.full(k, 1.0 / k), 0.0, 0.0
    if mechanism not in COUNT_MECHANISMS:
        raise ConfigError(f"unknown class-proportion mechanism '{mechanism}'; "
                          f"choose one of {COUNT_MECHANISMS}")
    if not epsilon > 0:
        raise ConfigError("--counts-epsilon must be > 0 to release class proportions")
    from diffprivlib.mechanisms import GaussianAnalytic, Laplace

    rng = np.random.default_rng(seed)
    if mechanism == "laplace":
        mech = Laplace(epsilon=epsilon, delta=0.0, sensitivity=1.0, random_state=int(rng.integers(2**31)))
        delta = 0.0
    else:
        mech = GaussianAnalytic(epsilon=epsilon, delta=delta, sensitivity=1.0,
                                random_state=int(rng.integers(2**31)))
    noisy = np.array([mech.randomise(float(c)) for c in counts])
    # Post-processing (free): clip at a floor so every class can still be sampled.
    noisy = np.maximum(noisy, 1.0)
    return noisy / noisy.sum(), float(epsilon), float(delta)
