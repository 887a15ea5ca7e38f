"""Noise calibration and epsilon accounting, delegated to Opacus' accountants.

Nothing here computes a privacy bound itself: ``get_noise_multiplier`` and the accountants'
``get_epsilon`` are Opacus'. The state worth saving is the accountant's ``history``, a list of
``(noise_multiplier, sample_rate, num_steps)`` triples; from it any accountant recomputes epsilon.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Iterable

import numpy as np
from opacus.accountants import create_accountant
from opacus.accountants.utils import get_noise_multiplier

from ..errors import ConfigError, PrivacyError

ACCOUNTANTS = ("prv", "rdp")


@dataclass(frozen=True)
class PrivacySpec:
    """What the user asked for: a target ``epsilon`` (or a fixed ``noise_multiplier``). "No DP"
    is no spec at all (``None``; ``null`` in JSON). Epsilon in nats, delta a probability,
    ``max_grad_norm`` the per-sample L2 clipping bound C; ``delta=None`` picks ``1 / (10 N)`` once
    N is known (a central run's N_hat, ``size``)."""

    epsilon: float | None = 10.0
    delta: float | None = None
    noise_multiplier: float | None = None
    max_grad_norm: float = 1.0
    accountant: str = "prv"
    grad_sample_mode: str = "bk"  # dpsgd.GRAD_SAMPLE_MODES; bk = Book-Keeping, the fastest
    # Derived by the trainer, not asked for (so not in to_json, the run's request):
    # releases made from the same data before DP-SGD (the warm-up's central images) as
    # accountant entries (sigma, q, steps): DP-SGD is calibrated over prior + its own steps and
    # its accountant starts from them, so card and ledger compose them exactly;
    prior: tuple[tuple[float, float, int], ...] = ()
    # N_hat (privacy/size_release.py): every published value that needs N reads it, never N.
    size: int | None = None

    def __post_init__(self) -> None:
        if self.accountant not in ACCOUNTANTS:
            raise ConfigError(
                f"unknown accountant '{self.accountant}'; choose one of {ACCOUNTANTS}"
            )
        if self.epsilon is not None and not (self.epsilon > 0 and math.isfinite(self.epsilon)):
            raise ConfigError(
                f"epsilon must be a positive finite number, got {self.epsilon}; "
                "use --no-dp (or --method gan) for a non-private baseline"
            )
        if self.epsilon is not None and self.epsilon > MAX_EPSILON:
            raise ConfigError(
                f"--epsilon {self.epsilon:g} is above {MAX_EPSILON:g}, the largest target "
                "Opacus' accountants calibrate noise for here (beyond it they overflow or run "
                f"without end); pass --epsilon <= {MAX_EPSILON:g}, or --no-dp for a non-private "
                "baseline"
            )
        if self.delta is not None and not 0 < self.delta < 1:
            raise ConfigError(
                f"delta must lie in (0, 1), got {self.delta}; the default is 1/(10 N)"
            )
        if self.noise_multiplier is not None and not (
            self.noise_multiplier > 0 and math.isfinite(self.noise_multiplier)
        ):
            raise ConfigError(
                "noise multiplier must be a finite number > 0; omit it to calibrate from --epsilon"
            )
        if not (self.max_grad_norm > 0 and math.isfinite(self.max_grad_norm)):
            raise ConfigError(f"clip norm must be a finite number > 0, got {self.max_grad_norm}")

    @property
    def enabled(self) -> bool:
        return self.epsilon is not None or self.noise_multiplier is not None

    def resolved_delta(self, n_private: int) -> float:
        """The user's delta, else 1/(10 N) with N the released size (``size``) when there is one."""
        return self.delta if self.delta is not None else default_delta(self.public_size(n_private))

    def public_size(self, n_private: int) -> int:
        """The N that published values are computed from: N_hat when released, else ``n``."""
        return self.size if self.size is not None else n_private

    def with_noise(self, sigma: float) -> "PrivacySpec":
        """The same target with its noise multiplier already calibrated (or fixed)."""
        return self.replace(noise_multiplier=float(sigma))

    def to_json(self) -> dict:
        out = asdict(self)
        out.pop("prior")
        out.pop("size")
        return out

    @classmethod
    def from_json(cls, data: dict | None) -> "PrivacySpec | None":
        """The spec written by `to_json`; ``None`` (JSON null) is "no DP"."""
        return None if data is None else cls(**data)

    def replace(self, **changes) -> "PrivacySpec":
        if "prior" in changes:
            changes["prior"] = tuple(tuple(h) for h in changes["prior"])
        return dataclasses.replace(self, **changes)


# The largest target epsilon accepted. Measured with Opacus' get_noise_multiplier: 200 calibrates
# with both accountants; from a few hundred the PRV accountant overflows (numpy exp) or its
# bisection runs for many minutes, and 1e4 / 1e300 never return. An epsilon this large promises
# nothing anyway (e^200 is a factor of 7e86).
MAX_EPSILON = 200.0


def default_delta(n_private: int) -> float:
    """``1 / (10 N)``: comfortably below the 1/N at which one record's leak is 'likely'."""
    return 1.0 / (10.0 * n_private)


def calibrate_noise(
    epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: str = "prv",
    prior: Iterable[tuple[float, float, int]] = (),
) -> float:
    """The smallest noise multiplier sigma whose epsilon after ``steps`` is <= target (Opacus
    bisects to within 0.5% of the target). With ``prior`` (entries spent before these steps in
    the same accountant) the target is the epsilon of ``prior + [(sigma, q, steps)]``."""
    prior = _entries(prior)
    if prior:
        return _calibrate_after(
            prior, float(epsilon), float(delta), float(sample_rate), int(steps), accountant
        )
    try:
        with _quiet_full_batch():
            return float(
                get_noise_multiplier(
                    target_epsilon=epsilon,
                    target_delta=delta,
                    sample_rate=sample_rate,
                    steps=steps,
                    accountant=accountant,
                    epsilon_tolerance=max(0.005 * epsilon, 1e-4),
                )
            )
    except ValueError as e:
        raise PrivacyError(
            f"cannot reach epsilon={epsilon} at delta={delta:g} with sampling rate "
            f"{sample_rate:.4g} over {steps} steps ({e}); raise --epsilon or "
            "train fewer steps / smaller batches"
        ) from None


MAX_SIGMA = 1e6


@lru_cache(maxsize=64)
def _calibrate_after(
    prior: tuple[tuple[float, float, int], ...],
    epsilon: float,
    delta: float,
    q: float,
    steps: int,
    accountant: str,
) -> float:
    # Opacus' get_noise_multiplier bisection (opacus/accountants/utils.py), run on an Opacus
    # accountant whose history starts with ``prior``: the composition is the accountant's own.
    # Cached: a run calibrates the same plan when it probes and when it trains.
    already = epsilon_from_history(prior, delta, accountant)
    if already >= epsilon:
        raise PrivacyError(
            f"the warm-up release alone spends epsilon {already:.3g} of the "
            f"target {epsilon:.3g}, leaving nothing for training; lower "
            "--warmup-share or raise --epsilon"
        )
    tolerance = max(0.005 * epsilon, 1e-4)

    def eps_at(sigma: float) -> float:
        return _epsilon((*prior, (sigma, q, steps)), delta, accountant)

    low, high, eps_high = 0.0, 10.0, eps_at(10.0)
    while eps_high > epsilon:
        high *= 2
        if high > MAX_SIGMA:
            raise PrivacyError(
                f"cannot reach epsilon={epsilon} at delta={delta:g} after the "
                f"warm-up release (it spends {already:.3g}) with sampling rate "
                f"{q:.4g} over {steps} steps; lower --warmup-share or raise "
                "--epsilon"
            )
        eps_high = eps_at(high)
    while epsilon - eps_high > tolerance:
        mid = (low + high) / 2
        eps = eps_at(mid)
        if eps < epsilon:
            high, eps_high = mid, eps
        else:
            low = mid
    return high


@dataclass
class AccountantState:
    """The accountant's history, serialisable: ``[(sigma, q, steps), ...]``."""

    accountant: str = "prv"
    history: list[tuple[float, float, int]] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return sum(int(s) for _, _, s in self.history)

    def epsilon(self, delta: float) -> float:
        return epsilon_from_history(self.history, delta, self.accountant)

    def to_json(self) -> dict:
        return {"accountant": self.accountant, "history": [list(h) for h in self.history]}

    @classmethod
    def from_json(cls, d: dict) -> "AccountantState":
        return cls(d["accountant"], [(float(a), float(b), int(c)) for a, b, c in d["history"]])


def epsilon_from_history(
    history: Iterable[tuple[float, float, int]], delta: float, accountant: str = "prv"
) -> float:
    """Epsilon spent by the DP-SGD steps in ``history``, from a fresh Opacus accountant."""
    history = _entries(history)
    return _epsilon(history, float(delta), accountant) if history else 0.0


def _entries(history: Iterable) -> tuple[tuple[float, float, int], ...]:
    return tuple((float(a), float(b), int(c)) for a, b, c in history if int(c) > 0)


@lru_cache(maxsize=256)
def _epsilon(history: tuple[tuple[float, float, int], ...], delta: float, accountant: str) -> float:
    # Cached: a run asks for the same history's epsilon at its last checkpoint, for the card and
    # for the ledger, and one PRV evaluation can take seconds.
    acc = create_accountant(accountant)
    acc.history = list(history)
    with _quiet_full_batch():
        return float(acc.get_epsilon(delta=delta))


def _quiet_full_batch():
    # Opacus' PRV evaluates log(1 - q), i.e. log(0) at q = 1 (full-batch releases such as
    # dpmerf's); numpy warns but the masked branch it feeds is never used, so the value is right.
    return np.errstate(divide="ignore")
