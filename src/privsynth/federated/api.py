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

from ..data import DataSource, ImageDataset, load_dataset, split
from ..errors import BudgetError, CheckpointError, ConfigError
from ..models.registry import method_class
from ..privacy.accounting import PrivacySpec, calibrate_noise, epsilon_from_history
from ..privacy.dpsgd import sample_rate
from ..privacy.ledger import resolve_location
from ..privacy.ledger.store import is_url
from ..request import PrivacyRequest
from ..run import Card, Run, RunWriter, data_check, read_card
from .partition import partition
from .request import FederateRequest, FederationRequest
from .runconfig import DEFAULTS, privacy_run_config, privacy_spec, require_dp_accounting

AGGREGATIONS = ("plain", "secagg", "ckks")
MODES = ("processes", "inprocess", "simulate")


def federate(request: FederateRequest | None = None, /, **options: Any) -> Run:
    """Train ``request.method`` across the owners with FedAvg; write the run folder, return it.

    Keywords instead of a request are `FederateRequest.build`'s (``data=``, ``out=``,
    ``clients=``, ``epsilon=``...: each a field of one part; an unknown one is refused).
    Every owner reserves its whole plan under its ledger's budget check before it trains, and
    books what it spends (like `train`; ``force`` overrides); the launcher checks first.
    """
    if request is None:
        request = FederateRequest.build(**options)
    elif options or not isinstance(request, FederateRequest):
        raise ConfigError("federate takes one FederateRequest, or keywords (data=..., out=...)")
    out, fed = request.output.out, request.federation
    _check(request)  # before --out is touched: a refusal writes nothing
    if fed.mode == "simulate":
        from .simulate import require_simulation

        require_simulation()
    cfg, nodes = _prepare(request)
    work = out / "federation"
    if fed.aggregation == "ckks":
        from .encrypted import make_keys

        secret, public = make_keys(work / "keys")
        cfg["ckks-public"], cfg["ckks-secret"] = str(public), str(secret)
    _launch(fed, cfg, nodes, work)
    _complete_card(request)
    if fed.aggregation == "ckks":  # the secret key must not stay beside the released run
        (work / "keys" / "ckks-secret.bin").unlink(missing_ok=True)
    from ..report import save_grid

    run = Run.load(out)
    k = len(run.class_names)
    images, labels = run.sample(10 * k, [i // 10 for i in range(10 * k)], request.training.seed)
    save_grid(out / "samples.png", images, labels, k)
    return run


def _prepare(request: FederateRequest) -> tuple[dict, list[dict]]:
    """An empty ``out``, the run config and the node configs, every owner's budget checked; a
    refusal (memory, a budget) leaves no empty ``out`` behind."""
    out, fed = request.output.out, request.federation
    if out.exists() and any(out.iterdir()):
        if not request.output.overwrite:
            raise CheckpointError(
                f"'{out}' is not empty; choose another --out or pass --overwrite "
                "(owners' spends stay in their ledgers)"
            )
        shutil.rmtree(out)
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        cfg, nodes = build_run_config(request)
        if fed.mode == "simulate":  # refused before Ray starts when K owners at once cannot fit
            from .simulate import check_memory, parallel_owners

            k = parallel_owners(fed.sim_parallel, len(nodes))
            check_memory(cfg, len(nodes), k, _batch_size(request.method, request.training.config))
        cfg.update(fed.extra_run_config or {})
        from .oneshot import is_oneshot, prepare_run_config  # fedmerf: one-shot release (dpmerf)

        if is_oneshot(request.method):
            prepare_run_config(cfg, nodes)
        _owner_ledgers(cfg, nodes, request.privacy)
    except BaseException:
        if made:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    return cfg, nodes


def build_run_config(request: FederateRequest) -> tuple[dict, list[dict]]:
    """The Flower run config (``[tool.flwr.app.config]``) and one node config per owner."""
    fed, data, seed = request.federation, request.data, request.training.seed
    dataset, sizes, nodes = _owners(request)
    c, h, _ = dataset.image_shape
    spec = request.privacy_spec()
    cfg: dict[str, Any] = {
        **DEFAULTS,
        **privacy_run_config(spec),
        "method": request.method,
        "model-config": json.dumps(request.training.config or {}),
        "data": _source_name(data.source),
        # The public format inputs (classes, channels, pixel range...) every owner reads with.
        "data-format": json.dumps(_format(data.source) or {}),
        "image-size": h,
        "image-channels": c,
        "num-classes": dataset.num_classes,
        "class-names": ",".join(dataset.class_names),
        "holdout": data.holdout,
        "split-seed": data.split_seed,
        "partition": "dirichlet" if fed.dirichlet else "iid",
        "alpha": float(fed.dirichlet or 0.0),
        "partition-seed": seed,
        "num-server-rounds": fed.rounds,
        "local-steps": fed.local_steps,
        "fraction-train": fed.fraction,
        "min-nodes": max(2, round(fed.fraction * len(nodes))),
        "aggregation": fed.aggregation,
        "client-noise": _client_noise(fed),
        "client-clip": fed.client_clip,
        "client-delta": fed.client_delta,
        "out-dir": str(request.output.out.resolve()),
        "seed": seed,
        "max-weight": float(max(sizes)),
        # every owner reserves under its budget before it trains (owner.py)
        "federation-id": uuid.uuid4().hex,
        "budget": float(request.privacy.budget or 0.0),
        "force": request.privacy.force,
    }
    # client-level DP (runconfig.resolve then sets equal weights and SecAgg+'s max-weight to 1)
    if cfg["client-noise"] > 0:
        cfg["client-owners"] = cfg["min-nodes"]  # m, declared before any owner connects
        if fed.aggregation == "plain":
            require_dp_accounting()
    # Poisson-sampled DP-SGD batches must fit in every owner's data; a one-shot method's
    # batch_size counts generated images, not private ones (it has no private batches).
    if spec is not None and method_class(request.method).kind == "dp-sgd":
        batch, min_n = _batch_size(request.method, request.training.config), min(sizes)
        if batch > min_n:
            raise ConfigError(
                f"batch size {batch} exceeds the smallest owner's {min_n} images; pass "
                f"--batch-size {max(1, min_n // 4)} or fewer --clients"
            )
    return cfg, nodes


def _check(request: FederateRequest) -> None:
    fed, device = request.federation, request.training.device
    if device != "cpu":
        raise ConfigError(
            f"--device {device}: federated owners train on the CPU for now; drop --device"
        )
    if fed.sim_parallel is not None and fed.mode != "simulate":
        raise ConfigError(
            "--sim-parallel sets how many owners a simulation trains at once: add --simulate"
        )
    if fed.aggregation not in AGGREGATIONS:
        raise ConfigError(f"unknown aggregation '{fed.aggregation}'; choose one of {AGGREGATIONS}")
    if fed.mode not in MODES:
        raise ConfigError(f"unknown mode '{fed.mode}'; use 'processes', 'inprocess' or 'simulate'")
    if fed.rounds < 1 or fed.local_steps < 1:
        raise ConfigError("--rounds and --local-steps must be >= 1")
    if not 0 < fed.fraction <= 1:
        raise ConfigError(f"--fraction must lie in (0, 1], got {fed.fraction}")
    clients = len(fed.owner_data) if fed.owner_data else fed.clients
    if clients < 2:
        raise ConfigError(f"--clients must be >= 2 for a federation, got {clients}")


def _owners(request: FederateRequest) -> tuple[ImageDataset, list[int], list[dict]]:
    """The (first) dataset, each owner's image count, and one node config per owner."""
    data, fed = request.data, request.federation
    if fed.owner_data:
        first = load_dataset(_owner_source(data.source, fed.owner_data[0]), data.image_size)
        h = first.image_shape[1]
        sizes = [len(load_dataset(_owner_source(data.source, p), h)) for p in fed.owner_data]
        return first, sizes, [{"data-path": str(Path(p).resolve())} for p in fed.owner_data]
    dataset = load_dataset(data.source, image_size=data.image_size)
    train = dataset.subset(split(dataset, data.holdout, data.split_seed).train)
    scheme, alpha = ("dirichlet", fed.dirichlet) if fed.dirichlet else ("iid", 0.3)
    owners = partition(train, fed.clients, scheme, alpha, request.training.seed)
    nodes = [{"partition-id": i, "num-partitions": fed.clients} for i in range(fed.clients)]
    return dataset, [len(o) for o in owners], nodes


def _client_noise(fed: FederationRequest) -> float:
    """Client-level DP's noise multiplier: fixed, calibrated to ``client_epsilon``, or 0 = off."""
    if fed.client_noise is not None:
        return float(fed.client_noise)
    if fed.client_epsilon is not None:
        return calibrate_noise(fed.client_epsilon, fed.client_delta, 1.0, fed.rounds, "rdp")
    return 0.0


def _launch(fed: FederationRequest, cfg: dict, nodes: list[dict], work: Path) -> None:
    """Run the federation in ``fed.mode``; its ServerApp writes the run folder."""
    if fed.mode == "inprocess":
        from .inprocess import InProcessGrid, server_context
        from .server_app import run_federation

        return run_federation(InProcessGrid(nodes, cfg), server_context(cfg))
    if fed.mode == "processes":
        from .launch import flwr_run, local_deployment, write_app

        app_dir = write_app(work / "app", cfg)
        with local_deployment(nodes, work, fed.tls) as env:
            rc = flwr_run(app_dir, env, work / "flwr-run.log", fed.timeout)
        failed = f"the federated run failed (flwr run exit {rc}); see the logs in {work}"
    else:
        from .simulate import parallel_owners, run_simulated

        log = work / "simulation.log"
        run_simulated(cfg, nodes, parallel_owners(fed.sim_parallel, len(nodes)), log)
        failed = f"the simulated federation wrote no run; see {log}"
    if not (work.parent / "card.json").exists():
        raise ConfigError(failed)


def _batch_size(method: str, config: dict | None) -> int:
    """The method's (expected) batch size under ``config``: its config class decides."""
    from ..models.base import build_config

    return int(build_config(method_class(method).config_class, config).batch_size)


def _source_name(source) -> str:
    return "digits" if str(source) == "digits" else str(Path(source).resolve())


def _format(source) -> dict | None:
    """The public format inputs of ``source`` (None for a plain path or 'digits')."""
    return source.options() if isinstance(source, DataSource) else None


def _owner_source(source, path: str) -> DataSource | str:
    """An owner's own data path, read with the run's format inputs."""
    return source.with_path(path) if isinstance(source, DataSource) else path


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


def _owner_ledgers(cfg: dict, nodes: list[dict], privacy: PrivacyRequest) -> None:
    """With sample-level DP, point every owner at the ledger every verb finds and check its
    images, as its ClientApp will load them, against their dataset's budget and ``budget``. Check
    only, so a refusal comes before any process starts: each owner reserves and books its own
    spend under the same check before it trains (owner.py)."""
    from ..privacy import Ledger
    from .task import load_owner_data

    spec = privacy_spec(cfg)
    if spec is None:
        return
    location = resolve_location(privacy.ledger)
    location = location if is_url(location) else str(Path(location).expanduser().resolve())
    ledger, run_id = Ledger(location), f"federated-check-{uuid.uuid4().hex[:8]}"
    for i, node in enumerate(nodes):
        node["ledger"] = location
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
                limit=privacy.budget,
                force=privacy.force,
            )
        except BudgetError as e:
            raise BudgetError(
                f"owner {i + 1} of {len(nodes)}: this federation plans {epsilon:g} "
                f"(epsilon) on each owner's data; {e}"
            ) from None
        ledger.cancel(segment)  # it fits: drop the check's reservation, it used no data


def _complete_card(request: FederateRequest) -> None:
    """Local experiments split one dataset: record its keyed data check and split like `train`
    does."""
    out, data, owner_data = request.output.out, request.data, request.federation.owner_data
    card, parts = Card.from_json(read_card(out)), None
    if owner_data:
        card.data.update(
            fingerprint="per-owner (each owner's ledger keys its own data)",
            owner_data=[str(Path(p).resolve()) for p in owner_data],
        )
    else:
        dataset = load_dataset(data.source, image_size=data.image_size)
        parts = split(dataset, data.holdout, data.split_seed)
        card.data.update(
            check=data_check(dataset, dataset.subset(parts.train)),
            source=_source_name(data.source),
            image_size=data.image_size,
            format=_format(data.source),
        )
    RunWriter(out, card, parts).write()
