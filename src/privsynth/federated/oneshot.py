"""Federated one-shot release (``dpmerf``, ``dpkernel``): one noisy sum, no training rounds.

Centrally, a one-shot method (models/base.OneShotMethod) releases ``S + noise`` once (``S``: its
``statistic``, e.g. DP-MERF's class-wise sum of random-feature embeddings) and post-processes it
for free (``fit_released``). Federated, ``S = sum_i S_i`` over the owners, so:

* ``secagg`` (recommended): every owner rounds ``S_i`` to SecAgg+'s grid and adds its share of
  distributed discrete Gaussian noise (privacy/distributed_noise.py); Flower's SecAgg+ (one round)
  hands the server only the exact sum, which carries noise of std >= the central sigma * C
  whenever >= t owners are in it (SecAgg+ refuses to unmask fewer than t). The server trains the
  generator on it with the central path's code (``post_process``).
* ``ckks``: the same integer shares (sized for all n owners), CKKS-encrypted; the server adds
  ciphertexts and one owner decrypts the exact sum (oneshot_ckks.py; no dropout tolerated).
* ``plain``: every owner releases ``S_i`` with the *full* central noise (OpenDP's Gaussian), so
  each reply is already DP against the server; the sum has n times the central noise variance.

Each owner releases at most once per run (remembered on its disk), so a repeated round cannot
average the noise away, and books its spend in its own ledger before it draws the noise.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.client.mod.secure_aggregation.secaggplus_mod import SecAggPlusState
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_STATE
from flwr.server.strategy import FedAvg as CompatFedAvg
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.serverapp import Grid

from ..errors import ConfigError
from ..models.context import TrainContext
from ..privacy.accounting import default_delta
from ..privacy.distributed_noise import decode_sum, noisy_share
from ..privacy.mechanisms import gaussian_noise_release
from .oneshot_plan import (  # noqa: F401  (is_oneshot, release_epsilon: read from here too)
    ask_every_owner,
    central_release,
    clip_norm,
    is_oneshot,
    release_epsilon,
    share_plan,
    shares_info,
)
from .runconfig import privacy_run_config, privacy_spec, resolve
from .secure import fit_reply, run_workflow
from .task import build_model, load_owner_data

AGGREGATIONS = ("secagg", "ckks", "plain")


# --- the launcher: public numbers every side computes the same plan from ---------------------
def prepare_run_config(cfg: dict, nodes: list[dict]) -> None:
    """Complete ``cfg`` (the launcher's run config) for a one-shot release, in place: the public
    bound ``max-images`` on any owner's image count, the total count (the default delta is
    1/(10 N), as in `train`), the method's recommended config for N (as `train` picks it), one
    round with every owner, and the RDP accountant under SecAgg+ and CKKS (the discrete
    Gaussian's guarantee is an RDP/zCDP one, Canonne et al. 2020; PRV's exact curve is the
    continuous one's).
    """
    from ..models.defaults import recommended_config

    mode = str(cfg["aggregation"])
    if mode not in AGGREGATIONS:
        raise ConfigError(
            f"{cfg['method']} federates with --secure-aggregation (SecAgg+, recommended), "
            f"--encrypted-aggregation (CKKS) or plain aggregation, not '{mode}'"
        )
    sizes = [len(load_owner_data(node, cfg)) for node in nodes]
    model_config = {
        **recommended_config(
            str(cfg["method"]), sum(sizes), channels=int(cfg.get("image-channels", 1))
        ),
        **json.loads(str(cfg["model-config"]) or "{}"),
    }
    cfg.update(
        {
            "max-images": max(sizes),
            "total-images": sum(sizes),
            "model-config": json.dumps(model_config),
            "num-server-rounds": 1,
            "fraction-train": 1.0,
            "min-nodes": len(nodes),
        }
    )
    spec = privacy_spec(cfg)
    if spec is not None:
        if spec.delta is None:
            spec = spec.replace(delta=default_delta(sum(sizes)))
        if mode in ("secagg", "ckks"):  # the discrete Gaussian
            spec = spec.replace(accountant="rdp")
        cfg.update(privacy_run_config(spec))


# --- the owner -------------------------------------------------------------------------------
def owner_release(msg: Message, context: Context) -> Message:
    """This owner's noisy embedding sum: a SecAgg+ share (inside Flower's ``secaggplus_mod``),
    a CKKS-encrypted share (the run config's aggregation, never the server's message, says so)
    or, under plain aggregation, a fully noised release."""
    cfg, node = resolve(context.run_config), dict(context.node_config)
    from .owner import OwnerSpend

    data = load_owner_data(node, cfg)
    # the "released" flag lives on the owner's disk: a restarted SuperNode remembers it
    owner = OwnerSpend(node, cfg, data, context.run_id)
    if owner.released:
        raise ConfigError(
            "this owner already released its embedding in this run; a second "
            "release would let the server average the noise away"
        )
    synth = build_model(cfg)
    if len(data) > int(cfg["max-images"]):
        raise ConfigError(
            f"this owner holds {len(data)} images, more than the run's public "
            f"bound max-images={cfg['max-images']}; raise it in the run config"
        )
    clip = clip_norm(cfg)
    total = synth.statistic(data, clip).numpy()
    secagg = "fitins.parameters" in msg.content.array_records
    ckks = not secagg and str(cfg["aggregation"]) == "ckks"
    if ckks:
        from . import encrypted
        from .oneshot_ckks import all_owners

        n = all_owners(cfg)
        plan, key = share_plan(cfg, synth, n, n), encrypted.secret_context(cfg, node)
    if secagg:
        sa = SecAggPlusState(**context.state.config_records[RECORD_KEY_STATE])
        plan = share_plan(cfg, synth, int(sa.sample_num), int(sa.threshold))
        asked = (float(sa.clipping_range), int(sa.target_range), float(sa.max_weight))
        if asked != (plan.clipping_range, plan.quantization_range, 1.0):
            raise ConfigError(
                f"the server's SecAgg+ range/levels/max-weight {asked} differ from "
                f"this owner's plan {plan.clipping_range, plan.quantization_range}"
                "; refusing to release (server and owners run different configs)"
            )
    _book_ledger(owner, cfg)  # budget check and booking, before the draw
    owner.save(released=True)  # before the draw: a crash after it must not allow a second one
    if ckks:
        from .oneshot_ckks import encrypted_share

        return encrypted_share(msg, total, plan, key)
    if secagg:  # every owner's SecAgg+ weight is 1: the server decodes a plain sum
        metrics = {"threshold": plan.threshold, "share-scale-units": plan.share_scale_units}
        return fit_reply(msg, [noisy_share(total, plan)], 1, metrics)
    release = central_release(cfg, "federated_share_sum")  # the full central noise, no DP: none
    noisy = (
        gaussian_noise_release(torch.from_numpy(total), release.sigma, clip, release.name)[0]
        if release is not None
        else total
    )
    sigma = release.sigma if release is not None else 0.0
    content = RecordDict(
        {
            "arrays": ArrayRecord({"release": Array(np.asarray(noisy, np.float64))}),
            "metrics": MetricRecord({"noise-std": sigma * clip}),
        }
    )
    return Message(content, reply_to=msg)


def _book_ledger(owner, cfg: dict) -> None:
    """Reserve the release's (epsilon, delta) in this owner's own ledger under its budget check,
    and settle it as spent, before drawing (owner.py)."""
    release = central_release(cfg, "federated_share_sum")
    if release is None:  # no DP
        return
    epsilon, delta = release_epsilon(cfg)
    owner.reserve(epsilon, delta, {"release": [list(h) for h in release.history]})
    owner.settle(epsilon, delta)


# --- the server ------------------------------------------------------------------------------
class _ThresholdRecorder(SecAggPlusWorkflow):
    """Flower's SecAgg+ workflow, remembering the threshold t it set up (the card states it)."""

    threshold = 0
    sampled = 0

    def setup_stage(self, grid, context, state) -> bool:
        ok = super().setup_stage(grid, context, state)
        self.threshold, self.sampled = int(state.threshold), len(state.sampled_node_ids)
        return ok


class _SumOfShares(CompatFedAvg):
    """Keeps SecAgg+'s aggregate (Flower returns the mean over the owners it unmasked)."""

    def __init__(self, shape: tuple[int, int], **kwargs) -> None:
        super().__init__(initial_parameters=ndarrays_to_parameters([np.zeros(shape)]), **kwargs)
        self.mean: np.ndarray | None = None
        self.survivors, self.owner_metrics = 0, []

    def aggregate_fit(self, server_round, results, failures):
        if not results:
            return None, {}
        self.mean = parameters_to_ndarrays(results[0][1].parameters)[0]
        self.survivors = len(results)
        self.owner_metrics = [dict(res.metrics) for _, res in results]
        return results[0][1].parameters, {}


def run_release(grid: Grid, context: Context) -> dict:
    """The server side: collect the sum, train the generator on it, write the run folder."""
    from .oneshot_card import write_oneshot_run

    cfg = resolve(context.run_config)
    t0 = time.time()
    synth = build_model(cfg)
    owners = len(list(grid.get_node_ids()))
    shape = synth.statistic_shape()
    if str(cfg["aggregation"]) == "secagg":
        released, info = _secagg_sum(grid, context, cfg, synth, owners, shape)
    elif str(cfg["aggregation"]) == "ckks":
        from .oneshot_ckks import all_owners, ckks_sum

        n = all_owners(cfg)
        released, info = ckks_sum(grid, cfg, share_plan(cfg, synth, n, n), shape)
    elif str(cfg["aggregation"]) == "plain":
        released, info = _plain_sum(grid, cfg)
    else:
        raise ConfigError(
            f"{cfg['method']} federates with secagg, ckks or plain aggregation, "
            f"not '{cfg['aggregation']}'"
        )
    ctx = TrainContext(privacy=privacy_spec(cfg), seed=int(cfg["seed"]), progress=False)
    release = central_release(cfg, synth.name)
    n = int(cfg.get("total-images", 0))
    result = synth.post_process(torch.from_numpy(released).float(), release, ctx, n)
    return write_oneshot_run(cfg, synth, result, info, time.time() - t0)


def _secagg_sum(
    grid: Grid, context: Context, cfg: dict, synth, owners: int, shape: tuple[int, int]
) -> tuple[np.ndarray, dict]:
    plan = share_plan(cfg, synth, owners, owners)  # c and Q do not depend on t
    strategy = _SumOfShares(
        shape,
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=int(cfg["min-nodes"]),
        min_available_clients=int(cfg["min-nodes"]),
    )
    workflow, _ = run_workflow(
        grid,
        context,
        cfg,
        strategy,
        1,
        _ThresholdRecorder,
        max_weight=1.0,
        clipping_range=plan.clipping_range,
        quantization_range=plan.quantization_range,
    )
    if strategy.mean is None:
        raise ConfigError(
            f"the SecAgg+ release failed: fewer than the threshold of owners "
            f"({workflow.threshold}) stayed to the end, so the server could not "
            "unmask the sum; nothing was released (each owner's spend stays "
            "booked); rerun with more owners online"
        )
    plan = replace(plan, owners=workflow.sampled, threshold=workflow.threshold)
    plan.check()
    told = {int(m["threshold"]) for m in strategy.owner_metrics}
    if told != {plan.threshold}:
        raise ConfigError(
            f"owners noised for thresholds {sorted(told)}, the server ran "
            f"{plan.threshold}; nothing is released"
        )
    released = decode_sum(strategy.mean, strategy.survivors, plan)
    # failures: sampled, not in the sum
    return released, shares_info(
        "secagg", plan, strategy.survivors, plan.owners - strategy.survivors
    )


def _plain_sum(grid: Grid, cfg: dict) -> tuple[np.ndarray, dict]:
    replies, asked = ask_every_owner(grid, cfg, "plain")
    if not replies:
        raise ConfigError("no owner answered the release request; nothing was released")
    total = sum(reply.content["arrays"]["release"].numpy() for reply in replies)
    std = float(replies[0].content["metrics"]["noise-std"])
    return total, {
        "aggregation": "plain",
        "survivors": len(replies),
        "failures": asked - len(replies),
        "owner_noise_std": std,
    }
