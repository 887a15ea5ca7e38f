"""Model, data and local training of one data owner (Flower's ``task.py``).

What is federated:

* ``dpgan``/``gan``: the conditional GAN's generator G and discriminator D. Each round, every
  sampled owner starts from the global (G, D), runs ``local-steps`` discriminator steps with DP-SGD
  (Opacus: Poisson sampling, per-sample clipping, Gaussian noise) on *its own* images, and a
  generator step every ``n_d`` D-steps against its local D. G only ever sees D's outputs on fake
  images, so G's update is post-processing of the owner's DP discriminator and spends no privacy.
* ``dpvae``/``vae``: the conditional VAE (encoder + decoder); ``local-steps`` DP-SGD steps on the
  whole model, since both halves read the private images.

The updated weights go back to the server and are averaged (FedAvg).

Each owner's accountant history lives in its own process across rounds; the noise multiplier is
calibrated once for the whole federation (``rounds x local-steps`` steps at the owner's q), so the
owner's epsilon after the last round is at most the target, whatever subset of rounds it joined.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from ..data import DataSource, ImageDataset, load_dataset, split, to_unit_range
from ..errors import ConfigError
from ..models.base import infinite
from ..models.gan import GANSynthesizer
from ..models.registry import create
from ..models.vae import VAESynthesizer
from ..privacy import dpsgd
from ..privacy.accounting import AccountantState, PrivacySpec
from .partition import partition

FEDERATED_METHODS = ("dpgan", "gan", "dpvae", "vae")
Synth = GANSynthesizer | VAESynthesizer


# --- model <-> arrays ----------------------------------------------------------------------------
def build_model(cfg: dict[str, Any]) -> Synth:
    """The method named in the run config, sized from the image shape it carries."""
    method = str(cfg["method"])
    if method not in FEDERATED_METHODS:
        raise ConfigError(
            f"method '{method}' cannot be federated yet; choose one of {FEDERATED_METHODS}"
        )
    shape = (int(cfg["image-channels"]), int(cfg["image-size"]), int(cfg["image-size"]))
    model_config = json.loads(str(cfg["model-config"]) or "{}")
    torch.manual_seed(int(cfg["seed"]))
    return create(
        method,
        shape,
        int(cfg["num-classes"]),
        model_config,
        private=float(cfg["epsilon"]) > 0,
    )


def _parts(synth: Synth) -> dict[str, torch.nn.Module]:
    """The modules whose weights travel, by key prefix."""
    if isinstance(synth, VAESynthesizer):
        return {"m": synth.model}
    return {"g": synth.generator, "d": synth.discriminator}


def array_keys(synth: Synth) -> list[str]:
    """Float tensors of every travelling module in a fixed order (integer counters not averaged)."""
    return [f"{part}.{k}" for part, module in _parts(synth).items()
            for k, v in module.state_dict().items() if v.is_floating_point()]


def get_arrays(synth: Synth) -> dict[str, np.ndarray]:
    states = {part: module.state_dict() for part, module in _parts(synth).items()}
    out = {}
    for key in array_keys(synth):
        part, name = key.split(".", 1)
        out[key] = states[part][name].detach().cpu().numpy().astype(np.float32)
    return out


def set_arrays(synth: Synth, arrays: dict[str, np.ndarray]) -> None:
    missing = set(array_keys(synth)) - set(arrays)
    if missing:
        raise ConfigError(
            f"global model lacks {sorted(missing)[:3]}...; server and owners must "
            "run the same method, model-config and image shape"
        )
    for part, module in _parts(synth).items():
        state = module.state_dict()
        for name in state:
            key = f"{part}.{name}"
            if key in arrays:
                state[name] = torch.from_numpy(np.asarray(arrays[key], dtype=np.float32).copy())
        module.load_state_dict(state)


def finalize(synth: Synth) -> Synth:
    """The released sampler is the global model (set as the EMA slot the run folder saves)."""
    if isinstance(synth, VAESynthesizer):
        synth.ema.load_state_dict(synth.model.state_dict())
        synth.ema.eval()
        return synth
    synth.g_ema.load_state_dict(synth.generator.state_dict())
    synth.g_ema.eval()
    return synth


# --- data ---------------------------------------------------------------------
def _source(run_cfg: dict[str, Any], path) -> DataSource:
    """``path`` with the run's public format inputs (``data-format``: classes, channels, ...)."""
    return DataSource.from_options(str(path), json.loads(str(run_cfg["data-format"]) or "{}"))


def load_owner_data(node_cfg: dict[str, Any], run_cfg: dict[str, Any]) -> ImageDataset:
    """This owner's private training images.

    A real owner names its own data (node config ``data-path``) and uses all of it. For
    experiments, ``partition-id`` / ``num-partitions`` pick one part of the run's dataset after the
    same seeded train/holdout split ``privsynth train`` uses, so the holdout is never trained on.
    """
    size = int(run_cfg["image-size"])
    if "data-path" in node_cfg:
        return load_dataset(_source(run_cfg, node_cfg["data-path"]), image_size=size)
    if "partition-id" not in node_cfg:
        raise ConfigError(
            "this SuperNode has no data: start it with --node-config "
            "'data-path=\"/my/images\"' (or partition-id=I num-partitions=N)"
        )
    data = load_dataset(_source(run_cfg, run_cfg["data"]), image_size=size)
    parts = split(data, float(run_cfg["holdout"]), int(run_cfg["split-seed"]))
    train = data.subset(parts.train, name=data.name)
    owners = partition(
        train,
        int(node_cfg["num-partitions"]),
        str(run_cfg["partition"]),
        float(run_cfg["alpha"]),
        int(run_cfg["partition-seed"]),
    )
    return owners[int(node_cfg["partition-id"])]


# --- local training ------------------------------------------------------------
@dataclass
class LocalResult:
    arrays: dict[str, np.ndarray]
    num_examples: int
    accountant: AccountantState | None
    epsilon: float  # this owner's sample-level epsilon so far (0 without DP)
    delta: float
    noise_multiplier: float
    sample_rate: float
    # losses on private batches are not DP: for the owner's own eyes, never sent to the server
    d_loss: float  # the private module's loss (D for the GAN, the ELBO for the VAE)
    g_loss: float  # the generator's loss (NaN for the VAE)


def privacy_spec(cfg: dict[str, Any]) -> PrivacySpec | None:
    eps = float(cfg["epsilon"])
    if eps <= 0:
        return None
    delta = float(cfg["delta"]) or None
    return PrivacySpec(
        epsilon=eps,
        delta=delta,
        max_grad_norm=float(cfg["clip"]),
        accountant=str(cfg["accountant"]),
    )


def local_train(
    synth: Synth,
    data: ImageDataset,
    cfg: dict[str, Any],
    history: AccountantState | None,
    seed: int,
    sigma: float | None = None,
) -> LocalResult:
    """``local-steps`` DP-SGD steps (plain SGD if the run is not private) on this owner's data:
    D-steps + G-steps for the GAN, ELBO steps for the VAE.

    ``sigma``: the noise multiplier this owner calibrated in an earlier round (the plan is the
    same every round; calibrating once saves the accountant's bisection).
    """
    steps = int(cfg["local-steps"])
    rounds = int(cfg["num-server-rounds"])
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)  # non-private loader only; DP batches use OS entropy
    dataset = TensorDataset(
        torch.from_numpy(to_unit_range(data.images)), torch.from_numpy(data.labels)
    )
    n = len(dataset)
    batch = min(synth.config.batch_size, n)
    is_vae = isinstance(synth, VAESynthesizer)
    if is_vae:  # encoder and decoder both read the images: the whole model is the private one
        private_module = synth.model.train()
        opt = torch.optim.Adam(private_module.parameters(), lr=synth.config.lr)
    else:  # only D reads the images; G is post-processing of D
        G, private_module = synth.generator.train(), synth.discriminator.train()
        opt_g = torch.optim.Adam(G.parameters(), lr=synth.config.lr_g, betas=(0.5, 0.999))
        opt = torch.optim.Adam(private_module.parameters(), lr=synth.config.lr_d,
                               betas=(0.5, 0.999))
    spec = privacy_spec(cfg) if synth.private else None
    engine, plan = None, None
    if spec is not None:
        if sigma:
            spec.noise_multiplier = sigma  # same (epsilon, delta, q, steps) -> same sigma
        plan = dpsgd.plan(spec, n, batch, rounds * steps)
        plan.target_epsilon = float(cfg["epsilon"])
        trained, opt, loader, engine = dpsgd.make_private(
            private_module, opt, dataset, plan, spec, history, generator=gen
        )
    else:
        trained = private_module
        loader = DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True, generator=gen)
    batches = infinite(loader)
    d_loss = g_loss = float("nan")
    for step in range(steps):
        xr, yr = next(batches)
        if is_vae:
            opt.zero_grad(set_to_none=True)
            loss = trained(xr, yr).mean()  # an empty Poisson batch still books its noise
            loss.backward()
            opt.step()
            d_loss = loss.item() if len(xr) else d_loss
            continue
        d_loss = synth._d_step(G, trained, opt, xr, yr, batch, torch.device("cpu"))
        if (step + 1) % synth.config.n_d == 0 or step + 1 == steps:
            g_loss = synth._g_step(G, trained, opt_g, batch, torch.device("cpu"))
    acc, eps, delta = None, 0.0, 0.0
    if engine is not None:
        acc = dpsgd.accountant_state(engine, spec.accountant)
        delta = spec.resolved_delta(n)
        eps = acc.epsilon(delta)
        trained._close()
    return LocalResult(
        get_arrays(synth),
        n,
        acc,
        eps,
        delta,
        plan.noise_multiplier if plan else 0.0,
        plan.sample_rate if plan else 0.0,
        d_loss,
        g_loss,
    )
