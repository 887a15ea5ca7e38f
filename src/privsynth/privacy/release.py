"""`Release`: one noise draw on the private data, the one value every producer returns.

A run's privacy is the list of its releases (size release, warm-up, one-shot embedding, DP-SGD):
the accounted ones compose in ONE Opacus accountant over their concatenated ``history``; a
pure-DP count release (OpenDP's Laplace) states its own ``(epsilon, delta)``, added by basic
composition. "No DP" is the empty list.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Release:
    """One noisy release. ``sigma``: the noise multiplier (noise std / ``sensitivity``, the L2
    sensitivity: 1 for a count, C for a clipped sum); ``q`` the sampling rate; ``steps`` the
    draws. ``epsilon``/``delta`` only outside the accountant (a calibrated count release).
    ``dp_count``: the training-set size as the release has it (post-processing), if published."""

    name: str
    mechanism: str
    sigma: float
    q: float = 1.0
    steps: int = 1
    sensitivity: float = 1.0
    epsilon: float | None = None
    delta: float | None = None
    dp_count: float | None = None
    how: str | None = None  # how ``dp_count`` follows from the release (the card says it)

    @property
    def accounted(self) -> bool:
        """Composed in the run's Opacus accountant (a Gaussian release), not alongside it."""
        return self.epsilon is None

    @property
    def history(self) -> list[tuple[float, float, int]]:
        """The accountant triples ``(sigma, q, steps)`` of this release (none outside it)."""
        return [(float(self.sigma), float(self.q), int(self.steps))] if self.accounted else []

    def with_count(self, dp_count: float, how: str) -> "Release":
        return replace(self, dp_count=dp_count, how=how)

    def card(self) -> dict:
        """The JSON dict a card stores for this release."""
        out = {
            "name": self.name,
            "mechanism": self.mechanism,
            "sigma": self.sigma,
            "q": self.q,
            "steps": self.steps,
            "sensitivity": self.sensitivity,
            "history": [list(h) for h in self.history],
        }
        if not self.accounted:
            out.update(epsilon=self.epsilon, delta=self.delta)
        if self.dp_count is not None:
            out.update(dp_count=self.dp_count, how=self.how)
        return out


def gaussian(name: str, sigma: float, sensitivity: float = 1.0, q: float = 1.0, steps: int = 1):
    """An accounted Gaussian release: ``steps`` draws at noise std ``sigma * sensitivity``."""
    return Release(name, "gaussian", float(sigma), float(q), int(steps), float(sensitivity))


def outside(releases) -> tuple[float, float]:
    """``(epsilon, delta)`` of the releases outside the accountant (basic composition)."""
    rest = [r for r in releases if not r.accounted]
    return sum(r.epsilon for r in rest), sum(r.delta for r in rest)
