"""The one DP-SGD loop. Every DP-SGD method trains through it, centrally and in federation.

A method says *what* it trains (``Method`` hooks); `DPSGD` says *how*: Poisson-sampled batches,
per-sample clipping and Gaussian noise from Opacus (``privacy.dpsgd.make_private``), the plan, the
budget check before the first private step (``on_plan``), the live accountant, and checkpoints that
carry its history so a resumed run keeps its spend. ``privsynth.train`` calls `fit` for the whole
run; a federated owner (``federated/task.py``) builds a `DPSGD` each round, planned over all rounds.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data import ImageDataset, to_unit_range
from ..errors import CheckpointError, ConfigError
from ..privacy import dpsgd
from ..privacy.accounting import AccountantState, PrivacySpec
from ..privacy.dpsgd import DPPlan
from .context import FitResult, TrainContext, infinite
from .progress import progress_bar

if TYPE_CHECKING:  # the methods import this module, never the other way round
    from .base import Method

RESEED = 1_000_003  # seeded streams of a resumed segment start at seed + RESEED * step


def merge_grad_samples(module: nn.Module, batch: int, multiplicity: int) -> None:
    """Noise multiplicity (Dockhorn et al., TMLR 2023): average Opacus' per-row gradients over
    each image's ``multiplicity`` consecutive rows (image-major: ``x.repeat_interleave(K, 0)``)
    *before* the optimizer clips, so the clip bound C (the sensitivity) is per image, as the
    accountant assumes. With Opacus' "mean" reduction a row's grad_sample is its own loss'
    gradient, so their mean is the gradient of the image's loss (the mean over its K copies).
    """
    if multiplicity == 1:
        return
    for p in module.parameters():
        gs = getattr(p, "grad_sample", None)
        if gs is None:
            continue
        if isinstance(gs, list):
            gs = torch.cat(gs, 0)
        if gs.shape[0] != batch * multiplicity:
            raise RuntimeError(
                f"expected {batch * multiplicity} per-row gradients, got {gs.shape[0]}"
            )
        p.grad_sample = gs.view(batch, multiplicity, *gs.shape[1:]).mean(1)


@torch.no_grad()
def update_ema(model: nn.Module, ema: nn.Module, decay: float, step: int | None = None) -> None:
    """``ema <- decay * ema + (1 - decay) * model`` (post-processing, free); decay 0 copies.

    With ``step`` the usual warm-up caps the decay at (1 + step) / (10 + step), so short runs are
    not dominated by the initial weights."""
    if step is not None:
        decay = min(decay, (1 + step) / (10 + step))
    for p_ema, p in zip(ema.state_dict().values(), model.state_dict().values(), strict=True):
        if p.dtype.is_floating_point and decay > 0:
            p_ema.mul_(decay).add_(p, alpha=1 - decay)
        else:
            p_ema.copy_(p)


def ema_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).eval().requires_grad_(False)


class DPSGD:
    """One method's private module under DP-SGD (plain SGD when ``privacy`` is None).

    ``planned_steps``: the steps the noise is calibrated for (a federation: rounds x local steps;
    default the method's `total_steps`). ``history``: the accountant's history so far (a resumed
    run, a later federated round); ``sigma``: a noise multiplier already calibrated for the same
    plan (skips the calibration search). ``resume``: a checkpoint written by this engine.
    ``on_plan(plan)`` runs once the plan is fixed and before any private step: the budget check.
    """

    def __init__(
        self,
        method: Method,
        data: ImageDataset,
        privacy: PrivacySpec | None,
        *,
        seed: int = 0,
        device: str = "cpu",
        planned_steps: int | None = None,
        history: AccountantState | None = None,
        sigma: float | None = None,
        resume: dict | None = None,
        on_plan: Callable[[DPPlan], None] = lambda plan: None,
    ):
        self.method, self.privacy = method, privacy
        self.device = torch.device(device)
        self.step = int(resume["step"]) if resume is not None else 0
        # Private batches and DP noise come from OS-entropy generators (dpsgd.make_private), never
        # from these seeds. The seeded streams (latents, diffusion noise levels, the non-private
        # loader) start where a resumed segment stopped, so nothing is repeated.
        torch.manual_seed(seed + RESEED * self.step)
        self.loader_rng = torch.Generator().manual_seed(seed + RESEED * self.step)
        dataset = dpsgd.TensorBatches(
            torch.from_numpy(to_unit_range(data.images)), torch.from_numpy(data.labels)
        )
        n = self.n_private = len(dataset)
        batch = int(method.config.batch_size)
        if batch > n:
            raise ConfigError(
                f"batch size {batch} exceeds the {n} training images; lower --batch-size"
            )
        # steps = epochs / q with q from the published size (N_hat) in a private run
        shown_n = privacy.public_size(n) if privacy is not None else n
        self.total = planned_steps if planned_steps is not None else method.total_steps(shown_n)
        module = self.module = method.private_module().to(self.device).train()
        for public in method.public_modules():
            public.to(self.device).train()
        opt = self.optimizer = method.private_optimizer(module)
        if resume is not None:
            module.load_state_dict(resume["private"])
            opt.load_state_dict(resume["opt"])
            method.load_train_state(resume["method"])
            if "rng" in resume:  # continue the seeded streams exactly where they stopped
                torch.set_rng_state(resume["rng"]["torch"])
                self.loader_rng.set_state(resume["rng"]["loader"])
            if privacy is not None:  # the lineage so far: the warm-up release, then the steps
                lead = sum(int(h[2]) for h in privacy.prior)
                history = resumed_history(resume, self.step + lead)
        self.plan: DPPlan | None = None
        self.engine = None
        if privacy is not None:
            method.check_privacy(privacy)
            if sigma:
                privacy = privacy.with_noise(sigma)  # same (epsilon, delta, q, steps): same sigma
            self.plan = dpsgd.plan(privacy, n, batch, self.total)
            self.plan.target_epsilon = self.privacy.epsilon
            on_plan(self.plan)
            self.trained, self.optimizer, loader, self.engine = dpsgd.make_private(
                module, opt, dataset, self.plan, privacy, history
            )
        else:
            self.trained = module
            loader = DataLoader(
                dataset,
                batch_size=batch,
                shuffle=True,
                drop_last=True,
                generator=self.loader_rng,
                collate_fn=dpsgd.TensorBatches.collate,
            )
        for public in method.public_modules():
            dpsgd.share_across_processes(public)  # multi-process runs; else a no-op
        self.batches = infinite(loader)
        self.metrics: dict[str, float] = {method.loss_name: float("nan")}

    # --- the loop -------------------------------------------------------------------------------
    def run(
        self,
        until: int,
        *,
        every: int = 0,
        checkpoint: Callable[[int], None] | None = None,
        bar=None,
    ) -> dict[str, float]:
        """Private steps ``self.step .. until - 1``; ``checkpoint(step)`` every ``every`` steps.

        Losses are computed on private batches without noise: for the owner's eyes only."""
        method, loss_name = self.method, self.method.loss_name
        for step in range(self.step, until):
            x, y = next(self.batches)
            x, y = x.to(self.device), y.to(self.device)
            self.optimizer.zero_grad(set_to_none=True)
            # A Poisson batch may be empty; the forward still runs so Opacus sees zero rows, adds
            # its noise and books the step. dpsgd.backward: the batch in chunks under bk.
            loss = dpsgd.backward(self.trained, method.private_loss, x, y, method.backward_chunk)
            if len(x):
                self.metrics[loss_name] = loss.item()
            if self.engine is not None:
                merge_grad_samples(self.trained, len(x), method.multiplicity)
            self.optimizer.step()
            self.step = step + 1
            self.metrics.update(method.after_step(step, step + 1 == until, self.trained))
            if bar is not None:
                bar.update(step + 1, **self.metrics)
            if checkpoint is not None and every and self.step % every == 0 and self.step < until:
                checkpoint(self.step)
        return dict(self.metrics)

    # --- state ----------------------------------------------------------------------------------
    def accountant(self) -> AccountantState | None:
        """The live accountant's history (None without DP)."""
        if self.engine is None:
            return None
        return dpsgd.accountant_state(self.engine, self.privacy.accountant)

    def state(self) -> dict:
        """A checkpoint (tensors, numbers, strings: loads with ``weights_only=True``)."""
        acc = self.accountant()
        rng = {"torch": torch.get_rng_state(), "loader": self.loader_rng.get_state()}
        return {
            "step": self.step,
            "private": self.module.state_dict(),
            "opt": self.optimizer.state_dict(),
            "method": self.method.train_state(),
            "rng": rng,
            "accountant": acc.to_json() if acc else None,
        }

    def close(self) -> AccountantState | None:
        """Remove Opacus' hooks (the method's private module is the bare one again)."""
        acc = self.accountant()
        if self.engine is not None:
            self.trained._close()
            self.engine = None
        return acc


def fit(method: Method, data: ImageDataset, ctx: TrainContext) -> FitResult:
    """A whole central run of a DP-SGD method: plan, budget check, steps, checkpoints."""
    resume = ctx.resume
    if resume is not None and "private" not in resume:
        raise ConfigError(
            "the run's train_state.pt was written by an older privsynth; delete it "
            "to restart from step 0, or pass --overwrite"
        )
    run = DPSGD(
        method,
        data,
        ctx.privacy,
        seed=ctx.seed,
        device=ctx.device,
        resume=resume,
        on_plan=ctx.on_plan,
    )

    def checkpoint(step: int) -> None:
        ctx.checkpoint(step, run.state(), run.accountant())

    bar = progress_bar(run.total, run.step, ctx, run.plan, desc=f"{method.name} {method.step_name}")
    metrics = run.run(run.total, every=ctx.checkpoint_every, checkpoint=checkpoint, bar=bar)
    bar.close()
    checkpoint(run.total)
    acc = run.close()
    return FitResult(run.total, run.plan, acc, metrics)


def resumed_history(resume: dict, steps: int) -> AccountantState:
    """The accountant history a private checkpoint carries, which must cover its ``steps``
    (the warm-up release included). A checkpoint without it, or with a history of another
    length, is refused: resuming on it would start a fresh accountant and understate the
    run's epsilon on its card and in the ledger."""
    try:
        acc = AccountantState.from_json(resume["accountant"])
    except (KeyError, TypeError, ValueError):
        acc = None
    if acc is None or acc.steps != steps:
        found = "no accountant history" if acc is None else f"an accountant history of {acc.steps}"
        raise CheckpointError(
            f"the run's train_state.pt holds {found} for a checkpoint of {steps} private "
            "step(s): resuming would understate its privacy spend; pass --overwrite to train "
            "the run again (what it spent stays booked in the ledger)"
        )
    return acc
