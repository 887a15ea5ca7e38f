"""Flower's simulation engine: N virtual owners on one machine, at most K training at a time.

The same ServerApp and ClientApp as the real deployment, under ``flwr.simulation.run_simulation``
(Ray, K actors): for studies of many-owner federations, not for deployments, since every owner's
data sits on this machine (docs/federated.md, "Many owners on one machine").
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from ..errors import ConfigError, MissingExtra
from ..preflight import available_memory

EXTRA = "pip install 'privsynth[simulation]'"

# What one Ray actor costs besides its model and data: a Python process with torch, Flower and
# privsynth imported (measured 540 MiB resident while training a tiny GAN), with headroom.
ACTOR_OVERHEAD = 768 * 2**20
# The driver's own process (measured 520 MiB) plus Ray's services (GCS, raylet, agents: 450 MiB).
SERVER_OVERHEAD = 1536 * 2**20
# CKKS ciphertext bytes per float32 byte of the model (measured by bench/federated_bench.py)
CKKS_EXPANSION = 17


def require_simulation() -> None:
    """Raise `MissingExtra` (one line naming the extra) when Ray is not installed, and refuse a
    process already connected to Ray: Flower would reuse that session (ignoring K) and then
    shut it down under its owner."""
    if importlib.util.find_spec("ray") is None:
        raise MissingExtra(
            "--simulate runs Flower's simulation engine, which needs the package 'ray', "
            f"which is not installed; install the simulation extra: {EXTRA}"
        )
    ray = sys.modules.get("ray")  # not imported = not connected (importing it costs seconds)
    if ray is not None and ray.is_initialized():
        raise ConfigError(
            "this process is already connected to Ray; --simulate starts and stops its own "
            "Ray session: call ray.shutdown() first, or run the simulation in its own process"
        )


def _model_bytes(cfg: dict[str, Any]) -> int:
    """Bytes of every network the method holds (discriminator, generator, EMA...)."""
    import torch

    from . import task

    modules = [m for m in vars(task.build_model(cfg)).values() if isinstance(m, torch.nn.Module)]
    params = {p for m in modules for p in m.parameters()}  # a shared module counts once
    return sum(p.numel() * p.element_size() for p in params)


def owner_peak_bytes(cfg: dict[str, Any], model_bytes: int, batch_size: int) -> int:
    """One owner's peak while it trains: its Ray actor, the model with its gradients and two
    Adam moments (4x), Opacus' per-sample gradients (batch x model, an upper bound), and its
    partition as uint8 plus the float copy training reads (5x, as ``train`` counts it)."""
    c, h = int(cfg["image-channels"]), int(cfg["image-size"])
    # the largest owner's image count (build_run_config sets it before any DP weighting)
    largest = int(float(cfg["max-weight"]))
    return ACTOR_OVERHEAD + (4 + batch_size) * model_bytes + 5 * largest * c * h * h


def server_bytes(cfg: dict[str, Any], model_bytes: int, owners: int) -> int:
    """The server: Ray's services, its own model, and one reply per owner held for FedAvg (the
    message and its decoded copy; a CKKS reply is ~17x the model, docs/federated.md)."""
    reply = (CKKS_EXPANSION if str(cfg["aggregation"]) == "ckks" else 1) * model_bytes
    return SERVER_OVERHEAD + model_bytes + 2 * owners * reply


def check_memory(cfg: dict[str, Any], owners: int, parallel: int, batch_size: int) -> None:
    """Refuse, before Ray starts, a simulation whose ``parallel`` owners at once cannot fit."""
    model = _model_bytes(cfg)
    per_owner = owner_peak_bytes(cfg, model, batch_size)
    server = server_bytes(cfg, model, owners)
    need = server + parallel * per_owner
    free = available_memory()
    if free is None or need <= free:
        return
    fits = int((free - server) // per_owner)
    fix = (
        f"pass --sim-parallel {fits} (or fewer)"
        if fits >= 1
        else "even one owner at a time does not fit: use a smaller --image-size or model"
    )
    raise ConfigError(
        f"simulating {owners} owners, {parallel} at a time, needs about {_gib(need)} of memory "
        f"({_gib(per_owner)} per owner training) but this machine has {_gib(free)} available; "
        f"{fix}"
    )


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"


def parallel_owners(sim_parallel: int | None, owners: int) -> int:
    """K: owners training at once, never more than there are owners; by default one per CPU
    this process may use (its affinity, which containers and ``taskset`` narrow)."""
    if sim_parallel is None:
        try:
            sim_parallel = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            sim_parallel = os.cpu_count() or 1
    if sim_parallel < 1:
        raise ConfigError(f"--sim-parallel must be >= 1, got {sim_parallel}")
    return min(int(sim_parallel), owners)


class SimulatedOwners(ClientApp):
    """privsynth's ClientApp for every virtual owner. Flower's simulation engine gives each
    virtual SuperNode only ``partition-id``/``num-partitions`` and an empty run config, so each
    call first receives what ``flwr run`` and ``--node-config`` give a real SuperNode: the run
    config and this owner's node config (its ledger, or its own ``data-path``)."""

    def __init__(self, run_config: dict[str, Any], node_configs: list[dict[str, Any]]):
        super().__init__()
        self.run_config = dict(run_config)
        self.node_configs = [dict(n) for n in node_configs]

    def __call__(self, message: Message, context: Context) -> Message:
        from .client_app import app

        context.node_config.update(self.node_configs[int(context.node_config["partition-id"])])
        # The engine refuses a context whose run config changed: lend it for this call only.
        given = dict(context.run_config)
        context.run_config.update(self.run_config)
        try:
            return app(message, context)
        finally:
            context.run_config.clear()
            context.run_config.update(given)


def run_simulated(
    cfg: dict[str, Any], nodes: list[dict[str, Any]], parallel: int, log: Path
) -> None:
    """Run the federation on Flower's simulation engine; the ServerApp writes ``out-dir``.
    Flower's log goes to ``log`` (as the real deployment's go to its SuperNodes' log files)."""
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    from .server_app import run_federation

    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        context.run_config.update(cfg)
        run_federation(grid, context)

    with _flower_log_to(log), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # Ray's notes on its own future defaults
        run_simulation(
            server_app=server,
            client_app=SimulatedOwners(cfg, nodes),
            num_supernodes=len(nodes),
            backend_config={
                # K actors of one CPU each: Ray never runs more than K ClientApps at once
                "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                "init_args": {
                    "num_cpus": parallel,
                    "num_gpus": 0,
                    "logging_level": "ERROR",
                    "log_to_driver": False,
                },
            },
        )


@contextmanager
def _flower_log_to(path: Path) -> Iterator[None]:
    """Flower's logger writes to ``path`` only (one line per owner and round would bury the
    card the CLI prints); its handlers come back afterwards."""
    logger = logging.getLogger("flwr")
    saved = logger.handlers[:], logger.propagate
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.handlers, logger.propagate = [handler], False
    try:
        yield
    finally:
        handler.close()
        logger.handlers, logger.propagate = saved
