"""Sweep cells as Ray tasks, on a local Ray instance (``auto``) or a cluster (``HOST:PORT``).

Each cell is one task holding its resource request (CPUs, a GPU fraction) and runs in a fresh
worker process (``max_calls=1``): a cell's torch threads, CUDA context and peak memory are its
own, as with ``--jobs``. Cells write into the sweep's own folder, so on a cluster that folder
must be on a file system every node mounts at the same path, and the cells' spends must reach
one ledger every node reaches: a PostgreSQL URL (each node's per-user SQLite file would split the
dataset's spend across machines, and no budget check would see the sum).
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import ConfigError, MissingExtra

LOCAL = "auto"
EXTRA = "pip install -e \".[ray]\" (or pip install 'privsynth[ray]')"
# Cells pass only a data spec and their config through Ray's object store (the dataset is
# loaded in the task), so a small store is enough and leaves the memory to training.
OBJECT_STORE_BYTES = 128 * 1024**2


def import_ray():
    try:
        import ray
    except ImportError:
        raise MissingExtra(
            f"--ray needs Ray, which is not installed; install the extra: {EXTRA}"
        ) from None
    return ray


def check_request(
    address: str, cpus_per_cell: float, gpus_per_cell: float, ledger: str | os.PathLike[str] | None
) -> None:
    """Refuse, before anything trains, what the Ray run could not do: Ray missing, a resource
    request Ray rejects, or (on a cluster) a ledger that only this machine sees."""
    from ..privacy.ledger import resolve_location

    if not cpus_per_cell > 0:
        raise ConfigError(f"--ray-cpus-per-cell must be > 0, got {cpus_per_cell}; e.g. 1 or 0.5")
    if not gpus_per_cell >= 0:
        raise ConfigError(f"--ray-gpus-per-cell must be >= 0, got {gpus_per_cell}; e.g. 0.5")
    import_ray()
    if address == LOCAL:
        return
    location = resolve_location(ledger)
    if not location.lower().startswith(("postgres://", "postgresql://", "postgresql+")):
        raise ConfigError(
            f"--ray {address}: cells train and book on several machines, but the ledger "
            f"'{location}' is a file of this one; pass --ledger postgresql://... that every "
            "node reaches (or use --ray auto on one machine)"
        )


@contextlib.contextmanager
def connected(address: str, num_cpus: int) -> Iterator[Any]:
    """Ray, initialised for the body: a new local instance of ``num_cpus`` CPUs for ``auto``,
    else the cluster at ``address``. A Ray the caller already initialised is used and left up."""
    ray = import_ray()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network: never phone home
    # CPU cells train on device "cpu" whatever they see; this only silences Ray's notice that
    # it will stop hiding GPUs from tasks that asked for none
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    if ray.is_initialized():
        yield ray
        return
    try:
        if address == LOCAL:
            # "local", not Ray's "auto": always our own instance, never someone's running one
            ray.init(
                address="local",
                num_cpus=num_cpus,
                object_store_memory=OBJECT_STORE_BYTES,
                include_dashboard=False,
                log_to_driver=False,
            )
        else:
            ray.init(address=address, log_to_driver=False)
    except ConnectionError as e:
        raise ConfigError(
            f"--ray {address}: no Ray cluster answers there ({e}); start one with "
            "`ray start --head` and pass its address, or use --ray auto"
        ) from None
    try:
        yield ray
    finally:
        ray.shutdown()


def train_cells(
    address: str,
    worker: Callable[..., tuple[Path, float]],
    cells: list[tuple],
    *,
    num_cpus: int,
    cpus_per_cell: float,
    gpus_per_cell: float,
) -> dict[Path, float]:
    """Run ``worker(*cell, threads)`` for every cell as a Ray task; returns each cell's seconds.

    Every task runs to its end before the first failure is raised (as a process pool's do), so
    no cell is cut off half-booked; the failure is the cell's own exception, not Ray's wrapper."""
    if not cells:
        return {}
    threads = max(1, math.floor(cpus_per_cell))  # torch threads of a cell = the CPUs it holds
    with connected(address, num_cpus) as ray:
        task = ray.remote(max_calls=1)(worker).options(
            num_cpus=cpus_per_cell,
            num_gpus=gpus_per_cell,
            runtime_env={"env_vars": {"OMP_NUM_THREADS": str(threads)}},
        )
        refs = [task.remote(*cell, threads) for cell in cells]
        seconds: dict[Path, float] = {}
        failure: BaseException | None = None
        for ref in refs:
            try:
                cell, sec = ray.get(ref)
                seconds[cell] = sec
            except ray.exceptions.RayTaskError as e:
                failure = failure or (e.cause if e.cause is not None else e)
        if failure is not None:
            raise failure
    return seconds
