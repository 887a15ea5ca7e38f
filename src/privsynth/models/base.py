"""The one interface every method trains through: the `Method` base class.

A method is a class registered in ``registry.METHODS``. It is built from the data's shape and a
config dict, trains with ``fit(data, ctx)`` (DP-SGD methods through ``models/engine.py``) and draws
images with ``sample(n, labels)``. The run folder (``privsynth.run_folder``) saves
``state_dict()`` as safetensors and the config in ``card.json``, so every method returns the same
checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import asdict, fields
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..data import ImageDataset, from_unit_range
from ..errors import ConfigError
from ..privacy import AccountantState, DPPlan, PrivacySpec
from ..privacy.accounting import calibrate_noise
from ..privacy.dpsgd import sample_rate
from ..privacy.mechanisms import gaussian_noise_release
from ..privacy.release import Release, gaussian
from . import engine
from .context import FitResult, TrainContext  # noqa: F401  (their home before)


class Method:
    """A generative method: its facts on the class, its work in a few declared hooks.

    Facts, read by the registry, the trainer, the sweep and federation: ``name`` (the private
    method's registry name) and ``twin`` (the same model without DP, or None); ``config_class``
    (defaults that run; ``--set key=value`` overrides); ``kind``: ``"dp-sgd"`` (a network reads
    the private data, trained by the one DP-SGD loop in ``models/engine.py``), ``"one-shot"`` (one
    noisy release of a statistic, then post-processing: `OneShotMethod`) or ``"none"`` (never
    private); ``mechanism`` (the card's mechanism key, ``trainer_card.MECHANISMS``); ``federable``
    and ``federates_by`` (``"weights"``: ``federated_modules()`` averaged; ``"release-sum"``: the
    owners' noisy statistics summed under secure aggregation).

    DP-SGD hooks (``models/engine.py`` calls them; nothing else writes a DP loop) and what every
    method provides (``released_modules``, ``draw``) are documented where they are defined.
    """

    name: ClassVar[str] = ""
    twin: ClassVar[str | None] = None
    config_class: ClassVar[type] = type(None)
    kind: ClassVar[str] = "dp-sgd"
    mechanism: ClassVar[str] = "dp-sgd"
    federable: ClassVar[bool] = False
    federates_by: ClassVar[str] = "weights"  # or "release-sum" (one-shot methods)
    # FedAvgM momentum on the global model, applied by the owners (federated/task.with_momentum)
    federated_momentum: ClassVar[float] = 0.9
    square: ClassVar[bool] = True  # the networks need square images
    # what else the run reads that its epsilon does not cover (public inputs), for the card
    not_protected: ClassVar[str] = ""
    sample_batch: ClassVar[int] = 1024
    # dpsgd.backward's chunk (examples per forward/backward); None = its default. A loss that
    # adds rows of its own per batch (a GAN's fakes) takes the batch whole.
    backward_chunk: ClassVar[float | None] = None
    multiplicity: int = 1  # rows per private image in private_loss (diffusion's noise levels)
    loss_name: ClassVar[str] = "loss"  # the private loss' name in the card's train.metrics
    step_name: ClassVar[str] = "steps"  # what the progress line counts

    def __init__(
        self,
        image_shape,
        num_classes,
        config=None,
        private: bool | None = None,
        name: str | None = None,
    ):
        self.name = name or self.name
        self.private = (self.kind != "none") if private is None else private
        self.image_shape, self.num_classes = tuple(image_shape), num_classes
        self.config = build_config(self.config_class, config)
        c, h, w = self.image_shape
        if self.square and h != w:
            raise ConfigError(
                f"images are {h}x{w}; {self.name} needs square images, pass --image-size"
            )

    def config_dict(self) -> dict:
        return asdict(self.config)

    # --- training -----------------------------------------------------------------------------
    def fit(self, data: ImageDataset, ctx: TrainContext) -> FitResult:
        """DP-SGD methods train through the one engine; one-shot methods override this."""
        return engine.fit(self, data, ctx)

    def total_steps(self, n_private: int) -> int:
        """Private steps of a whole run: ``epochs`` expected passes at the Poisson rate q."""
        return max(
            1, int(round(self.config.epochs / sample_rate(n_private, self.config.batch_size)))
        )

    def check_privacy(self, spec: PrivacySpec) -> None:
        """Refuse a privacy setting this method cannot train under (one line naming the fix)."""

    def private_module(self) -> nn.Module:
        raise NotImplementedError(f"{type(self).__name__} is not a DP-SGD method")

    def private_optimizer(self, module: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.Adam(module.parameters(), lr=self.config.lr)

    def private_loss(self, module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean over ``len(x) * multiplicity`` rows (image-major); x in -1..1."""
        return module(x, y).mean()

    def public_modules(self) -> list[nn.Module]:
        """Networks trained only on released values (a GAN's generator)."""
        return []

    def after_step(self, step: int, last: bool, private: nn.Module) -> dict[str, float]:
        """Post-processing after private step ``step`` (``last``: the segment's final step)."""
        return {}

    def train_state(self) -> dict:
        return {}

    def load_train_state(self, state: dict) -> None:
        pass

    # --- federation (federated/task.py) -------------------------------------------------------
    def federated_modules(self) -> dict[str, nn.Module]:
        """The modules whose weights travel each round, by key prefix."""
        raise NotImplementedError(f"{self.name} does not federate by weights")

    def after_federation(self) -> None:
        """The global model becomes what is released (e.g. copied into the EMA slot)."""

    # --- what is released ---------------------------------------------------------------------
    def released_modules(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, torch.Tensor]:
        return module_state(self.released_modules())

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for prefix, module in self.released_modules().items():
            module.load_state_dict(strip_prefix(state, prefix))

    def draw(self, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Images in -1..1 (N x C x H x W) for the labels ``y`` (on the sampling device)."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(
        self, n: int, labels: np.ndarray | None = None, seed: int | None = None
    ) -> np.ndarray:
        """``n`` uint8 images N x C x H x W for the given class labels (0..K-1)."""
        g = torch.Generator().manual_seed(0 if seed is None else seed)
        labels = (
            torch.randint(0, self.num_classes, (n,), generator=g)
            if labels is None
            else torch.as_tensor(np.asarray(labels), dtype=torch.long)
        )
        device = next(p.device for m in self.released_modules().values() for p in m.parameters())
        out = [np.zeros((0, *self.image_shape), np.uint8)]
        for y in labels.split(self.sample_batch):
            out.append(from_unit_range(self.draw(y.to(device), g).cpu().numpy()))
        return np.concatenate(out)

    def membership_scores(self, images: np.ndarray, labels: np.ndarray) -> np.ndarray | None:
        """White-box membership scores (higher = "looks like training data"), or None."""
        return None


class ModelWithEMA(Method):
    """The DP-SGD hooks of a method whose one network ``self.model`` reads the private images
    and whose released copy is its EMA ``self.ema`` (dpvae, dpdiffusion)."""

    def private_module(self) -> nn.Module:
        return self.model

    def after_step(self, step: int, last: bool, private: nn.Module) -> dict[str, float]:
        engine.update_ema(self.model, self.ema, self.config.ema, step)
        return {}

    def train_state(self) -> dict:
        return {"ema": self.ema.state_dict()}

    def load_train_state(self, state: dict) -> None:
        self.ema.load_state_dict(state["ema"])

    def federated_modules(self) -> dict[str, nn.Module]:
        return {"m": self.model}

    def after_federation(self) -> None:
        self.ema.load_state_dict(self.model.state_dict())


class OneShotMethod(Method):
    """A method that releases one noisy statistic of the private data, then post-processes it.

    It declares ``statistic(data, sensitivity)`` (the exact statistic, float64: one image moves it
    by at most ``sensitivity`` in L2 norm, and owners' copies add up to the whole set's, so it
    federates by summing noisy shares), ``statistic_shape()`` and ``fit_released(released, ctx)``
    (free post-processing). Here, once: the budget check before the Gaussian draw, its history
    after the run's earlier releases, and checkpoints that keep the release so a resumed run never
    draws again.
    """

    kind = "one-shot"
    mechanism = "gaussian"  # the card names it
    federable = True
    federates_by = "release-sum"

    def statistic(self, data: ImageDataset, sensitivity: float) -> torch.Tensor:
        raise NotImplementedError

    def statistic_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def fit_released(self, released: torch.Tensor, ctx: TrainContext) -> FitResult:
        raise NotImplementedError

    def release(self, data: ImageDataset, ctx: TrainContext) -> tuple[torch.Tensor, Release | None]:
        """The noisy statistic and its `Release` (None, and the exact statistic, without DP)."""
        spec = ctx.privacy
        exact = self.statistic(data, sensitivity(spec))
        if spec is None:
            return exact.float(), None
        sigma = spec.noise_multiplier
        if sigma is None:
            with warnings.catch_warnings():  # PRV at q = 1 evaluates log(1 - q) = -inf: harmless
                warnings.simplefilter("ignore", RuntimeWarning)
                delta = spec.resolved_delta(len(data))
                sigma = calibrate_noise(spec.epsilon, delta, 1.0, 1, spec.accountant, spec.prior)
        ctx.on_plan(one_shot_plan(spec, len(data), sigma))  # the budget check, before the noise
        noisy, release = gaussian_noise_release(exact, sigma, sensitivity(spec), self.name)
        return noisy.float(), release

    def fit(self, data: ImageDataset, ctx: TrainContext) -> FitResult:
        resume = ctx.resume
        if resume is None:
            released, release = self.release(data, ctx)
        else:  # the release already happened: reuse it, never draw new noise
            released, release = resume["released"], None
            if ctx.privacy is not None:  # a private checkpoint without its release is refused
                lead = sum(int(h[2]) for h in ctx.privacy.prior)
                sigma = engine.resumed_history(resume, lead + 1).history[-1][0]
                release = gaussian(self.name, sigma, sensitivity(ctx.privacy))
        return self.post_process(released, release, ctx, len(data))

    def post_process(
        self, released: torch.Tensor, release: Release | None, ctx: TrainContext, n_private: int
    ) -> FitResult:
        """`fit_released` on ``released``, with the release's plan and accountant (after the
        run's earlier releases, ``ctx.privacy.prior``) on the result and in every checkpoint."""
        spec, plan, acc = ctx.privacy, None, None
        if release is not None:
            plan = one_shot_plan(spec, n_private, release.sigma)
            acc = AccountantState(spec.accountant, [*spec.prior, *release.history])
        kept = {
            "released": released,
            "accountant": acc.to_json() if acc else None,
            "plan": plan.to_json() if plan else None,
        }

        def checkpoint(step: int, state: dict, _: Any) -> None:
            ctx.checkpoint(step, {"step": step, **state, **kept}, acc)

        if ctx.resume is None:
            checkpoint(0, {}, None)  # book the spend (and keep the release) the moment it exists
        sigma = release.sigma if release is not None else None
        result = self.fit_released(
            released, dataclasses.replace(ctx, checkpoint=checkpoint, release_sigma=sigma)
        )
        if release is not None and result.dp_count is not None:
            how = f"the count feature of {self.name}'s one Gaussian release, summed over classes"
            release = release.with_count(result.dp_count, how)
        return dataclasses.replace(result, dp_plan=plan, accountant=acc, release=release)


def module_state(modules: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """The modules' weights on the CPU, each key prefixed with its module's name."""
    return {
        f"{prefix}.{k}": v.detach().cpu()
        for prefix, module in modules.items()
        for k, v in module.state_dict().items()
    }


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``state`` under ``prefix.``, without it."""
    return {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}


def one_shot_plan(privacy: PrivacySpec, n_private: int, sigma: float) -> DPPlan:
    """A one-shot release's plan at noise multiplier ``sigma``: one step at q = 1, whose "batch"
    (the whole set) the published N_hat stands for."""
    shown_n, delta = privacy.public_size(n_private), privacy.resolved_delta(n_private)
    return DPPlan(sigma, shown_n, 1.0, 1, delta, privacy.epsilon, n_private)


def sensitivity(spec: PrivacySpec | None) -> float:
    """A one-shot statistic's L2 sensitivity: the clip norm C (1 without DP)."""
    return spec.max_grad_norm if spec is not None else 1.0


def build_config(cls: type, overrides: dict[str, Any] | None) -> Any:
    """Dataclass ``cls`` with known keys overridden; unknown keys are an error naming valid ones."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    check_known(cls, overrides)
    defaults = {f.name: f.default for f in fields(cls)}
    for key, value in overrides.items():
        _check_type(key, value, defaults[key])
    return cls(**overrides)


def check_known(cls: type, overrides: dict[str, Any]) -> None:
    """ConfigError naming the valid options when ``overrides`` has a key ``cls`` lacks."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for this method; valid: {sorted(names)}")


def _check_type(key: str, value: Any, default: Any) -> None:
    """A value of the default's kind (numbers for numeric options), so `--set steps=abc` stops
    here with one line instead of deep inside training."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok, kind = {
        bool: (isinstance(value, bool), "True or False"),
        # sizes and counts: 2.5 channels would fail deep in torch
        int: (number and isinstance(value, int), "a whole number"),
        float: (number and math.isfinite(value), "a finite number"),
        str: (isinstance(value, str), "a string"),
    }.get(type(default), (True, ""))  # None, lists...: not checked
    if not ok:
        raise ConfigError(
            f"option {key}={value!r} must be {kind} (default {default!r}); "
            f"e.g. --set {key}={default!r}"
        )
    if (key == "lr" or key.startswith("lr_")) and not value > 0:
        # a learning rate <= 0 fails in the optimizer, after the spend was reserved
        raise ConfigError(f"option {key}={value!r} must be > 0; e.g. --set {key}={default!r}")
