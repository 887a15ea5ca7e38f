"""What `privsynth.train` reads and builds before it opens the run folder or the ledger: the
data and its split, the privacy spec, the method and its warm-up. A refusal here costs nothing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data import ImageDataset, Split, is_holdout_path, load_split
from ..errors import ConfigError
from ..models.defaults import recommended_config, recommended_warmup
from ..models.registry import create
from ..models.warmup import WarmUp
from ..preflight import check_memory
from ..privacy import PrivacySpec
from ..privacy.checks import default_epsilon
from ..request import RunRequest
from .trainer_auto import auto_start


@dataclass
class Loaded:
    dataset: ImageDataset
    parts: Split
    train_set: ImageDataset
    holdout: float | str  # as recorded: a test split's path made absolute
    spec: PrivacySpec | None  # None: no DP
    synth: Any
    warm: WarmUp | None
    counts_mechanism: str  # of the class-proportion release; "uniform" (none) without DP
    choice: Any = None  # --method auto's provisional `Choice` (settled from N_hat), else None


def load_inputs(request: RunRequest) -> Loaded:
    data, privacy, options, method = request.data, request.privacy, request.training, request.method
    private, holdout = request.private, data.holdout
    if is_holdout_path(holdout):  # an official test split: recorded absolute, like --data
        holdout = str(Path(holdout).expanduser().resolve())
    dataset, parts = load_split(data.source, holdout, data.split_seed, data.image_size)
    train_set = dataset.subset(parts.train, name=dataset.name)
    n = len(train_set)
    spec = None
    if private:
        spec = PrivacySpec(
            epsilon=default_epsilon(privacy.epsilon, privacy.noise_multiplier),
            delta=privacy.delta,
            noise_multiplier=privacy.noise_multiplier,
            max_grad_norm=privacy.max_grad_norm,
            accountant=privacy.accountant,
            grad_sample_mode=privacy.grad_sample_mode,
        )
    # auto: provisional until N_hat exists (or the choice a resumed run recorded)
    out, overwrite = request.output.out, request.output.overwrite
    limit, device = options.time_limit, options.device
    choice, n_defaults = auto_start(method, out, overwrite, dataset, n, spec, limit, device)
    _check_memory(dataset, n)
    synth, warm = build_method(request, choice or method, n_defaults, spec, dataset)
    batch = synth.config_dict().get("batch_size")
    if private and synth.mechanism == "dp-sgd" and isinstance(batch, int) and batch > n:
        # before the size release (which would be spent for nothing): the owner's message
        raise ConfigError(f"batch size {batch} exceeds the {n} training images; lower --batch-size")
    mech = privacy.class_proportions if private else "uniform"
    return Loaded(dataset, parts, train_set, holdout, spec, synth, warm, mech, choice)


def build_method(request: RunRequest, method, n_defaults: int, spec, dataset):
    """The method (a name, or auto's `Choice`) and its warm-up. One place decides the defaults
    (models/defaults.py, by training-set size and the target epsilon; auto's settings over
    them); flags override. ``n_defaults``: the size the defaults read (N_hat for auto)."""
    options, public_data = request.training, request.data.public_data
    overrides = {}
    if not isinstance(method, str):
        method, overrides = method.method, method.config_overrides
    target = spec.epsilon if spec else None
    channels = dataset.image_shape[0]
    config = {**recommended_config(method, n_defaults, target, channels), **overrides}
    config.update(options.config or {})
    torch.manual_seed(options.seed)  # reproducible initial weights
    private = spec is not None
    synth = create(method, dataset.image_shape, dataset.num_classes, config, private=private)
    _check_sizes(synth.config_dict())
    warmup, warmup_config = options.warmup, options.warmup_config
    # No kind named: the method's recommended warm-up (the user's options over it), only for a
    # private run calibrated from epsilon (the release takes a share of it; a fixed
    # --noise-multiplier has none to share) without public data (the user's own warm-up).
    # Where the method recommends none, options alone stay an error (WarmUp.build says so).
    if warmup is None:
        warmup = "none"
        if public_data is None and spec is not None and spec.noise_multiplier is None:
            warmup, recommended = recommended_warmup(method, n_defaults, spec.epsilon)
            if warmup != "none":
                warmup_config = {**recommended, **(warmup_config or {})}
    warm = WarmUp.build(warmup, public_data, warmup_config, dataset, private, synth)
    return synth, warm


def _check_memory(dataset: ImageDataset, n_train: int) -> None:
    """Refuse, before any model is built, requests that cannot fit: the images held as uint8
    and as the float copy training reads (``--image-size 4096``), and more classes than training
    images (``--classes 100000`` once grew until the kernel killed it: every class-conditional
    layer scales with the class count)."""
    c, h, w = dataset.image_shape
    k = dataset.num_classes
    if k > n_train:
        raise ConfigError(
            f"{k} classes for {n_train} training images: at least {k - n_train} classes "
            "would have no image, and class-conditional layers grow with the class count; "
            "pass the real class list with --classes"
        )
    check_memory(
        5 * dataset.images.nbytes,
        f"training on {len(dataset)} images of {c}x{h}x{w}",
        "use a smaller --image-size (or fewer images)",
    )


def _check_sizes(config: dict) -> None:
    """Sizes that would train on nothing (``--batch-size 0``) fail here, not as NaN weights."""
    flags = {"batch_size": "--batch-size", "epochs": "--epochs", "steps": "--set steps"}
    for key, flag in flags.items():
        value = config.get(key)
        if isinstance(value, (int, float)) and not value > 0:
            raise ConfigError(
                f"{flag} must be > 0, got {value}; pass a positive value or omit "
                "it for the method's default"
            )
