"""The one interface every method trains through.

A method is a class registered in ``registry.METHODS``. It is built from the data's shape and a
config dict, trains with ``fit(data, ctx)`` and draws images with ``sample(n, labels)``. The run
folder (``privsynth.run``) saves ``state_dict()`` as safetensors and the config in ``card.json``,
so every method returns the same checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np
import torch

from ..data import ImageDataset
from ..errors import ConfigError
from ..privacy import AccountantState, DPPlan, PrivacySpec


@dataclass
class TrainContext:
    """What the orchestrator (``privsynth.train``) hands a method's ``fit``.

    ``privacy`` is None for a non-private baseline. ``checkpoint(step, state, accountant)`` saves
    resumable state and books the spend so far in the ledger; ``resume`` is that state, restored.
    """

    privacy: PrivacySpec | None
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    checkpoint_every: int = 500
    checkpoint: Callable[[int, dict, AccountantState | None], None] = lambda *a: None
    on_plan: Callable[[DPPlan], None] = lambda plan: None
    resume: dict | None = None


@dataclass
class FitResult:
    """What training really did: the DP plan it ran with and the accountant's history."""

    steps: int
    dp_plan: DPPlan | None = None
    accountant: AccountantState | None = None
    metrics: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class Synthesizer(Protocol):
    name: str
    private: bool

    def fit(self, data: ImageDataset, ctx: TrainContext) -> FitResult: ...

    def sample(self, n: int, labels: np.ndarray | None = None,
               seed: int | None = None) -> np.ndarray:
        """``n`` uint8 images N x C x H x W for the given class labels (0..K-1)."""
        ...

    def state_dict(self) -> dict[str, torch.Tensor]: ...

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None: ...


def build_config(cls: type, overrides: dict[str, Any] | None) -> Any:
    """Dataclass ``cls`` with known keys overridden; unknown keys are an error naming valid ones."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for this method; valid: {sorted(names)}")
    defaults = {f.name: f.default for f in fields(cls)}
    for key, value in overrides.items():
        _check_type(key, value, defaults[key])
    return cls(**overrides)


def _check_type(key: str, value: Any, default: Any) -> None:
    """A value of the default's kind (numbers for numeric options), so `--set steps=abc` stops
    here with one line instead of deep inside training."""
    if default is None or isinstance(default, (list, tuple, dict)):
        return
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "True or False"
    elif isinstance(default, (int, float)):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        kind = "a number"
    elif isinstance(default, str):
        ok, kind = isinstance(value, str), "a string"
    else:
        return
    if not ok:
        raise ConfigError(f"option {key}={value!r} must be {kind} (default {default!r}); "
                          f"e.g. --set {key}={default!r}")


def infinite(loader):
    """Cycle a DataLoader forever (Poisson loaders draw fresh batches each pass)."""
    while True:
        yield from loader
