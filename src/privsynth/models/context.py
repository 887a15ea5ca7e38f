"""What a method's ``fit`` is handed (`TrainContext`) and returns (`FitResult`): the types the
orchestrator, the DP-SGD engine and every method share, in a module that imports none of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..privacy import AccountantState, DPPlan, PrivacySpec
from ..privacy.release import Release


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
    # A one-shot release's noise multiplier (`OneShotMethod.post_process` sets it; None without
    # DP): post-processing may read the noise's public scale (dpmerf's `stop_at_noise`).
    release_sigma: float | None = None

    @classmethod
    def of(cls, options, privacy: PrivacySpec | None, **hooks) -> TrainContext:
        """``privacy`` with the seed, device, progress and checkpoint interval of ``options`` (a
        request's training options or another context) and the given hooks (``checkpoint``...)."""
        kept = ("seed", "device", "progress", "checkpoint_every")
        return cls(privacy, **{k: getattr(options, k) for k in kept}, **hooks)


@dataclass
class FitResult:
    """What training really did: the DP plan it ran with and the accountant's history."""

    steps: int
    dp_plan: DPPlan | None = None
    accountant: AccountantState | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    # The training-set size as a DP release drew it (dpmerf's count feature), for the card; None
    # when the method releases no count. Never the exact size (add/remove-one: see privacy.md).
    dp_count: float | None = None
    # A one-shot method's noise draw (with ``dp_count``), for the card's privacy section; None
    # for DP-SGD (its steps are the accountant's history) and without DP.
    release: Release | None = None


def infinite(loader):
    """Cycle a DataLoader forever (Poisson loaders draw fresh batches each pass)."""
    while True:
        yield from loader
