"""The size release: the training-set size N, released once with the Gaussian mechanism before
anything else a private run publishes (why and how: docs/privacy.md, "The size release").

An exact N tells add/remove-one neighbours apart, and so would every value computed from it. So a
private run releases ``N_hat = max(1, round(N + N(0, sigma_n^2)))`` (sensitivity 1, OpenDP noise)
and computes q, the steps and the default delta 1 / (10 N_hat) from it. The release is the entry
``(sigma_n, 1.0, 1)`` at the head of the run's accountant history, composed with the rest.

sigma_n: Opacus' calibration (PRV) for ``share * epsilon`` at the user's delta, or at the public
`CALIBRATION_DELTA` when delta is the default (which needs N_hat), capped at `MAX_SIGMA`: below
epsilon ~8.5 a 2% share would leave N_hat off by hundreds, while sigma_n 20 costs DP-SGD a few
percent of its budget. Without a target epsilon sigma_n is `MAX_SIGMA`; ``--size-sigma`` sets it.
N_hat is drawn once per run and kept on its card (``privacy.size_release``): a resume reuses it.
"""

from __future__ import annotations

import math

import torch

from ..errors import ConfigError, PrivacyError
from .accounting import calibrate_noise, epsilon_from_history
from .mechanisms import gaussian_noise_release
from .release import Release, gaussian

SHARE = 0.02  # of the target epsilon, spent on the size release alone (at CALIBRATION_DELTA)
MAX_SIGMA = 20.0  # N_hat within +-40 images 95% of the time (and the sigma without a target)
CALIBRATION_DELTA = 1e-5
HOW = (
    "the training-set size plus Gaussian noise of standard deviation {sigma:.3g}, rounded (at "
    "least 1): the N_hat that the sample rate, the steps and the default delta are computed from"
)
MECHANISM = (
    "the Gaussian mechanism (OpenDP noise) on the training-set size, sensitivity 1 under "
    "add/remove one image; accounted as the first entry (sigma, 1.0, 1) of the run's history"
)


def size_sigma(spec, share: float = SHARE, sigma: float | None = None) -> float:
    """sigma_n for ``spec`` (a `PrivacySpec`): ``sigma`` if given, `MAX_SIGMA` without a target
    epsilon, else Opacus' calibration for ``share * spec.epsilon``, at most `MAX_SIGMA`."""
    if sigma is not None:
        if not (sigma > 0 and math.isfinite(sigma)):
            raise ConfigError(f"--size-sigma must be a finite number > 0, got {sigma}")
        return float(sigma)
    if not (0 < share < 1):
        raise ConfigError(f"--size-share must lie in (0, 1), got {share}; the default is {SHARE}")
    if spec.epsilon is None:
        return MAX_SIGMA
    delta = spec.delta if spec.delta is not None else CALIBRATION_DELTA
    # PRV whatever the run's accountant: Opacus' RDP orders stop at 63, which floors one
    # release's epsilon near log(1/delta)/62 (0.19 at 1e-5), above small shares. The run's own
    # accountant then composes sigma_n with the rest (its card value is that accountant's).
    try:
        return min(MAX_SIGMA, calibrate_noise(share * spec.epsilon, delta, 1.0, 1, "prv"))
    except PrivacyError:  # a share too small for Opacus' search (sigma > 1e6)
        return MAX_SIGMA


def check_fits(spec, sigma: float, delta: float) -> None:
    """Refuse, before anything is reserved or drawn, a target the size release alone uses up."""
    if spec.epsilon is None:
        return
    alone = epsilon_from_history([entry(sigma)], delta, spec.accountant)
    if alone >= spec.epsilon:
        raise PrivacyError(
            f"the size release alone (sigma {sigma:g}) spends epsilon {alone:.3g} of the "
            f"target {spec.epsilon:g}, leaving nothing for training; raise --epsilon or pass "
            "a larger --size-sigma"
        )


def entry(sigma: float) -> tuple[float, float, int]:
    """The release's accountant history entry: one Gaussian release on the whole set."""
    return gaussian("size_release", sigma).history[0]


def release_size(n: int, sigma: float) -> tuple[int, Release]:
    """``(N_hat, its Release)``: ``n`` plus OpenDP Gaussian noise of standard deviation ``sigma``
    (sensitivity 1), rounded, at least 1 (post-processing). The only place the exact ``n`` meets
    the noise."""
    noisy, release = gaussian_noise_release(torch.tensor([float(n)]), sigma, 1.0, "size_release")
    n_hat = max(1, int(round(float(noisy[0]))))
    return n_hat, release.with_count(n_hat, HOW.format(sigma=sigma))


def agree(n_hat: int) -> int:
    """In a process group (--nproc): process 0's N_hat for every process, so that all sample at
    the same q (process 0 alone books its release in the ledger). The identity otherwise."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return n_hat
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([n_hat], dtype=torch.long, device=device)
    dist.broadcast(value, 0)
    return int(value.item())


def card_entry(release: Release, share: float | None, delta: float, accountant: str) -> dict:
    """The card's ``privacy.size_release``: the release, its share and its epsilon alone."""
    return {
        **release.card(),
        "share": share,
        "epsilon_alone": epsilon_from_history(release.history, delta, accountant),
        "description": MECHANISM,
    }
