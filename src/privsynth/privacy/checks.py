"""Checks on the privacy flags of a run, before anything touches the data.

- A privacy flag given to a run that trains without DP is an error naming the DP twin: silently
  ignoring ``--epsilon 10`` would let a user believe a non-private model is private.
- ``delta >= 1/n`` is refused (unless forced): a mechanism that publishes one of the n private
  images at random, in the clear, satisfies (0, 1/n)-DP, so such a delta allows exposing someone.
- Small n gets a warning: at the default delta = 1/(10 n), the chance that some image is exposed
  outright (n delta) stays 1/10 whatever n is, but with few images delta itself is large.
"""

from __future__ import annotations

import warnings

from ..errors import ConfigError

DEFAULT_EPSILON = 10.0
# Below this many private images, delta = 1/(10 n) exceeds 1e-3: warn that the guarantee is weak.
SMALL_N = 100


class PrivacyWarning(UserWarning):
    """The run is allowed, but its guarantee is weak or vacuous; the card records why."""


def refuse_flags_without_dp(
    method: str, no_dp: bool, given: dict[str, bool], twin: str | None = None
) -> None:
    """``given``: flag name -> whether the user set it. Raise if any is set on a non-DP run.
    ``twin``: the DP method whose non-private twin ``method`` is (``gan`` -> ``dpgan``)."""
    flags = [flag for flag, set_ in given.items() if set_]
    if not flags:
        return
    named = ", ".join(flags)
    if no_dp:
        raise ConfigError(
            f"--no-dp trains without differential privacy, so {named} would be "
            f"ignored; drop {named} (or drop --no-dp to train with DP)"
        )
    fix = (
        f"use --method {twin} (its DP twin)"
        if twin
        else "use a DP method (privsynth train --help lists them)"
    )
    raise ConfigError(
        f"--method {method} trains without differential privacy, so {named} would "
        f"be ignored; {fix}, or drop {named}"
    )


def check_delta(
    delta: float, n: int, *, given: bool, force: bool, shown_n: int | None = None
) -> list[str]:
    """Refuse ``delta >= 1/n`` unless forced; return the warnings the card should carry. Only
    the owner's copies name ``n`` (no published field holds the exact size: docs/privacy.md);
    whether the card has the small-n note follows ``shown_n`` (the released N_hat)."""
    shown = n if shown_n is None else shown_n
    notes = []  # (the owner's warning, the card's note)
    if delta * n >= 1:
        what = f"--delta {delta:g}" if given else f"delta {delta:g}"
        if not force:
            raise ConfigError(
                f"{what} is >= 1/n = 1/{n} (n = private training images): a "
                "mechanism that publishes a random training image in the clear "
                "meets that guarantee; use a delta well below 1/n (the default is "
                "1/(10 n)) or pass --force"
            )
        why = (
            ": the guarantee is vacuous (publishing a random training image in the clear "
            "would satisfy it); forced"
        )
        notes.append((f"delta {delta:g} >= 1/n = 1/{n}{why}", f"delta {delta:g} >= 1/n{why}"))
    elif n < SMALL_N or delta > 1e-3:
        why = (
            "delta above 1e-3 permits a noticeable chance of exposing an image outright, so "
            "this (epsilon, delta) guarantee is weak; use more images or a smaller --delta"
        )
        published = shown < SMALL_N or delta > 1e-3
        notes.append(
            (
                f"only {n} private images with delta {delta:.2g}: each image is "
                f"{1 / n:.1%} of the data and {why}",
                f"few private images (under {SMALL_N}) or delta {delta:.2g}: {why}"
                if published
                else None,
            )
        )
    for warning, _ in notes:
        warnings.warn(warning, PrivacyWarning, stacklevel=3)
    return [card for _, card in notes if card is not None]


def default_epsilon(epsilon: float | None, noise_multiplier: float | None) -> float | None:
    """The target a private run calibrates to: the user's, none with a fixed sigma, else 10."""
    if noise_multiplier is not None:
        return None
    return DEFAULT_EPSILON if epsilon is None else epsilon
