"""``--method auto``: the method and its settings, chosen from public facts only.

What the choice reads: the image shape and channels (format inputs the user states), the
released training-set size N_hat (a DP release; never the exact count), the target epsilon and
the user's time limit. Nothing else about the private images. The rule is a table of branches
fitted on the benchmark suite's validation rows (bench/results/suite/validation/; the table it
reads: ``python bench/auto_rule.py``); the cost model turns a time limit into a cheaper method or
fewer steps, or a refusal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import ConfigError
from .defaults import SMALL  # the size the per-method defaults switch at: the rule's size bound

AUTO = "auto"

# LOW_EPS sits between the two epsilons the suite scores (1 and 10), near their geometric mean.
LOW_EPS = 3.0

# (image kind, size class, epsilon class) -> (methods best first, why). Each row cites the
# validation rows it reads (`python bench/auto_rule.py` prints them: LeNet TSTR on the
# validation split, mean over seeds); grey "small-n" is read on digits (8x8, 1 257 training
# images), "large-n" on mnist10k (28x28, 7 000), colour on cifar5k (32x32x3, 3 585). The later
# methods are the fallbacks under --time-limit.
RULE: dict[tuple[str, str, str], tuple[tuple[str, ...], str]] = {
    ("grey", "small-n", "high-eps"): (
        ("dpmerf", "dpkernel", "dpvae", "dpgan"),
        "best validation TSTR on digits at eps 10: dpmerf 98.6%, dpkernel 96.8%, dpvae 85.7%, "
        "dpgan 84.2% (3 seeds each; protocol 3)",
    ),
    ("grey", "small-n", "low-eps"): (
        ("dpmerf", "dpkernel", "dpvae", "dpgan"),
        "best validation TSTR on digits at eps 1: dpmerf 91.7% (3 seeds, trained twice; stopped "
        "at the release's noise floor, sampled through a contrast curve), dpkernel 87.8%, dpvae "
        "55.2%, dpgan 24.1% (protocol 3)",
    ),
    ("grey", "large-n", "high-eps"): (
        ("dpmerf", "dpgan"),
        "validation TSTR on MNIST-10k at eps 10: dpmerf 97.3%, dpgan 95.6% (2 seeds; protocol 3); "
        "dpmepf "
        "90.5% needs a public feature network, so auto never picks it",
    ),
    ("grey", "large-n", "low-eps"): (
        ("dpmerf", "dpgan"),
        "validation TSTR on MNIST-10k at eps 1: dpmerf 91.6%, dpgan 75.3% (protocol 3)",
    ),
    # Colour rows so far: CIFAR-10-5k, one seed, eps 10 and 1 (dpgan with its colour default,
    # reflect padding). At eps 10 dpgan's set sits closer to the real one in the fidelity space
    # (FD 1.19 against 3.26, coverage 0.51 against 0.08) but trains a worse classifier, and TSTR
    # is what the rule ranks by.
    ("colour", "any", "any"): (
        ("dpmerf", "dpgan"),
        "validation TSTR on CIFAR-10-5k at eps 10: dpmerf 36.8%, dpgan 28.6% (protocol 3, TRTR "
        "60.0%); at eps 1 dpmerf 27.6%, dpgan 23.4%",
    ),
}
# Scored in the suite but never chosen: they need an input only the user can give (dpmepf: a
# feature network trained on public data, --features).
NEEDS_INPUT = ("dpmepf",)

# Before N_hat is released only a provisional method exists (it builds the run's request and is
# replaced once N_hat is out).
PROVISIONAL = (("dpmerf",), "provisional until N_hat is released")

# The last resort under a time limit: the cheapest method per image (its generator steps are
# post-processing and do not grow with N_hat).
CHEAPEST = "dpmerf"

# Cost model: seconds of one CPU thread per unit of work at 8x8 (64 values per image) and at 28x28
# (784), linear in the values per image (C x H x W) between and beyond. One-shot methods: per
# generator step (the release over N_hat images is a small fixed part); DP-SGD methods: per image
# per epoch. Where the suite has validation rows (`python bench/auto_rule.py`: the cells' CPU
# seconds, one thread, mean over the rows; their wall time on the shared machine ran up to 9x
# longer under load): all of 8x8 but dpdiffusion, and dpmerf at 28x28. Else wall times of
# one-thread runs at lower load: dpkernel 28x28 bench/results/sweep_mnist10k_kernel.json (642-722 s
# / 4 000 steps); dpvae 28x28 dpvae_epochs/utility_eps2_e40.json (1 299 s / 8 000 images / 40
# epochs); dpgan 28x28 quality_gan_mnist10k_newgen.json (1 516 s / 8 000 / 60 epochs; its MERF
# warm-up on large data is not counted); dpdiffusion 8x8 sweep_digits.json (240 s / 1 438 / 20
# epochs), its 28x28 figure never measured (hours on one core, docs/zoo.md): scaled by dpvae's
# growth from 8x8 to 28x28.
COST: dict[str, tuple[str, float, float]] = {
    "dpmerf": ("step", 0.023, 0.12),
    "dpkernel": ("step", 0.025, 0.17),
    "dpvae": ("image-epoch", 5.8e-4, 4.1e-3),
    "dpgan": ("image-epoch", 3.0e-4, 3.2e-3),
    "dpdiffusion": ("image-epoch", 8.3e-3, 5.9e-2),
}
# The fewest steps / epochs a time limit may cut a method to before the next method is tried.
MIN_WORK = {"steps": 500, "epochs": 5.0}


@dataclass(frozen=True)
class Choice:
    """What auto picked: ``method``, the settings it sets (over the method's defaults for N_hat
    and epsilon; the user's own settings still win) and why, in plain sentences."""

    method: str
    config_overrides: dict = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "requested": AUTO,
            "method": self.method,
            "config": dict(self.config_overrides),
            "reasons": list(self.reasons),
        }

    @classmethod
    def from_json(cls, data: dict) -> "Choice":
        return cls(data["method"], dict(data.get("config") or {}), list(data.get("reasons") or []))


def branch(channels: int, n_hat: float | None, epsilon: float) -> tuple[str, str, str] | None:
    """The rule's key for these public facts (None before N_hat: provisional)."""
    if channels != 1:
        return "colour", "any", "any"
    if n_hat is None:
        return None
    size = "small-n" if n_hat < SMALL else "large-n"
    return "grey", size, "low-eps" if epsilon < LOW_EPS else "high-eps"


def estimate_seconds(method: str, values: int, n_hat: float, work: float) -> float:
    """CPU seconds for ``work`` steps (one-shot) or epochs (DP-SGD) of ``method`` on ``n_hat``
    images of ``values`` numbers each (C x H x W)."""
    unit, at64, at784 = COST[method]
    per_unit = max(at64, at64 + (at784 - at64) * (values - 64) / (784 - 64))
    return per_unit * work * (n_hat if unit == "image-epoch" else 1.0)


def choose(
    shape: tuple[int, int],
    channels: int,
    n_hat: float | None,
    epsilon: float,
    time_limit_min: float | None = None,
    device: str = "cpu",
) -> Choice:
    """The method for images of ``shape`` (H, W) and ``channels``, N_hat released images (None:
    not released yet; the choice is then provisional), the target ``epsilon`` and an optional
    time limit in minutes. Raises `ConfigError` (one line) when nothing fits the limit."""
    from .defaults import recommended_config

    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ConfigError(
            f"--method auto chooses by --epsilon, got {epsilon}; give a finite epsilon > 0, "
            "or name the method (--method gan|vae|diffusion without DP)"
        )
    key = branch(channels, n_hat, epsilon)
    ranked, why = RULE[key] if key else PROVISIONAL
    size = "N_hat unknown" if n_hat is None else f"N_hat {n_hat:g}"
    reasons = [
        f"{channels}x{shape[0]}x{shape[1]} images, {size}, epsilon {epsilon:g}: {ranked[0]} ({why})"
    ]
    if time_limit_min is None:
        return Choice(ranked[0], {}, reasons)
    values = channels * shape[0] * shape[1]
    budget = 60.0 * time_limit_min
    # the cheapest method's steps do not grow with N_hat: refused before the size release
    floor = estimate_seconds(CHEAPEST, values, 1, MIN_WORK["steps"])
    if floor > budget:
        raise ConfigError(
            f"--time-limit {time_limit_min:g} min: no method fits ({CHEAPEST} at "
            f"{MIN_WORK['steps']} steps needs about {floor / 60:.2g} min for {shape[0]}x"
            f"{shape[1]}x{channels} images); raise --time-limit to at least "
            f"{math.ceil(floor / 6) / 10:g}"
        )
    if n_hat is None:
        return Choice(ranked[0], {}, reasons)
    where = "on this CPU" if device == "cpu" else f"on {device} (CPU estimate: an upper bound)"
    for method in [*ranked, *([CHEAPEST] if CHEAPEST not in ranked else [])]:
        knob = "epochs" if COST[method][0] == "image-epoch" else "steps"
        full = recommended_config(method, int(n_hat), epsilon)[knob]
        need = estimate_seconds(method, values, n_hat, full)
        if need <= budget:
            reasons.append(
                f"{method} at its default {knob} ({full:g}) fits --time-limit "
                f"{time_limit_min:g} min (about {need / 60:.1f} min {where})"
            )
            return Choice(method, {}, reasons)
        fits = full * budget / need
        fits = int(fits) if knob == "steps" else math.floor(fits * 10) / 10
        if fits >= MIN_WORK[knob]:
            reasons.append(
                f"{method} needs about {need / 60:.1f} min {where} at its default {knob} "
                f"({full:g}); {fits:g} {knob} fit --time-limit {time_limit_min:g} min"
            )
            return Choice(method, {knob: fits}, reasons)
        reasons.append(
            f"{method} needs about {need / 60:.1f} min {where} even at {MIN_WORK[knob]:g} {knob}"
        )
    raise AssertionError("unreachable: the cheapest method at its fewest steps fits")
