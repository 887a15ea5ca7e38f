"""Multi-process DP-SGD on ``torch.distributed``: one private model trained by N processes, with
the guarantee (and epsilon) of the same plan run by one process.

    privsynth train --nproc 2 ...                                 # N local processes (gloo, CPU)
    torchrun --nproc-per-node 2 -m privsynth.cli train ...        # any torchrun topology
    privsynth train --nproc 4 --dist-backend nccl --device cuda   # GPUs: process i on cuda:i

Why the guarantee is unchanged (Opacus' distributed DP-SGD, wired in ``dpsgd.make_private``):

- Poisson sampling stays global. The training set is split into N shards; every process draws each
  example of its shard independently with the plan's probability q (Opacus'
  ``DistributedUniformWithReplacementSampler``), so every example is in a step's batch with
  probability q, as in one process, and the steps and sigma are those of the one-process plan.
- Each process clips its own examples' gradients to C and sums them; process 0 alone adds the
  Gaussian noise N(0, sigma^2 C^2); the sums are added up over processes (all-reduce) and divided
  by the global expected batch. That is one Gaussian mechanism per step with sensitivity C.
- Every process books the same (sigma, q, steps) in its accountant; process 0's is written.

Only process 0 writes the run folder and the ledger; the others write theirs to a scratch folder
(and resume from a copy of process 0's checkpoint). The model starts from process 0's weights
(Opacus' ``DifferentiallyPrivateDistributedDataParallel`` broadcasts them) and every process
applies the same noised update, so the copies stay equal. A DP-GAN's generator (post-processing)
is kept equal the same way: weights broadcast, gradients averaged (``dpsgd`` helpers called from
``models/gan.py``). Methods that do not train with DP-SGD (dpmerf) gain nothing: every process
runs them whole and process 0's result is kept.

Caveat: Opacus' distributed sampler skips a process' *empty* local batch (it draws the next one),
which the Poisson analysis does not cover. Over the whole run that happens with probability at
most ``T * W * (1 - q)^(n / W)`` (T steps, W processes; a union bound); ``dpsgd.make_private``
refuses plans where that exceeds delta / 100, and the card adds it to delta
(``privacy.dp_sgd.empty_local_batch_delta``).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..request import RunRequest

BACKENDS = ("gloo", "nccl")
# What a process other than 0 copies from the run folder so it resumes where process 0 does.
RESUME_FILES = ("card.json", "split.json", "train_state.pt")


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def train(request: RunRequest, nproc: int = 1, backend: str = "gloo"):
    """`trainer.train` of ``request`` in ``nproc`` processes (or in the processes torchrun
    started). Returns the `Run` in process 0 and None in the others (under torchrun); with the
    nccl backend process i trains on ``cuda:<local rank>``.
    """
    from ..run import Run
    from .trainer import train as train_one

    if backend not in BACKENDS:
        raise ConfigError(f"unknown --dist-backend '{backend}'; choose one of {BACKENDS}")
    if (nproc > 1 or launched_by_torchrun()) and not request.private:
        raise ConfigError(
            "several processes share one DP-SGD run; a non-private run has "
            "nothing to share: drop --nproc (or torchrun) or the --no-dp flag"
        )
    if launched_by_torchrun():
        if nproc not in (1, int(os.environ["WORLD_SIZE"])):
            raise ConfigError(
                "under torchrun the process count comes from --nproc-per-node; drop --nproc"
            )
        dist.init_process_group(backend)
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0"))
        try:
            return _train_rank(dist.get_rank(), *local, backend, request)
        finally:
            dist.destroy_process_group()
    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {nproc}")
    if nproc == 1:
        return train_one(request)
    import torch.multiprocessing as mp

    port = free_port()
    mp.spawn(_spawned, args=(nproc, backend, port, request), nprocs=nproc, join=True)
    return Run.load(request.output.out, device="cpu")


def _spawned(rank: int, nproc: int, backend: str, port: int, request: RunRequest) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group(backend, rank=rank, world_size=nproc)
    try:
        _train_rank(rank, nproc, rank, backend, request)
    finally:
        dist.destroy_process_group()


def _train_rank(rank: int, local_world: int, local_rank: int, backend: str, request: RunRequest):
    from ..privacy import dpsgd
    from .trainer import train as train_one

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    if backend == "nccl":
        request = request.replace(device=f"cuda:{local_rank}")
        torch.cuda.set_device(local_rank)
    dpsgd.DISTRIBUTED_STEPS.clear()
    if rank == 0:
        run = train_one(request)
        if not dpsgd.DISTRIBUTED_STEPS:
            print(
                f"note: {run.method} does not train with DP-SGD; each of the "
                f"{dist.get_world_size()} processes ran it whole (no speed-up)"
            )
        return run
    out = request.output.out
    with tempfile.TemporaryDirectory(prefix=f"privsynth-rank{rank}-") as scratch:
        mirror = Path(scratch) / "run"
        if not request.output.overwrite and (out / "card.json").exists():
            mirror.mkdir()
            for name in RESUME_FILES:
                if (out / name).exists():
                    shutil.copy2(out / name, mirror / name)
        # A scratch ledger and no extras: only process 0 books the spend and writes the run
        quiet = request.replace(progress=False, budget=None, samples=False, quick_eval=False)
        train_one(quiet.replace(out=mirror, ledger=Path(scratch) / "ledger.sqlite"))
    return None


def free_port() -> int:
    """A TCP port free on the loopback interface now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
