"""One DP-SGD training loop for methods whose whole network reads the private data (VAE, diffusion).

The loop is the GAN's, minus the generator: Poisson-sampled batches from Opacus, per-sample
clipping and noise on *every* trainable parameter, an EMA copy of the weights (post-processing,
free), checkpoints that carry the accountant's history so a resumed run keeps its spend.

Noise multiplicity (Dockhorn et al., "Differentially Private Diffusion Models", TMLR 2023): a loss
may expand each private image into ``multiplicity`` rows (e.g. K noise levels). Opacus' hooks then
compute one gradient per *row*; `merge_grad_samples` averages each image's K rows into one
per-sample gradient *before* the optimizer clips, so the clip bound C (the sensitivity) is per
image, exactly as the accountant assumes.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ..data import ImageDataset, to_unit_range
from ..errors import ConfigError
from ..privacy import dpsgd
from ..privacy.accounting import AccountantState
from .base import FitResult, TrainContext, infinite
from .progress import progress_bar

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def merge_grad_samples(module: nn.Module, batch: int, multiplicity: int) -> None:
    """Average Opacus' per-row gradients over each image's ``multiplicity`` consecutive rows.

    Rows must be laid out image-major (``x.repeat_interleave(K, 0)``). With Opacus' "mean" loss
    reduction every row's grad_sample is the gradient of that row's own loss, so the mean over K is
    the gradient of the image's loss (the mean over its K noised copies): one grad_sample per image.
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
            raise RuntimeError(f"expected {batch * multiplicity} per-row gradients, "
                               f"got {gs.shape[0]}")
        p.grad_sample = gs.view(batch, multiplicity, *gs.shape[1:]).mean(1)


@torch.no_grad()
def update_ema(model: nn.Module, ema: nn.Module, decay: float, step: int = 10**9) -> None:
    """EMA with the usual warm-up (decay <= (1 + step) / (10 + step)) so short runs are not
    dominated by the initial weights."""
    decay = min(decay, (1 + step) / (10 + step))
    for p_ema, p in zip(ema.state_dict().values(), model.state_dict().values(), strict=True):
        if p.dtype.is_floating_point and decay > 0:
            p_ema.mul_(decay).add_(p, alpha=1 - decay)
        else:
            p_ema.copy_(p)


def fit_dpsgd(model: nn.Module, ema: nn.Module, loss_fn: LossFn, data: ImageDataset,
              ctx: TrainContext, *, batch_size: int, epochs: float, lr: float, ema_decay: float,
              name: str, multiplicity: int = 1) -> FitResult:
    """Train ``model`` on ``loss_fn(model, x, y)`` (x in -1..1) with DP-SGD when ``ctx.privacy``.

    ``loss_fn`` returns the mean over ``len(x) * multiplicity`` rows laid out image-major.
    ``ema`` receives the exponential moving average of ``model``'s weights (the released weights).
    """
    from ..privacy.dpsgd import sample_rate

    device = torch.device(ctx.device)
    start = int(ctx.resume["step"]) if ctx.resume is not None else 0
    # Private batches and DP noise come from OS-entropy generators (dpsgd.make_private), never
    # from these seeds. The seeded streams (diffusion noise levels, VAE latents, the non-private
    # loader) are offset by the step reached so a resumed run does not repeat its first part.
    torch.manual_seed(ctx.seed + 1_000_003 * start)
    gen = torch.Generator().manual_seed(ctx.seed + 1_000_003 * start)
    dataset = TensorDataset(torch.from_numpy(to_unit_range(data.images)),
                            torch.from_numpy(data.labels))
    n = len(dataset)
    if batch_size > n:
        raise ConfigError(f"batch size {batch_size} exceeds the {n} training images; "
                          "lower --batch-size")
    total = max(1, int(round(epochs / sample_rate(n, batch_size))))
    model, ema = model.to(device), ema.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    resume = ctx.resume
    if resume is not None:
        model.load_state_dict(resume["model"])
        ema.load_state_dict(resume["ema"])
        opt.load_state_dict(resume["opt"])
    plan, engine, train_model = None, None, model
    if ctx.privacy is not None:
        if multiplicity > 1 and ctx.privacy.grad_sample_mode == "ew":
            raise ConfigError("noise multiplicity needs per-layer grad samples; use "
                              "--grad-sample-mode hooks or functorch (or --set multiplicity=1)")
        plan = dpsgd.plan(ctx.privacy, n, batch_size, total)
        ctx.on_plan(plan)
        acc_state = AccountantState.from_json(resume["accountant"]) if resume else None
        train_model, opt, loader, engine = dpsgd.make_private(model, opt, dataset, plan,
                                                              ctx.privacy, acc_state, generator=gen)
    else:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                            generator=gen)
    batches = infinite(loader)

    def accountant() -> AccountantState | None:
        return dpsgd.accountant_state(engine, ctx.privacy.accountant) if engine else None

    def snapshot(step: int) -> None:
        acc = accountant()
        state = {"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                 "step": step, "accountant": acc.to_json() if acc else None}
        ctx.checkpoint(step, state, acc)

    bar = progress_bar(total, start, ctx, plan, desc=f"{name} steps")
    loss_value = float("nan")
    for step in range(start, total):
        x, y = next(batches)
        opt.zero_grad(set_to_none=True)
        # A Poisson batch may be empty; the forward still runs so Opacus sees zero rows, adds its
        # noise and books the step.
        # [speed, issue 14] dpsgd.backward: the batch in chunks (bounded memory) under bk
        loss = dpsgd.backward(train_model, loss_fn, x.to(device), y.to(device))
        loss_value = loss.item() if len(x) else loss_value
        if engine is not None:
            merge_grad_samples(train_model, len(x), multiplicity)
        opt.step()
        update_ema(model, ema, ema_decay, step)
        bar.update(step + 1, loss=loss_value)
        if (step + 1) % ctx.checkpoint_every == 0 and step + 1 < total:
            snapshot(step + 1)
    bar.close()
    snapshot(total)
    acc = accountant()
    if engine is not None:
        train_model._close()
    return FitResult(total, plan, acc, {"loss": loss_value})


def ema_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).eval().requires_grad_(False)
