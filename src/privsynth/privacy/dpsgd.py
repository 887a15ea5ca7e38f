"""DP-SGD on Opacus: Poisson sampling, per-sample clipping to C, Gaussian noise sigma * C.

``make_private`` returns Opacus' own (module, optimizer, data_loader) triple so a training loop
reads like any Opacus example; the `PrivacyEngine` is kept so its accountant can be saved.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

import torch
from opacus import PrivacyEngine
from opacus.grad_sample import grad_sample_module as _gsm
from opacus.validators import ModuleValidator
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ..errors import ConfigError
from .accounting import AccountantState, PrivacySpec, calibrate_noise

GRAD_SAMPLE_MODES = ("hooks", "functorch", "ew")


def _store_grad_sample(*, param: torch.Tensor, grad_sample: torch.Tensor,
                       max_batch_len: int) -> None:
    """Opacus' ``create_or_accumulate_grad_sample`` without a needless zero-fill + copy.

    Opacus allocates ``zeros(max_batch_len, ...)`` and copies every layer's per-sample gradients
    into it on every step (a quarter of a 28x28 DP discriminator step on CPU, bench/speed_dp.py).
    When the batch fills the buffer, the fresh per-sample tensor *is* that buffer: identical values.
    Every other case (tied parameters, shorter batches) goes to Opacus' own function.
    """
    if (param.requires_grad and not hasattr(param, "_current_grad_sample")
            and grad_sample.shape[0] == max_batch_len):
        param._current_grad_sample = grad_sample
    else:
        _opacus_store(param=param, grad_sample=grad_sample, max_batch_len=max_batch_len)


_opacus_store = _gsm.create_or_accumulate_grad_sample
_gsm.create_or_accumulate_grad_sample = _store_grad_sample


class TensorBatches(TensorDataset):
    """A TensorDataset that the DataLoader indexes one whole batch at a time.

    The default path calls ``__getitem__`` per row and stacks the rows: ~5 ms per 256-image batch
    on CPU, a sizeable share of a small DP step. ``__getitems__`` takes the (Poisson-sampled)
    index list at once; pass ``collate_fn=TensorBatches.collate``. Which rows are drawn is
    unchanged.
    """

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
    batch_size: int            # the loader's nominal batch size; q = 1 / ceil(N / batch_size)
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


def sample_rate(n_private: int, expected_batch_size: int) -> float:
    """Opacus' Poisson loader uses q = 1 / len(loader) = 1 / ceil(N / B); match it exactly."""
    return 1.0 / math.ceil(n_private / expected_batch_size)


def plan(spec: PrivacySpec, n_private: int, expected_batch_size: int, steps: int) -> DPPlan:
    """Fix sigma: calibrated with Opacus for (epsilon, delta, q, steps), or the user's own."""
    if expected_batch_size > n_private:
        raise ConfigError(f"batch size {expected_batch_size} exceeds the {n_private} training "
                          "images; lower --batch-size")
    q = sample_rate(n_private, expected_batch_size)
    delta = spec.resolved_delta(n_private)
    if spec.noise_multiplier is not None:
        sigma = spec.noise_multiplier
    else:
        assert spec.epsilon is not None
        sigma = calibrate_noise(spec.epsilon, delta, q, steps, spec.accountant, spec.prior)
    return DPPlan(sigma, expected_batch_size, q, steps, delta, spec.epsilon, n_private)


def make_private(module: torch.nn.Module, optimizer: torch.optim.Optimizer, dataset: Dataset,
                 dp_plan: DPPlan, spec: PrivacySpec, state: AccountantState | None = None,
                 generator: torch.Generator | None = None):
    """Wrap with Opacus. Returns ``(module, optimizer, data_loader, engine)``.

    The loader draws Poisson-sampled batches (each image independently with probability q),
    which is what the accountant's subsampling analysis assumes. A restored ``state`` puts the
    previous run's history back into the accountant, so resuming never resets the budget; a
    fresh one starts from ``spec.prior`` (releases made before DP-SGD, e.g. the warm-up).

    Which images a batch holds and the Gaussian noise both come from generators seeded from the
    operating system's entropy, never from ``--seed``: the guarantee assumes an adversary cannot
    predict them, and the seed is written on the card. ``generator`` is accepted for the
    signature's sake (non-private loaders use it) and ignored here. A resumed run draws fresh
    streams, so no batch or noise of the first segment is replayed.
    """
    del generator
    device = next(module.parameters()).device
    if spec.grad_sample_mode not in GRAD_SAMPLE_MODES:
        raise ConfigError(f"grad-sample mode '{spec.grad_sample_mode}' unknown; "
                          f"choose one of {GRAD_SAMPLE_MODES}")
    errors = ModuleValidator.validate(module, strict=False)
    if errors:
        raise ConfigError(f"model is not DP-compatible: {errors[0]}; use GroupNorm, not BatchNorm")
    collate = TensorBatches.collate if isinstance(dataset, TensorBatches) else None
    loader = DataLoader(dataset, batch_size=dp_plan.batch_size, generator=private_generator("cpu"),
                        collate_fn=collate)
    engine = PrivacyEngine(accountant=spec.accountant, secure_mode=False)
    module, optimizer, loader = engine.make_private(
        module=module, optimizer=optimizer, data_loader=loader,
        noise_multiplier=dp_plan.noise_multiplier, max_grad_norm=spec.max_grad_norm,
        poisson_sampling=True, grad_sample_mode=spec.grad_sample_mode,
        noise_generator=private_generator(device))
    # The accountant must see exactly the q the noise was calibrated for.
    q_loader = optimizer.expected_batch_size / len(dataset)
    assert abs(q_loader - dp_plan.sample_rate) < 1 / len(dataset)
    if state is not None:
        engine.accountant.history = list(state.history)
    elif spec.prior:  # a warm-up release came first: one accountant composes both exactly
        engine.accountant.history = [tuple(h) for h in spec.prior]
    return module, optimizer, loader, engine


def private_generator(device: torch.device | str) -> torch.Generator:
    """A torch generator seeded with 64 bits from the OS (``secrets``), unknown to anyone.

    Not a CSPRNG (Opacus' ``secure_mode`` needs torchcsprng, which no longer builds for current
    PyTorch); the seed is never stored on the card or in the run folder.
    """
    return torch.Generator(device=device).manual_seed(secrets.randbits(64))


def accountant_state(engine: PrivacyEngine, accountant: str) -> AccountantState:
    return AccountantState(accountant, [tuple(h) for h in engine.accountant.history])
