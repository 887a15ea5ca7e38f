"""Model, data and local training of one data owner (Flower's ``task.py``).

Each round every sampled owner starts from the global weights of its ``federable`` method's
``federated_modules()`` and runs ``local-steps`` DP-SGD steps on *its own* images through the one
engine (``models/engine.DPSGD``; the GAN's generator step is post-processing of the owner's DP
discriminator), then returns the weights for FedAvg.

Global momentum (FedAvgM's server momentum, Hsu et al. 2019, applied by the owners; run config
``global-momentum``; why: docs/federated.md, "Federated vs central"): an owner that also trained
in the previous round adds ``beta * (global_now - global_before)`` to its weights. Every such
owner adds the same vector, so the average takes a heavy-ball step on the global model under
every aggregation, from global models already received (post-processing: no privacy spent).

The noise multiplier is calibrated once for the whole federation (``rounds x local-steps`` steps
at the owner's q), so an owner's epsilon after the last round is at most the target, whatever
rounds it joined; its history and ledger reservation live on its own disk (owner.py).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data import DataSource, ImageDataset, load_dataset, split
from ..errors import ConfigError
from ..models.base import Method
from ..models.engine import DPSGD
from ..models.registry import create, federable, method_class
from ..privacy.accounting import AccountantState
from .partition import partition
from .runconfig import privacy_spec


# --- model <-> arrays ----------------------------------------------------------------------------
def build_model(cfg: dict[str, Any]) -> Method:
    """The method named in the run config, sized from the image shape it carries."""
    method = str(cfg["method"])
    if not method_class(method).federable:
        raise ConfigError(f"method '{method}' cannot be federated yet; choose one of {federable()}")
    shape = (int(cfg["image-channels"]), int(cfg["image-size"]), int(cfg["image-size"]))
    model_config = json.loads(str(cfg["model-config"]) or "{}")
    torch.manual_seed(int(cfg["seed"]))
    return create(
        method, shape, int(cfg["num-classes"]), model_config, private=privacy_spec(cfg) is not None
    )


def array_keys(synth: Method) -> list[str]:
    return list(get_arrays(synth))


def get_arrays(synth: Method) -> dict[str, np.ndarray]:
    """Float tensors of every travelling module in a fixed order (integer counters not averaged)."""
    return {
        f"{part}.{k}": v.detach().cpu().numpy().astype(np.float32)
        for part, module in synth.federated_modules().items()
        for k, v in module.state_dict().items()
        if v.is_floating_point()
    }


def set_arrays(synth: Method, arrays: dict[str, np.ndarray]) -> None:
    missing = set(array_keys(synth)) - set(arrays)
    if missing:
        raise ConfigError(
            f"global model lacks {sorted(missing)[:3]}...; server and owners must "
            "run the same method, model-config and image shape"
        )
    for part, module in synth.federated_modules().items():
        state = module.state_dict()
        for name in state:
            key = f"{part}.{name}"
            if key in arrays:
                state[name] = torch.from_numpy(np.asarray(arrays[key], dtype=np.float32).copy())
        module.load_state_dict(state)


def pack_arrays(arrays: dict[str, np.ndarray]) -> bytes:
    """Arrays as .npz bytes (an owner's state keeps the last global model; loads without pickle)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def unpack_arrays(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def global_momentum(cfg: dict[str, Any]) -> float:
    """The run config's ``global-momentum``, else the method's own default (``Method``)."""
    if "global-momentum" in cfg:
        return float(cfg["global-momentum"])
    return float(method_class(str(cfg["method"])).federated_momentum)


def with_momentum(
    new: dict[str, np.ndarray],
    global_now: dict[str, np.ndarray],
    global_before: dict[str, np.ndarray] | None,
    beta: float,
) -> dict[str, np.ndarray]:
    """``new + beta * (global_now - global_before)``: this owner's share of the global momentum
    (unchanged when it did not see the previous round's global model)."""
    if not beta or global_before is None:
        return new
    return {
        k: (v + beta * (global_now[k] - global_before[k])).astype(np.float32)
        for k, v in new.items()
    }


def finalize(synth: Method) -> Method:
    """The released sampler is the global model (e.g. set as the EMA slot the run folder saves)."""
    synth.after_federation()
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


# what an owner reports at the end (client_app.report, server_app.query_reports), with its type
REPORTED = {
    "epsilon": float,
    "delta": float,
    "num-examples": int,
    "noise-multiplier": float,
    "sample-rate": float,
    "bytes-up": int,
    "bytes-down": int,
}


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


def local_train(
    synth: Method,
    data: ImageDataset,
    cfg: dict[str, Any],
    history: AccountantState | None,
    seed: int,
    sigma: float | None = None,
    on_plan=None,
) -> LocalResult:
    """``local-steps`` DP-SGD steps (plain SGD if the run is not private) on this owner's data,
    through the one engine, planned over the whole federation (rounds x local-steps).

    ``sigma``: the noise multiplier this owner calibrated in an earlier round (calibrating once
    saves the accountant's bisection). ``on_plan(plan)``: runs before the first private step
    (the owner's ledger reservation, owner.py).
    """
    steps, rounds = int(cfg["local-steps"]), int(cfg["num-server-rounds"])
    spec = privacy_spec(cfg) if synth.private else None
    run = DPSGD(
        synth,
        data,
        spec,
        seed=seed,
        planned_steps=rounds * steps,
        history=history,
        sigma=sigma,
        on_plan=on_plan or (lambda plan: None),
    )
    run.run(steps)  # its losses, on private batches (not DP), never leave the owner
    acc, plan, n = run.close(), run.plan, run.n_private
    delta = spec.resolved_delta(n) if spec is not None else 0.0
    return LocalResult(
        get_arrays(synth),
        n,
        acc,
        acc.epsilon(delta) if acc is not None else 0.0,
        delta,
        plan.noise_multiplier if plan else 0.0,
        plan.sample_rate if plan else 0.0,
    )
