"""Distributed Gaussian noise for a one-shot sum released through SecAgg+ (federated DP-MERF).

The central release ``S + N(0, (sigma C)^2)`` per entry, with ``S = sum_i S_i`` held by owners
and only ``sum_i (S_i + noise_i)`` seen by the server: the *distributed discrete Gaussian* of
Kairouz, Liu & Steinke (ICML 2021) on the integer grid SecAgg+ sums exactly (the full argument:
docs/federated.md, "SecAgg+"). In short:

* **Grid.** ``c`` and ``Q`` powers of two, so each owner's rounded, noised sum is a grid point
  that Flower's quantisation maps to its integer exactly; ``n Q < 2^32``: no wrap-around.
* **Sensitivity.** One image moves one class column by <= C, after rounding by
  ``C / gamma + sqrt(D)`` grid units.
* **Noise.** Each owner adds OpenDP's discrete Gaussian (exact sampler, OS CSPRNG) of scale
  ``sigma * Delta / sqrt(t - 1)``, t = SecAgg+'s threshold: an owner can subtract its own share,
  so the other >= t - 1 shares alone carry the full noise. `DistributedPlan.check` refuses a
  plan whose Kairouz tau (sum of discrete Gaussians vs one) is not negligible.
* **Range.** ``c`` sits 40 share standard deviations above ``max_images * C``, so Flower's
  clipping acts only on a tail `DistributedPlan.log10_clip_probability` bounds (added to delta).

Not here: cryptography (SecAgg+ is Flower's), accounting (Opacus' RDP accountant prices sigma;
OpenDP's privacy map is recorded as a cross-check).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import ConfigError, PrivacyError

MODULUS_BITS = 32  # Flower's SecAgg+ default modulus_range = 2^32
RANGE_SIGMAS = 40.0  # noise standard deviations of one share between the data bound and c
TAU_TOLERANCE = 1e-12  # largest accepted sum-of-discrete-Gaussians correction (Kairouz Thm. 1)


@dataclass(frozen=True)
class DistributedPlan:
    """Every public number of one distributed release (owners and server compute the same)."""

    noise_multiplier: float  # sigma of the whole release, in units of the sensitivity
    clip: float  # C: L2 norm of one image's vector
    max_images: int  # public bound on any owner's image count
    owners: int  # n: owners sampled into the SecAgg+ round
    threshold: int  # t: SecAgg+ reconstruction threshold (>= t shares in any sum)
    entries_per_class: int  # D: entries one image can change (one class column)
    entries: int  # d: entries of the released matrix
    clipping_range: float  # c (a power of two): SecAgg+ maps [-c, c] onto the grid
    quantization_range: int  # Q (a power of two): grid levels

    @property
    def grid(self) -> float:
        """gamma, the value of one grid unit (a power of two)."""
        return 2.0 * self.clipping_range / self.quantization_range

    @property
    def sensitivity_units(self) -> int:
        """L2 sensitivity of the rounded sum, in grid units (rounded up to an integer)."""
        return math.ceil(self.clip / self.grid + math.sqrt(self.entries_per_class))

    @property
    def total_scale_units(self) -> float:
        return self.noise_multiplier * self.sensitivity_units

    @property
    def share_scale_units(self) -> float:
        """The scale of the discrete Gaussian each owner adds."""
        return share_scale(self.total_scale_units, self.threshold)

    def noise_std_with(self, shares: int) -> float:
        return self.share_scale_units * math.sqrt(shares) * self.grid

    def noise_std_against_an_owner(self, shares: int) -> float:
        """The noise of a ``shares``-share sum that an owner in it faces (it knows its own
        share): >= sigma C whenever ``shares`` >= t."""
        return self.noise_std_with(shares - 1)

    @property
    def tau(self) -> float:
        """Kairouz et al. (2021), Thm. 1: how far a sum of up to n shares is from one discrete
        Gaussian (0.0 in float64 whenever a share's scale is many grid units)."""
        s2 = self.share_scale_units**2
        return 10.0 * sum(
            math.exp(-2 * math.pi**2 * s2 * j / (j + 1)) for j in range(1, self.owners)
        )

    @property
    def log10_clip_probability(self) -> float:
        """log10 of a bound on P(any owner's value leaves [-c, c]) (then Flower would clip):
        2 n d exp(-m^2 / (2 s^2)), m = the margin above the data bound, s = a share's scale."""
        if self.noise_multiplier == 0:
            return -math.inf
        margin = self.clipping_range - self.max_images * self.clip
        z = margin / (self.share_scale_units * self.grid)
        return math.log10(2 * self.owners * self.entries) - z * z / 2 / math.log(10)

    def check(self) -> None:
        if self.threshold < 2 or self.threshold > self.owners:
            raise ConfigError(
                f"SecAgg+ threshold {self.threshold} is not within 2..{self.owners} "
                "owners (shares are sized so that t - 1 of them carry the full noise); "
                "raise secagg-threshold within (0, 1] or federate more owners"
            )
        if self.noise_multiplier > 0 and self.tau * math.sqrt(self.entries) > TAU_TOLERANCE / (
            self.noise_multiplier
        ):
            raise PrivacyError(
                f"each owner's noise share ({self.share_scale_units:.3g} grid "
                "units) is too coarse for the SecAgg+ grid; use fewer owners per "
                "release or a larger epsilon"
            )

    def to_json(self) -> dict:
        return {
            **asdict(self),
            "grid": self.grid,
            "sensitivity_units": self.sensitivity_units,
            "share_scale_units": self.share_scale_units,
            # t - 1: the shares of a t-share sum that an owner in it does not know
            "shares_for_full_noise": self.threshold - 1,
            "noise_std": self.noise_std_with(self.threshold),  # (> sigma C) at exactly t shares
            "tau": self.tau,
            "log10_clip_probability": self.log10_clip_probability,
        }


def share_scale(total_scale: float, threshold: int) -> float:
    """The scale of one owner's share of noise of total scale ``total_scale`` when every sum
    holds >= ``threshold`` shares: sized for ``threshold - 1`` shares, so that the shares an
    owner does not know (its own subtracted) still carry the whole ``total_scale``."""
    if threshold < 2:
        raise ConfigError(
            f"a noise share needs a threshold of >= 2 shares per sum, got {threshold}"
        )
    return total_scale / math.sqrt(threshold - 1)


def plan_release(
    noise_multiplier: float,
    clip: float,
    max_images: int,
    owners: int,
    threshold: int,
    entries_per_class: int,
    classes: int,
) -> DistributedPlan:
    """The grid for ``owners`` owners of at most ``max_images`` images each (all public)."""
    if owners < 2:
        raise ConfigError(f"a SecAgg+ release needs >= 2 owners, got {owners}")
    # n * Q < 2^32 (no modular wrap-around) and Q <= 2^30 (Flower casts levels to int32)
    q_bits = min(30, MODULUS_BITS - 1 - math.ceil(math.log2(owners)))
    bound = max_images * clip + RANGE_SIGMAS * noise_multiplier * 2 * clip
    plan = DistributedPlan(
        noise_multiplier=float(noise_multiplier),
        clip=float(clip),
        max_images=int(max_images),
        owners=int(owners),
        threshold=int(threshold),
        entries_per_class=int(entries_per_class),
        entries=int(entries_per_class * classes),
        clipping_range=float(2.0 ** math.ceil(math.log2(bound))),
        quantization_range=2**q_bits,
    )
    # the 2C above assumed the rounding term sqrt(D) gamma <= C (it is ~1e-4 C in practice)
    if math.sqrt(entries_per_class) * plan.grid > clip:
        raise ConfigError(
            f"the SecAgg+ grid ({plan.grid:.3g}) is too coarse for {owners} owners "
            f"of up to {max_images} images; use fewer owners or smaller owners"
        )
    plan.check()
    return plan


def noisy_share(values: np.ndarray, plan: DistributedPlan, shares: int | None = None) -> np.ndarray:
    """One owner's contribution: its sum rounded to the grid plus its discrete Gaussian share,
    as float64 grid points in [-c, c] (SecAgg+ quantises them exactly).

    ``shares``: how many equal shares make the full noise (default t - 1, see
    :func:`share_scale`; 1 = all of it, the fallback without secure aggregation)."""
    units = np.rint(np.asarray(values, np.float64) / plan.grid).astype(np.int64)
    limit = plan.quantization_range // 2
    if np.abs(units).max(initial=0) > plan.max_images * plan.clip / plan.grid + 1:
        raise ConfigError(
            "this owner's embedding sum exceeds the public bound max_images * C; "
            "the run's max-images is smaller than this owner's image count"
        )
    if plan.noise_multiplier > 0:
        scale = plan.total_scale_units / math.sqrt(shares) if shares else plan.share_scale_units
        units = discrete_gaussian(units, scale)
    if np.abs(units).max(initial=0) > limit:  # a 40-sigma event, counted in delta
        raise PrivacyError(
            "a noise draw left the SecAgg+ range (probability < 1e-300); nothing was sent; rerun"
        )
    return units.astype(np.float64) * plan.grid


def _opendp_discrete_gaussian(scale: float):
    """OpenDP's discrete Gaussian mechanism on integer vectors (exact sampler, OS CSPRNG)."""
    import opendp.prelude as dp

    dp.enable_features("contrib")
    space = dp.vector_domain(dp.atom_domain(T="i64")), dp.l2_distance(T="i64")
    return dp.m.make_gaussian(*space, scale=float(scale))


def discrete_gaussian(units: np.ndarray, scale: float) -> np.ndarray:
    """``units + N_Z(0, scale^2)`` per entry, from OpenDP (never a seeded generator, whose noise
    anyone could subtract)."""
    noisy = _opendp_discrete_gaussian(scale)(units.ravel().tolist())
    return np.asarray(noisy, np.int64).reshape(units.shape)


def opendp_rho(plan: DistributedPlan) -> float:
    """OpenDP's zero-concentrated-DP rho for the full noise (t shares) at the sensitivity:
    a cross-check of Opacus' RDP (they agree: rho = 1 / (2 sigma^2))."""
    return float(_opendp_discrete_gaussian(plan.total_scale_units).map(plan.sensitivity_units))


def decode_sum(mean: np.ndarray, survivors: int, plan: DistributedPlan) -> np.ndarray:
    """The exact sum from SecAgg+'s output (Flower returns the mean over the ``survivors``):
    back to integer grid units, then to values."""
    units = np.rint(np.asarray(mean, np.float64) * survivors / plan.grid)
    return units * plan.grid
