"""One-shot releases: counts (class proportions) with the Laplace or Gaussian mechanism, and
OpenDP Gaussian noise on a tensor (`gaussian_noise_release`: every Gaussian release's draw).

The mechanisms and their calibration are OpenDP's (not hand-rolled): integer counts get
discrete Laplace / discrete Gaussian noise whose scale OpenDP searches for the requested
(epsilon, delta). Add/remove one image changes one class count by 1: L1 and L2 sensitivity 1.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError
from .release import Release, gaussian

COUNT_MECHANISMS = ("uniform", "laplace", "gaussian")


def calibrated(mechanism: str, epsilon: float, delta: float):
    """``(measurement, scale)``: OpenDP's mechanism with the smallest noise scale whose privacy
    map meets ``epsilon`` (``(epsilon, delta)`` for the Gaussian) at sensitivity 1."""
    import opendp.prelude as dp

    dp.enable_features("contrib")
    counts = dp.vector_domain(dp.atom_domain(T=int))
    if mechanism == "laplace":

        def make(scale: float):
            return dp.m.make_laplace(counts, dp.l1_distance(T=int), scale=scale)

        d_in, d_out = 1, epsilon
    else:

        def make(scale: float):
            rho = dp.m.make_gaussian(counts, dp.l2_distance(T=float), scale=scale)  # zCDP
            return dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(rho), delta)

        d_in, d_out = 1.0, (epsilon, delta)
    scale = dp.binary_search_param(make, d_in=d_in, d_out=d_out)
    return make(scale), float(scale)


def count_spend(mechanism: str, epsilon: float, delta: float) -> tuple[float, float]:
    """``(epsilon, delta)`` a release with ``mechanism`` will spend; checks the arguments first,
    so a run can book the spend (and refuse a bad flag) before anything is released."""
    if mechanism == "uniform":
        return 0.0, 0.0
    if mechanism not in COUNT_MECHANISMS:
        raise ConfigError(
            f"unknown class-proportion mechanism '{mechanism}'; choose one of {COUNT_MECHANISMS}"
        )
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ConfigError(
            f"--counts-epsilon must be > 0 and finite to release class proportions, got {epsilon}"
        )
    if mechanism == "gaussian" and not 0 < delta < 1:
        raise ConfigError("the Gaussian mechanism needs 0 < delta < 1; use laplace for pure DP")
    return float(epsilon), float(delta if mechanism == "gaussian" else 0.0)


def release_proportions(
    counts: np.ndarray, mechanism: str, epsilon: float, delta: float, seed: int | None = None
) -> tuple[np.ndarray, float, float]:
    """``(proportions, epsilon_spent, delta_spent)``; ``uniform`` spends nothing (1/K each).
    OpenDP draws from the OS CSPRNG: ``seed`` does not make a release repeatable (by design)."""
    k = len(counts)
    eps_spent, delta_spent = count_spend(mechanism, epsilon, delta)
    if mechanism == "uniform":
        return np.full(k, 1.0 / k), 0.0, 0.0
    return proportions(release_counts(counts, mechanism, epsilon, delta)[0]), eps_spent, delta_spent


def release_counts(counts: np.ndarray, mechanism: str, epsilon: float, delta: float):
    """``(noisy class counts (float64), their Release)``, drawn once by OpenDP's ``mechanism``
    (laplace or gaussian; `count_spend` checks the arguments) at sensitivity 1. The release
    states its own (epsilon, delta): it composes with the run's accountant by basic composition."""
    eps, d = count_spend(mechanism, epsilon, delta)
    meas, scale = calibrated(mechanism, epsilon, delta)
    noisy = np.asarray(meas([int(c) for c in counts]), dtype=np.float64)
    how = f"sum of the class counts released with the {mechanism} mechanism (before the floor "
    release = Release("class_proportions", mechanism, scale, epsilon=eps, delta=d)
    return noisy, release.with_count(float(noisy.sum()), how + "of one image per class)")


def proportions(noisy: np.ndarray) -> np.ndarray:
    """Post-processing (free) of noisy counts: a floor of 1 so every class can still be
    sampled, then normalised."""
    noisy = np.maximum(noisy, 1.0)
    return noisy / noisy.sum()


def gaussian_noise_release(values, sigma: float, sensitivity: float = 1.0, name: str = "", q=1.0):
    """``(values + N(0, (sigma * sensitivity)^2) per entry, its Release)``: ``values`` a torch
    tensor of any shape (the result is float64), the noise drawn by OpenDP's Gaussian mechanism
    from the OS CSPRNG, never from a seeded generator (a known seed would let anyone subtract it).
    ``sigma`` is the noise multiplier, ``sensitivity`` the L2 sensitivity of ``values``; the
    `Release` is what the run's accountant composes."""
    import opendp.prelude as dp
    import torch

    dp.enable_features("contrib")
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l2_distance(T=float)
    meas = dp.m.make_gaussian(*space, scale=float(sigma) * float(sensitivity))
    flat = values.double().flatten().tolist()
    noisy = torch.tensor(meas(flat), dtype=torch.float64).view(values.shape)
    return noisy, gaussian(name, sigma, sensitivity, q)
