"""``privsynth.sweep``: the privacy-utility frontier, methods x epsilons, trained and evaluated.

Every cell is an ordinary run folder written by `privsynth.train` in ``out/cells/<method>-eps<e>``
so a sweep is resumable for free: a cell whose card says ``complete`` is kept (not retrained), an
unfinished one resumes from its checkpoint, and its evaluation is cached in ``eval.json``.
``inf`` trains the method's non-private twin (dpvae -> vae, ...; dpmerf with no DP); its rows say
``"private": false`` and carry no epsilon, and the table's ``epsilons`` lists the private targets.

Several machines: ``--ray HOST:PORT`` runs each cell as a task on a Ray cluster (`sweep_ray`),
with ``--out`` on a folder every node mounts and ``--ledger`` a PostgreSQL URL every node reaches
(a SQLite file on a network share is not safe for concurrent writers). One sweep writes a folder
at a time: a second one started on the same ``--out`` is refused while the first runs.

Privacy: all cells spend on the same dataset, and the ledger (the per-user one, or ``ledger``)
adds them up. Choosing the best cell of a sweep run on private data is hyper-parameter selection on
that data, which none of the per-cell epsilons covers: run sweeps on public or proxy data to pick a
method, then train once on the private set.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path, write_json
from ..data import ImageDataset, load_split
from ..errors import ConfigError
from ..evaluate.classifier import embed, fixed_epochs, train_classifier
from ..evaluate.diversity import collapse_flags, within_class_diversity
from ..evaluate.fidelity import frechet
from ..evaluate.utility import DEFAULT_N_SYNTHETIC, DEFAULT_PASSES, balanced_labels, trtr, tstr
from ..lock import hold_output
from ..models.defaults import recommended_config
from ..models.registry import METHODS, twin_of
from ..nodp import is_private
from ..report.markdown import collapse_text
from ..report.plots_sweep import plot_frontier
from ..run import Run, read_card


def parse_epsilons(text: str) -> list[float]:
    """``--epsilons``: numbers, or inf/infinity/nodp for a cell without DP (math.inf)."""
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        try:
            eps = math.inf if part in ("inf", "infinity", "nodp") else float(part)
        except ValueError:
            raise ConfigError(f"--epsilons: '{part}' is not a number; e.g. 1,2,5,10,inf") from None
        if not eps > 0:
            raise ConfigError(f"--epsilons: {part} must be > 0 (or inf for no DP)")
        out.append(eps)
    return out


def cell_name(method: str, eps: float) -> str:
    return f"{method}-eps{'inf' if math.isinf(eps) else f'{eps:g}'}"


def sweep(
    data: str | Path | ImageDataset,
    methods: list[str],
    epsilons: list[float],
    out: str | Path,
    *,
    delta: float | None = None,
    accountant: str = "prv",
    configs: dict[str, dict[str, Any]] | None = None,
    holdout: float | str = 0.2,
    split_seed: int = 0,
    image_size: int | None = None,
    seed: int = 0,
    n_synthetic: int | None = None,
    eval_epochs: int | None = None,
    progress: bool = True,
    jobs: int = 1,
    ray: str | None = None,
    ray_cpus_per_cell: float = 1.0,
    ray_gpus_per_cell: float = 0.0,
    ledger: str | Path | None = None,
    budget: float | None = None,
    force: bool = False,
) -> dict:
    """Train and evaluate every (method, epsilon) cell; write ``sweep.json``, ``sweep.md`` and
    ``sweep.png`` in ``out``. Returns the table as a dict.

    ``configs[method]`` overrides the size-based defaults (`models.defaults.recommended_config`).
    Utility: TSTR accuracy of the LeNet on the real holdout, under the protocol of
    docs/evaluation.md: ``n_synthetic`` (default 10 000) class-balanced synthetic images, a fixed
    schedule of about 150 000 images seen, the last epoch tested once (``eval_epochs`` fixes the
    epochs instead, e.g. 1 in tests); the train-on-real ceiling under the same rule. Fidelity:
    Fréchet distance between LeNet features of synthetic and real holdout images, in the feature
    space of a LeNet trained on the real training split.
    ``jobs`` > 1 trains that many unfinished cells at once in worker processes (each with
    ``cores // jobs`` torch threads; small models use cores better side by side than threaded);
    evaluation then runs in this process, cell by cell.
    ``ray``: train the unfinished cells as Ray tasks instead (`sweep_ray`): ``"auto"`` on a new
    local Ray instance (``jobs`` x ``ray_cpus_per_cell`` CPUs if ``jobs`` > 1, else all cores),
    or ``"HOST:PORT"`` on a running cluster; each task holds ``ray_cpus_per_cell`` CPUs and
    ``ray_gpus_per_cell`` GPUs (a fraction shares one; > 0 trains on CUDA).
    ``budget``: every private cell is checked against the dataset's budget in ``ledger`` before it
    trains, like `train`; the first cell that would exceed it stops the sweep (finished cells stay).
    A second sweep into the same ``out`` while this one runs is refused (`lock.hold_output`).
    """
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}; use 1 to train cells one by one")
    if ray is not None:
        from .sweep_ray import check_request

        check_request(ray, ray_cpus_per_cell, ray_gpus_per_cell, ledger)
    out = Path(out)
    with hold_output(out, "privsynth sweep"):
        dataset, parts = load_split(data, holdout, split_seed, image_size)
        train_set, hold = dataset.subset(parts.train), dataset.subset(parts.holdout)
        todo = _plan(methods, epsilons, out, train_set, configs or {})
        ref = _reference(train_set, hold, dataset.num_classes, eval_epochs, seed)
        # Pass the data spec (not the arrays) so each card records where to reload it.
        source = dataset if isinstance(data, ImageDataset) else data
        common = dict(
            delta=delta,
            accountant=accountant,
            holdout=holdout,
            split_seed=split_seed,
            seed=seed,
            image_size=image_size,
            ledger=ledger,
            budget=budget,
            force=force,
        )
        ray_request = (ray, ray_cpus_per_cell, ray_gpus_per_cell) if ray is not None else None
        train_seconds = _train_unfinished(source, todo, common, jobs, ray_request)
        evaluation = dict(ref=ref, n=n_synthetic or DEFAULT_N_SYNTHETIC, eval_epochs=eval_epochs)
        rows = _train_and_evaluate(source, todo, common, train_seconds, evaluation, progress)
        table = _table(dataset.name, train_set, hold, methods, epsilons, ref, eval_epochs, rows)
        write_json(out / "sweep.json", table)
        with atomic_path(out / "sweep.md") as tmp:
            tmp.write_text(markdown(table))
        plot_frontier(table, out / "sweep.png")
    return table


def _table(name, train_set, hold, methods, epsilons, ref: _Reference, eval_epochs, rows) -> dict:
    return {
        "data": name,
        "n_train": len(train_set),
        "n_holdout": len(hold),
        "methods": methods,
        "epsilons": [e for e in epsilons if math.isfinite(e)],
        "train_on_real_accuracy": ref.ceiling,
        "frechet_real_train_vs_holdout": ref.frechet_floor,
        "classifier": (
            f"LeNet, {eval_epochs} epochs"
            if eval_epochs
            else f"LeNet, fixed schedule (~{DEFAULT_PASSES} images seen), last epoch"
        ),
        "rows": rows,
        "reference_eval_seconds": round(ref.seconds, 2),
    }


@dataclass
class _Reference:
    """What every cell is measured against: the train-on-real ceiling and the feature space."""

    ceiling: float
    real_model: Any
    real_feats: np.ndarray
    frechet_floor: float
    seconds: float
    hold: ImageDataset
    k: int
    seed: int


def _reference(
    train_set: ImageDataset, hold: ImageDataset, k: int, eval_epochs: int | None, seed: int
) -> _Reference:
    t0 = time.time()
    ceiling = trtr(
        train_set.images,
        train_set.labels,
        hold.images,
        hold.labels,
        k,
        epochs=eval_epochs,
        seed=seed,
    )["accuracy"]
    # the feature space of the Fréchet distance: a LeNet on the real training split
    feature_epochs = eval_epochs or fixed_epochs(len(train_set), DEFAULT_PASSES)
    real_model = train_classifier(
        train_set.images, train_set.labels, k, epochs=feature_epochs, seed=seed
    )
    real_feats = embed(real_model, hold.images)
    # Reference: the same distance between the real training split and the holdout (a floor).
    frechet_floor = frechet(real_feats, embed(real_model, train_set.images))
    return _Reference(
        ceiling, real_model, real_feats, frechet_floor, time.time() - t0, hold, k, seed
    )


def _plan(
    methods: list[str], epsilons: list[float], out: Path, train_set, configs: dict
) -> list[tuple[str, float, Path, dict]]:
    """(method, epsilon, cell folder, config) of every cell, methods-major."""
    for m in methods:
        if m not in METHODS:
            raise ConfigError(f"unknown method '{m}' in --methods; choose from {sorted(METHODS)}")
    return [
        (
            m,
            e,
            out / "cells" / cell_name(m, e),
            {
                **recommended_config(m, len(train_set), e, train_set.image_shape[0]),
                **configs.get(m, {}),
            },
        )
        for m in methods
        for e in epsilons
    ]


def _train_and_evaluate(
    source, todo, common: dict, train_seconds: dict[Path, float], evaluation: dict, progress: bool
) -> list[dict]:
    """One row per cell: trained here if no worker did (one by one), then evaluated here."""
    from tqdm.auto import tqdm

    rows = []
    for method, eps, cell, config in tqdm(
        todo, desc="sweep cells", disable=not progress, leave=False
    ):
        t1 = time.time()
        done = _complete(cell) and cell not in train_seconds  # finished by an earlier invocation
        if _complete(cell):
            run = Run.load(cell)
        else:
            run = _train_cell(source, method, eps, cell, config, common, progress)
        train_s = train_seconds.get(cell, time.time() - t1)
        rows.append(_evaluate_cell(run, cell, method, eps, done, train_s, **evaluation))
    return rows


def _complete(cell: Path) -> bool:
    return (cell / "card.json").exists() and read_card(cell).get("status") == "complete"


def _train_cell(
    source, method: str, eps: float, cell: Path, config: dict, common: dict, progress: bool
) -> Run:
    """The cell's run; at eps = inf the method's non-private twin (or the method with no DP)."""
    from .. import train

    if math.isfinite(eps):
        return train(source, method, cell, epsilon=eps, config=config, progress=progress, **common)
    twin = twin_of(method)  # it takes no privacy flags (train refuses them)
    common = {**common, "delta": None, "budget": None}
    no_dp = twin is None
    return train(
        source, twin or method, cell, no_dp=no_dp, config=config, progress=progress, **common
    )


def _worker(source, method, eps, cell, config, common, threads) -> tuple[Path, float]:
    # for whatever this process starts later (MKL, a subprocess): the count torch gets below
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    t = time.time()
    _train_cell(source, method, eps, cell, config, common, progress=False)
    return cell, time.time() - t


def _train_parallel(source, todo, common: dict, jobs: int) -> dict[Path, float]:
    """Train the unfinished cells ``jobs`` at a time; returns each one's training seconds.

    The ledger books each cell in its own transaction, so concurrent cells book safely."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    # spawn, not fork: forking a process that already ran torch threads can deadlock
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = [
            pool.submit(_worker, source, m, e, cell, cfg, common, threads)
            for m, e, cell, cfg in todo
            if not _complete(cell)
        ]
        return dict(f.result() for f in futures)


def _train_unfinished(source, todo, common: dict, jobs: int, ray_request) -> dict[Path, float]:
    """Train the unfinished cells in workers (Ray tasks, or ``jobs`` > 1 processes); returns
    each one's training seconds. With neither, nothing here: they train one by one later."""
    if ray_request is None:
        return _train_parallel(source, todo, common, jobs) if jobs > 1 else {}
    from . import sweep_ray

    address, cpus, gpus = ray_request
    if gpus > 0:  # the task's GPU share is all it sees (Ray sets CUDA_VISIBLE_DEVICES)
        common = {**common, "device": "cuda"}
    cells = [(source, m, e, cell, cfg, common) for m, e, cell, cfg in todo if not _complete(cell)]
    num_cpus = math.ceil(jobs * cpus) if jobs > 1 else (os.cpu_count() or 1)
    return sweep_ray.train_cells(
        address, _worker, cells, num_cpus=num_cpus, cpus_per_cell=cpus, gpus_per_cell=gpus
    )


def _evaluate_cell(
    run, cell, method, eps, skipped, train_s, *, ref: _Reference, n: int, eval_epochs
) -> dict:
    cached = cell / "eval.json"
    if cached.exists():
        row = json.loads(cached.read_text())
        row["skipped_training"] = skipped
        return row
    t = time.time()
    hold, k, seed = ref.hold, ref.k, ref.seed
    images, labels = run.sample(n, labels=balanced_labels(n, k, seed), seed=seed)
    acc = tstr(images, labels, hold.images, hold.labels, k, epochs=eval_epochs, seed=seed)[
        "accuracy"
    ]
    fd = frechet(ref.real_feats, embed(ref.real_model, images))
    # next to every Fréchet figure: is the variety there? (spread vs the real holdout's)
    div = within_class_diversity(hold.images, hold.labels, images, labels, k, seed=seed)
    row = {
        "method": method,
        "run_method": run.method,
        "private": run.private,
        "epsilon": eps if run.private else None,
        "epsilon_spent": run.epsilon if run.private else None,
        "tstr_accuracy": acc,
        "frechet_lenet": fd,
        "n_synthetic": n,
        "within_class_spread": div["ratio_mean"],
        "collapse_flags": collapse_flags(div),
        "train_seconds": round(float(run.card["train"].get("wall_seconds", train_s)), 2),
        "eval_seconds": round(time.time() - t, 2),
        "run": str(cell),
        "skipped_training": skipped,
    }
    write_json(cached, row)
    return row


def markdown(table: dict) -> str:
    lines = [
        f"## Privacy-utility sweep on {table['data']} ({table['n_train']} train / "
        f"{table['n_holdout']} holdout)",
        "",
        f"Train-on-real ceiling (TRTR, {table['classifier']}): "
        f"**{table['train_on_real_accuracy']:.1%}**; Fréchet (LeNet features) real train vs "
        f"holdout: {table['frechet_real_train_vs_holdout']:.3g}",
        "",
        "| method | epsilon | epsilon spent | TSTR accuracy | Fréchet (LeNet) | "
        "within-class spread syn/real | collapse? | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in table["rows"]:
        eps, spent = (
            (r["epsilon"], f"{r['epsilon_spent']:.3g}") if is_private(r) else ("no DP", "∞")
        )
        spread = r.get("within_class_spread")
        flags = r.get("collapse_flags")
        lines.append(
            f"| {r['method']} | {eps} | {spent} | {r['tstr_accuracy']:.1%} | "
            f"{r['frechet_lenet']:.3g} | "
            f"{'–' if spread is None else f'{spread:.2f}'} | "
            f"{'–' if flags is None else collapse_text(flags)} | "
            f"{r['train_seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def best(table: dict, epsilon: float) -> dict | None:
    """The row with the highest TSTR accuracy at target ``epsilon``."""
    rows = [r for r in table["rows"] if is_private(r) and np.isclose(r["epsilon"], epsilon)]
    return max(rows, key=lambda r: r["tstr_accuracy"]) if rows else None
