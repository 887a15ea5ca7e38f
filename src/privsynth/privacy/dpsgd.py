"""DP-SGD on Opacus: Poisson sampling, per-sample clipping to C, Gaussian noise sigma * C.

``make_private`` returns Opacus' own (module, optimizer, data_loader) triple plus its
`PrivacyEngine`, whose accountant is saved. Grad-sample modes: ``bk`` (the default; Book-Keeping,
privacy/bookkeeping.py, no per-sample gradient tensors) and Opacus' ``hooks``, ``functorch``,
``ew``: all give the same clipped sum (bench/speed_dp.py checks each against a per-example
reference); in every mode Opacus draws the Poisson batches, adds the noise and accounts.
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass

import torch
from opacus import PrivacyEngine
from opacus.data_loader import DPDataLoader
from opacus.distributed import DifferentiallyPrivateDistributedDataParallel as DPDDP
from opacus.grad_sample import AbstractGradSampleModule
from opacus.grad_sample import grad_sample_module as _gsm
from opacus.optimizers import (
    DistributedDPOptimizerFastGradientClipping,
    DPOptimizerFastGradientClipping,
)
from opacus.validators import ModuleValidator
from torch.utils.data import Dataset, TensorDataset

from ..errors import ConfigError
from .accounting import AccountantState, PrivacySpec, calibrate_noise
from .bookkeeping import BookKeeping

GRAD_SAMPLE_MODES = ("bk", "hooks", "functorch", "ew")


def _store_grad_sample(
    *, param: torch.Tensor, grad_sample: torch.Tensor, max_batch_len: int
) -> None:
    """Opacus' ``create_or_accumulate_grad_sample`` without its zero-fill + copy (a quarter of
    a 28x28 DP discriminator step on CPU) when the batch fills the buffer: the fresh per-sample
    tensor *is* that buffer. Tied parameters and shorter batches go to Opacus' own function."""
    if (
        param.requires_grad
        and not hasattr(param, "_current_grad_sample")
        and grad_sample.shape[0] == max_batch_len
    ):
        param._current_grad_sample = grad_sample
    else:
        _opacus_store(param=param, grad_sample=grad_sample, max_batch_len=max_batch_len)


_opacus_store = _gsm.create_or_accumulate_grad_sample


def use_fast_grad_store() -> None:
    """Route Opacus' per-sample gradient store through `_store_grad_sample`; called by
    `make_private`, not on import (importing privsynth leaves Opacus as it is)."""
    _gsm.create_or_accumulate_grad_sample = _store_grad_sample


class TensorBatches(TensorDataset):
    """A TensorDataset indexed one whole (Poisson-sampled) batch at a time, with
    ``collate_fn=TensorBatches.collate``: per-row indexing costs ~5 ms per 256-image batch."""

    def __getitems__(self, indices):
        idx = torch.as_tensor(indices, dtype=torch.long)
        return tuple(t[idx] for t in self.tensors)

    @staticmethod
    def collate(batch):
        return list(batch)


@dataclass
class DPPlan:
    """The numbers DP-SGD runs with, fixed before training starts."""

    noise_multiplier: float
    batch_size: int  # the loader's nominal batch size B; q = min(1, B / N_hat)
    sample_rate: float
    steps: int
    delta: float
    target_epsilon: float | None

    n_private: int = 0

    @property
    def expected_batch_size(self) -> float:
        return self.sample_rate * self.n_private

    def to_json(self) -> dict:
        return dict(self.__dict__)


def sample_rate(n_published: int, expected_batch_size: int) -> float:
    """q = min(1, B / N) for N the *published* size (a private run's N_hat, the size release):
    Opacus' Poisson loader is built with this q (`make_private`), so the accountant sees it."""
    return min(1.0, expected_batch_size / n_published)


def plan(spec: PrivacySpec, n_private: int, expected_batch_size: int, steps: int) -> DPPlan:
    """Fix sigma: calibrated with Opacus for (epsilon, delta, q, steps), or the user's own."""
    if expected_batch_size > n_private:
        raise ConfigError(
            f"batch size {expected_batch_size} exceeds the {n_private} training "
            "images; lower --batch-size"
        )
    q = sample_rate(spec.public_size(n_private), expected_batch_size)
    delta = spec.resolved_delta(n_private)
    if spec.noise_multiplier is not None:
        sigma = spec.noise_multiplier
    else:
        assert spec.epsilon is not None
        sigma = calibrate_noise(spec.epsilon, delta, q, steps, spec.accountant, spec.prior)
    return DPPlan(sigma, expected_batch_size, q, steps, delta, spec.epsilon, n_private)


def make_private(
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    dataset: Dataset,
    dp_plan: DPPlan,
    spec: PrivacySpec,
    state: AccountantState | None = None,
    generator: torch.Generator | None = None,
):
    """Wrap with Opacus: ``(module, optimizer, data_loader, engine)``, Poisson batches at q. The
    accountant starts from a restored ``state`` (resuming never resets the budget), else from
    ``spec.prior`` (releases before DP-SGD). Batches and noise come from generators seeded from
    the OS entropy, never from ``--seed`` (it is on the card; the guarantee assumes they are
    unpredictable): ``generator`` (what non-private loaders use) is ignored, and a resumed run
    replays no batch or noise of its first segment."""
    del generator
    device = next(module.parameters()).device
    if spec.grad_sample_mode not in GRAD_SAMPLE_MODES:
        raise ConfigError(
            f"grad-sample mode '{spec.grad_sample_mode}' unknown; choose one of {GRAD_SAMPLE_MODES}"
        )
    if errors := ModuleValidator.validate(module, strict=False):
        raise ConfigError(f"model is not DP-compatible: {errors[0]}; use GroupNorm, not BatchNorm")
    engine = PrivacyEngine(accountant=spec.accountant, secure_mode=False)
    module, world = _distribute(module, dp_plan)
    q = dp_plan.sample_rate
    # Opacus' Poisson loader at the plan's q (B / N_hat: from_data_loader would take
    # 1 / ceil(N / B), from the exact N).
    loader = DPDataLoader(
        dataset,
        sample_rate=q,
        collate_fn=TensorBatches.collate if isinstance(dataset, TensorBatches) else None,
        generator=private_generator("cpu"),
        distributed=world > 1,
    )
    # The optimizer divides the noisy sum by q * N_hat (= B while q < 1): a public constant,
    # where Opacus' default q * N would scale the released model by the exact N.
    expected_batch_size = q * spec.public_size(len(dataset)) / world
    if spec.grad_sample_mode == "bk":
        # Opacus' optimizer for a .grad that holds the clipped sum already (it pairs it with its
        # ghost clipping); each process sums its own shard, the distributed one averages them
        optimizer_class = (
            DistributedDPOptimizerFastGradientClipping
            if world > 1
            else DPOptimizerFastGradientClipping
        )
        optimizer = optimizer_class(
            optimizer,
            noise_multiplier=dp_plan.noise_multiplier,
            max_grad_norm=spec.max_grad_norm,
            expected_batch_size=expected_batch_size,
            loss_reduction="mean",
            generator=private_generator(device),
        )
        module = BookKeeping(module, spec.max_grad_norm)
    else:
        use_fast_grad_store()
        module, optimizer, loader = engine.make_private(
            module=module,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=dp_plan.noise_multiplier,
            max_grad_norm=spec.max_grad_norm,
            poisson_sampling=False,  # the loader above already is Opacus' Poisson loader
            grad_sample_mode=spec.grad_sample_mode,
            noise_generator=private_generator(device),
        )
        module.forbid_grad_accumulation()  # as make_private does with poisson_sampling=True
        # make_private takes q = 1 / len(loader): put the plan's q and batch constant back
        optimizer.expected_batch_size = expected_batch_size
    optimizer.attach_step_hook(engine.accountant.get_optimizer_hook_fn(sample_rate=q))
    # The accountant must see exactly the q the noise was calibrated for, and the loader draw at it.
    assert loader.sample_rate == dp_plan.sample_rate == q
    if state is not None:
        engine.accountant.history = list(state.history)
    elif spec.prior:  # a warm-up release came first: one accountant composes both exactly
        engine.accountant.history = [tuple(h) for h in spec.prior]
    return module, optimizer, loader, engine


# One entry per make_private in a multi-process run (distributed.py reports methods that never
# call it, e.g. dpmerf, as gaining nothing from --nproc).
DISTRIBUTED_STEPS: list[int] = []
# Opacus' distributed sampler skips an empty local batch (draws again), which the Poisson analysis
# does not cover. Over the whole run (T steps, W processes) an empty local batch happens with
# probability at most T * W * p (union bound, p = one process' chance at one step); the run is
# allowed only where that is <= delta / EMPTY_BATCH_DELTA_SHARE, and the card adds it to delta.
EMPTY_BATCH_DELTA_SHARE = 100


def empty_local_batch_delta(dp_plan: DPPlan, world: int) -> float:
    """A bound on the chance that any process' Poisson batch is empty at any step of the run:
    ``T * W * (1 - q)^(n // W)`` (the smallest shard has n // W images); 0 in one process."""
    if world <= 1:
        return 0.0
    p_empty = (1 - dp_plan.sample_rate) ** (dp_plan.n_private // world)
    return float(dp_plan.steps * world * p_empty)


def check_empty_local_batches(dp_plan: DPPlan, world: int) -> float:
    """Refuse a multi-process plan whose empty-local-batch bound exceeds delta / 100; return
    the bound (the delta it adds)."""
    bound = empty_local_batch_delta(dp_plan, world)
    if bound > dp_plan.delta / EMPTY_BATCH_DELTA_SHARE:
        local = dp_plan.expected_batch_size / world
        raise ConfigError(
            f"{world} processes leave an expected {local:.1f} images per process and step: "
            f"over {dp_plan.steps} steps an empty local batch (which the Poisson analysis "
            f"does not cover) has a chance up to {bound:.1e}, above delta/"
            f"{EMPTY_BATCH_DELTA_SHARE} = {dp_plan.delta / EMPTY_BATCH_DELTA_SHARE:.1e}; "
            "raise --batch-size or use fewer processes (--nproc)"
        )
    return bound


def process_count() -> int:
    """W, the processes sharing this DP-SGD run (1 outside a process group)."""
    return _rank_world()[1]


def run_empty_batch_delta(dp_plan: DPPlan | None) -> float:
    """The delta a process group adds to a run for its empty local batches (0 in one process):
    the allowance delta / 100 that `check_empty_local_batches` holds the bound under, not the
    bound itself, which is a function of the exact number of private images (not published)."""
    if dp_plan is None or _rank_world()[1] <= 1:
        return 0.0
    return dp_plan.delta / EMPTY_BATCH_DELTA_SHARE


def _distribute(module: torch.nn.Module, dp_plan: DPPlan) -> tuple[torch.nn.Module, int]:
    """In a process group of N > 1: Opacus' DPDDP around ``module`` (weights broadcast from
    process 0; with it Opacus picks its distributed Poisson sampler and optimizer), and this
    process' non-private random streams (latents, diffusion noise) made its own."""
    rank, world = _rank_world()
    if world == 1:
        return module, 1
    # an empty local batch is skipped (not in the Poisson analysis): bounded over the run
    check_empty_local_batches(dp_plan, world)
    DISTRIBUTED_STEPS.append(dp_plan.steps)
    if rank:
        torch.manual_seed(torch.initial_seed() + 7919 * rank)
    return (module if isinstance(module, DPDDP) else DPDDP(module)), world


def per_process(n: int) -> int:
    """This process' share of ``n`` non-private rows (a GAN's fakes) so that all processes
    together draw ``n``, as one process would."""
    rank, world = _rank_world()
    return n // world + (rank < n % world)


def share_across_processes(module: torch.nn.Module) -> torch.nn.Module:
    """Keep a non-private module (a GAN's generator) equal in all processes: weights broadcast
    from process 0, gradients averaged over processes as they are computed. No-op in one
    process."""
    rank, world = _rank_world()
    if world == 1:
        return module
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            torch.distributed.broadcast(t, 0)
    for p in module.parameters():
        if p.requires_grad:
            p.register_hook(_average_over_processes)
    return module


def _average_over_processes(grad: torch.Tensor) -> torch.Tensor:
    grad = grad.clone()
    torch.distributed.all_reduce(grad)
    return grad / torch.distributed.get_world_size()


def _rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


# Examples per forward/backward chunk in grad-sample mode bk (dpsgd.backward): bounds the memory
# of activations (a 28x28 diffusion U-Net holds ~3 MB per image and noise level).
CHUNK_EXAMPLES = 64


def backward(
    module: torch.nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, chunk: int | None = None
) -> torch.Tensor:
    """``loss_fn(module, x, y).backward()`` (a mean over rows) in chunks of ``chunk`` examples, so
    one chunk's activations are in memory; returns the loss (detached). Book-Keeping adds each
    chunk's clipped sum to ``.grad`` (the same sum: an example's gradient does not depend on the
    others); a non-private module weights the chunks to the batch mean. Opacus' modes take the
    batch whole (they forbid accumulating between steps)."""
    chunk = CHUNK_EXAMPLES if chunk is None else chunk
    if isinstance(module, AbstractGradSampleModule) or len(x) <= chunk:
        loss = loss_fn(module, x, y)
        loss.backward()
        return loss.detach()
    total = x.new_zeros(())
    for xc, yc in zip(x.split(chunk), y.split(chunk), strict=True):
        loss = loss_fn(module, xc, yc)
        share = len(xc) / len(x)
        # Book-Keeping takes each example's own gradient whatever the loss' scale
        (loss if isinstance(module, BookKeeping) else loss * share).backward()
        total += loss.detach() * share
    return total


# How a GAN's fake rows enter the discriminator's DP-SGD sum (privacy/bookkeeping.py): "clip"
# clips each like a real row (Opacus' semantics, every mode); "none" adds their gradient
# unclipped, with no per-example norms (half the per-example work of a discriminator step);
# "total" also skips their norms but scales their summed gradient to norm <= (fake rows) x C.
# The epsilon is the same for all three (docs/privacy.md). Digits, epsilon 10, 100 epochs, four
# seeds, TSTR: clip 0.41, none 0.47, total 0.34 on average (docs/gan.md).
FAKE_ROWS = "none"


def public_rows(module: torch.nn.Module, n_private: int, policy: str | None = None):
    """Context for one forward whose rows from ``n_private`` on are *public* (a GAN's fakes, post-
    processing of earlier DP steps): with mode ``bk`` and ``policy`` (default `FAKE_ROWS`) "total"
    or "none" they get no per-example norm, the sensitivity stays C (docs/privacy.md); elsewhere
    (Opacus' modes, "clip") every row is clipped, the reference semantics."""
    policy = FAKE_ROWS if policy is None else policy
    if policy == "clip" or not isinstance(module, BookKeeping):
        return contextlib.nullcontext(module)
    return module.public_rows(n_private, policy)


def private_generator(device: torch.device | str) -> torch.Generator:
    """A torch generator seeded with 64 bits from the OS (``secrets``), stored nowhere. Not a
    CSPRNG (Opacus' ``secure_mode`` needs torchcsprng, which no longer builds for PyTorch)."""
    return torch.Generator(device=device).manual_seed(secrets.randbits(64))


def accountant_state(engine: PrivacyEngine, accountant: str) -> AccountantState:
    return AccountantState(accountant, [tuple(h) for h in engine.accountant.history])
