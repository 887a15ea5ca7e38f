"""``privsynth.federate``: train one generator across N data owners with Flower; write a run folder.

``mode="processes"`` (the CLI's default) runs a real local deployment — a SuperLink and N SuperNodes
as separate processes on 127.0.0.1, driven by ``flwr run``; ``mode="inprocess"`` runs the same
ServerApp and ClientApp code with messages passed by function call (tests, benchmarks);
``mode="simulate"`` runs them on Flower's simulation engine (Ray), K owners at a time
(``simulate.py``).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from ..data import DataSource, load_dataset, split
from ..errors import BudgetError, CheckpointError, ConfigError, PrivsynthError
from ..models.registry import is_private, method_class
from ..privacy.accounting import PrivacySpec, calibrate_noise, epsilon_from_history
from ..privacy.dpsgd import sample_rate
from ..privacy.ledger import resolve_location
from ..privacy.ledger.store import is_url
from ..run import Card, Run, RunWriter, data_check, read_card
from .partition import partition
from .runconfig import (
    DEFAULTS,
    privacy_run_config,
    privacy_spec,
    require_dp_accounting,
)

AGGREGATIONS = ("plain", "secagg", "ckks")


def build_run_config(
    data: str,
    method: str,
    out: Path,
    clients: int,
    rounds: int,
    *,
    local_steps: int,
    fraction: float,
    aggregation: str,
    privacy: PrivacySpec | None,
    client_epsilon: float | None,
    client_noise: float | None,
    client_clip: float,
    client_delta: float,
    dirichlet: float | None,
    holdout: float,
    split_seed: int,
    seed: int,
    image_size: int | None,
    config: dict | None,
    owner_data: list[str] | None,
) -> tuple[dict, list[dict]]:
    """The Flower run config (``[tool.flwr.app.config]``) and one node config per owner."""
    if aggregation not in AGGREGATIONS:
        raise ConfigError(f"unknown aggregation '{aggregation}'; choose one of {AGGREGATIONS}")
    if rounds < 1 or local_steps < 1:
        raise ConfigError("--rounds and --local-steps must be >= 1")
    if not 0 < fraction <= 1:
        raise ConfigError(f"--fraction must lie in (0, 1], got {fraction}")
    if owner_data:
        clients = len(owner_data)
    if clients < 2:
        raise ConfigError(f"--clients must be >= 2 for a federation, got {clients}")
    dataset = load_dataset(
        _owner_source(data, owner_data[0]) if owner_data else data, image_size=image_size
    )
    c, h, _ = dataset.image_shape
    if owner_data:
        sizes = [len(load_dataset(_owner_source(data, p), image_size=h)) for p in owner_data]
        nodes = [{"data-path": str(Path(p).resolve())} for p in owner_data]
    else:
        parts = split(dataset, holdout, split_seed)
        owners = partition(
            dataset.subset(parts.train),
            clients,
            "dirichlet" if dirichlet else "iid",
            dirichlet or 0.3,
            seed,
        )
        sizes = [len(o) for o in owners]
        nodes = [{"partition-id": i, "num-partitions": clients} for i in range(clients)]
    source = "digits" if str(data) == "digits" else str(Path(data).resolve())
    cfg: dict[str, Any] = {
        **DEFAULTS,
        **privacy_run_config(privacy),
        "method": method,
        "model-config": json.dumps(config or {}),
        "data": source,
        # The public format inputs (classes, channels, pixel range...) every owner reads with.
        "data-format": json.dumps(data.options() if isinstance(data, DataSource) else {}),
        "image-size": h,
        "image-channels": c,
        "num-classes": dataset.num_classes,
        "class-names": ",".join(dataset.class_names),
        "holdout": holdout,
        "split-seed": split_seed,
        "partition": "dirichlet" if dirichlet else "iid",
        "alpha": float(dirichlet or 0.0),
        "partition-seed": seed,
        "num-server-rounds": rounds,
        "local-steps": local_steps,
        "fraction-train": fraction,
        "min-nodes": max(2, round(fraction * clients)),
        "aggregation": aggregation,
        "client-noise": 0.0,
        "client-clip": client_clip,
        "client-delta": client_delta,
        "out-dir": str(out.resolve()),
        "seed": seed,
        "max-weight": float(max(sizes)),
    }
    # client-level DP (runconfig.resolve then sets equal weights and SecAgg+'s max-weight to 1)
    if client_noise is not None:  # a fixed noise multiplier; 0 = off
        cfg["client-noise"] = float(client_noise)
    elif client_epsilon is not None:
        cfg["client-noise"] = calibrate_noise(client_epsilon, client_delta, 1.0, rounds, "rdp")
    if cfg["client-noise"] > 0:
        cfg["client-owners"] = cfg["min-nodes"]  # m, declared before any owner connects
        if aggregation == "plain":
            require_dp_accounting()
    # Poisson-sampled DP-SGD batches must fit in every owner's data; a one-shot method's
    # batch_size counts generated images, not private ones (it has no private batches).
    min_n, dp_sgd = min(sizes), method_class(method).kind == "dp-sgd"
    batch = _batch_size(method, config) if dp_sgd else 0
    if privacy is not None and dp_sgd and batch > min_n:
        raise ConfigError(
            f"batch size {batch} exceeds the smallest owner's {min_n} images; pass "
            f"--batch-size {max(1, min_n // 4)} or fewer --clients"
        )
    return cfg, nodes


def federate(
    data: str = "digits",
    method: str = "dpgan",
    out: str | Path = "runs/federated",
    clients: int = 5,
    rounds: int = 10,
    *,
    local_steps: int = 20,
    fraction: float = 1.0,
    aggregation: str = "plain",
    epsilon: float | None = 10.0,
    delta: float | None = None,
    clip: float = 1.0,
    accountant: str = "prv",
    noise_multiplier: float | None = None,
    client_epsilon: float | None = None,
    client_noise: float | None = None,
    client_clip: float = 1.0,
    client_delta: float = 1e-5,
    dirichlet: float | None = None,
    holdout: float = 0.2,
    split_seed: int = 0,
    seed: int = 0,
    image_size: int | None = None,
    config: dict | None = None,
    owner_data: list[str] | None = None,
    mode: str = "processes",
    sim_parallel: int | None = None,
    tls: tuple[str, str, str] | None = None,
    overwrite: bool = False,
    timeout: float = 1800,
    ledger: str | Path | None = None,
    budget: float | None = None,
    force: bool = False,
    extra_run_config: dict | None = None,
) -> Run:
    """Train ``method`` across ``clients`` owners with FedAvg for ``rounds`` rounds.

    ``epsilon``: sample-level target per owner (DP-SGD inside each owner; None/0 = off).
    ``client_epsilon`` (or ``client_noise``): client-level DP by server-side Gaussian noise.
    ``aggregation``: ``plain`` | ``secagg`` (SecAgg+) | ``ckks`` (TenSEAL). ``dirichlet``: alpha of
    a non-IID label split (None = IID). ``owner_data``: one dataset path per owner instead.
    ``mode="simulate"``: Flower's simulation engine, at most ``sim_parallel`` owners (Ray actors)
    training at once (default: the CPU count); refused up front when they cannot fit in memory.
    ``budget``: a per-owner epsilon limit on top of each owner's dataset budget in its ledger.
    Every owner reserves its whole plan under that check before it trains, and books what it
    spends (like `train`; ``force`` overrides); the launcher checks first, before any round.
    """
    out = Path(out)
    if mode == "simulate":  # before --out is touched: a missing Ray is one line, nothing written
        from .simulate import require_simulation

        require_simulation()
    privacy = None
    if is_private(method) and (epsilon or noise_multiplier):
        # fix the owners' DP-SGD sigma (noise_multiplier) or calibrate it for epsilon
        privacy = PrivacySpec(
            epsilon=epsilon or None,
            delta=delta,
            noise_multiplier=noise_multiplier or None,
            max_grad_norm=clip,
            accountant=accountant,
        )
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise CheckpointError(
                f"'{out}' is not empty; choose another --out or pass --overwrite "
                "(owners' spends stay in their ledgers)"
            )
        shutil.rmtree(out)
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        cfg, nodes = build_run_config(
            data,
            method,
            out,
            clients,
            rounds,
            local_steps=local_steps,
            fraction=fraction,
            aggregation=aggregation,
            privacy=privacy,
            client_epsilon=client_epsilon,
            client_noise=client_noise,
            client_clip=client_clip,
            client_delta=client_delta,
            dirichlet=dirichlet,
            holdout=holdout,
            split_seed=split_seed,
            seed=seed,
            image_size=image_size,
            config=config,
            owner_data=owner_data,
        )
        if mode == "simulate":  # refused before Ray starts when K owners at once cannot fit
            from .simulate import check_memory, parallel_owners

            sim_parallel = parallel_owners(sim_parallel, len(nodes))
            check_memory(cfg, len(nodes), sim_parallel, _batch_size(method, config))
    except BaseException:
        if made:  # a refused configuration (--clients 1, --fraction 0) leaves no empty --out
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    cfg.update(extra_run_config or {})
    from .oneshot import is_oneshot, prepare_run_config  # fedmerf: one-shot release (dpmerf)

    if is_oneshot(method):
        prepare_run_config(cfg, nodes)
    # Owners book into the ledger every verb finds (privacy/ledger.py), keyed by their data.
    location = resolve_location(ledger)
    location = location if is_url(location) else str(Path(location).expanduser().resolve())
    # every owner reserves under its budget before it trains (owner.py); checked here first so
    # a refusal comes before any process starts (the dataset's budget applies without --budget)
    cfg.update({"federation-id": uuid.uuid4().hex, "budget": float(budget or 0.0), "force": force})
    if privacy is not None:
        try:
            _check_budgets(cfg, nodes, location, budget, force)
        except PrivsynthError:
            with contextlib.suppress(OSError):
                out.rmdir()  # created above and still empty: leave nothing behind
            raise
    work = out / "federation"
    if aggregation == "ckks":
        from .encrypted import make_keys

        secret, public = make_keys(work / "keys")
        cfg["ckks-public"], cfg["ckks-secret"] = str(public), str(secret)
    if privacy is not None:
        for n in nodes:
            n["ledger"] = location
    if mode == "inprocess":
        from .inprocess import InProcessGrid, server_context
        from .server_app import run_federation

        run_federation(InProcessGrid(nodes, cfg), server_context(cfg))
    elif mode == "processes":
        from .launch import flwr_run, local_deployment, write_app

        app_dir = write_app(work / "app", cfg)
        with local_deployment(nodes, work, tls) as dep:
            rc = flwr_run(app_dir, dep["env"], work / "flwr-run.log", timeout)
        if not (out / "card.json").exists():
            raise ConfigError(
                f"the federated run failed (flwr run exit {rc}); see the logs in {work}"
            )
    elif mode == "simulate":
        from .simulate import run_simulated

        run_simulated(cfg, nodes, int(sim_parallel or 1), work / "simulation.log")
        if not (out / "card.json").exists():
            raise ConfigError(
                f"the simulated federation wrote no run; see {work / 'simulation.log'}"
            )
    else:
        raise ConfigError(f"unknown mode '{mode}'; use 'processes', 'inprocess' or 'simulate'")
    _complete_card(out, data, owner_data, holdout, split_seed, image_size)
    if aggregation == "ckks":  # the secret key must not stay beside the released run
        (work / "keys" / "ckks-secret.bin").unlink(missing_ok=True)
    run = Run.load(out)
    _write_samples(run, out, seed)
    return run


def _batch_size(method: str, config: dict | None) -> int:
    """The method's (expected) batch size under ``config``: its config class decides."""
    from ..models.base import build_config

    return int(build_config(method_class(method).config_class, config).batch_size)


def _owner_source(data, path: str) -> DataSource | str:
    """An owner's own data path, read with the run's format inputs."""
    return data.with_path(path) if isinstance(data, DataSource) else path


def _owner_epsilon(cfg: dict, spec: PrivacySpec, n_owned: int) -> float:
    """The epsilon this federation plans to spend on the data of an owner of ``n_owned`` images."""
    method = str(cfg["method"])
    if method_class(method).federates_by == "release-sum":
        from .oneshot import release_epsilon

        return release_epsilon(cfg)[0]  # one release (sigma, q = 1, 1 step), no rounds
    if spec.noise_multiplier is None:
        return spec.epsilon  # calibrated to the target
    # a fixed sigma: what this owner's DP-SGD plan spends
    q = sample_rate(n_owned, _batch_size(method, json.loads(str(cfg["model-config"]))))
    steps = int(cfg["num-server-rounds"]) * int(cfg["local-steps"])
    return epsilon_from_history(
        [(spec.noise_multiplier, q, steps)], spec.resolved_delta(n_owned), spec.accountant
    )


def _check_budgets(
    cfg: dict, nodes: list[dict], location: str, budget: float | None, force: bool
) -> None:
    """Each owner's images, exactly as its ClientApp will load them, against the ledger: the
    dataset's budget and ``budget``, checked (in the ledger's locked transaction) for the
    per-owner ``epsilon``. Check only: each owner reserves and books its own spend under the
    same check before it trains (owner.py)."""
    from ..privacy import Ledger
    from .task import load_owner_data

    ledger, run_id = Ledger(location), f"federated-check-{uuid.uuid4().hex[:8]}"
    spec = privacy_spec(cfg)
    for i, node in enumerate(nodes):
        owned = load_owner_data(node, cfg)
        epsilon = _owner_epsilon(cfg, spec, len(owned))
        try:
            segment = ledger.reserve(
                owned.source_fingerprint,
                owned.name,
                run_id=run_id,
                epsilon=epsilon,
                delta=0.0,
                kind="federated-check",
                limit=budget,
                force=force,
            )
        except BudgetError as e:
            raise BudgetError(
                f"owner {i + 1} of {len(nodes)}: this federation plans {epsilon:g} "
                f"(epsilon) on each owner's data; {e}"
            ) from None
        ledger.cancel(segment)  # it fits: drop the check's reservation, it used no data


def _complete_card(out: Path, data, owner_data, holdout, split_seed, image_size) -> None:
    """Local experiments split one dataset: record its keyed data check and split like `train`
    does."""
    card, parts = Card.from_json(read_card(out)), None
    if not owner_data:
        dataset = load_dataset(data, image_size=image_size)
        parts = split(dataset, holdout, split_seed)
        card.data.update(
            check=data_check(dataset, dataset.subset(parts.train)),
            source="digits" if str(data) == "digits" else str(Path(data).resolve()),
            image_size=image_size,
            format=data.options() if isinstance(data, DataSource) else None,
        )
    else:
        card.data.update(
            fingerprint="per-owner (each owner's ledger keys its own data)",
            owner_data=[str(Path(p).resolve()) for p in owner_data],
        )
    RunWriter(out, card, parts).write()


def _write_samples(run: Run, out: Path, seed: int) -> None:
    try:
        from ..report import save_grid
    except ImportError:  # report/grid.py landed on main after this branch started
        return

    k = len(run.class_names)
    images, labels = run.sample(10 * k, labels=[i // 10 for i in range(10 * k)], seed=seed)
    save_grid(out / "samples.png", images, labels, k)
