"""Secure aggregation with SecAgg+ (Flower's ``SecAggPlusWorkflow`` + ``secaggplus_mod``).

Each owner masks its (quantized) update with pairwise masks agreed with its neighbours plus a
private mask, and secret-shares the mask seeds; the server can unmask only the *sum* of the
updates of the owners that finished the round. Owners that drop mid-round are recovered from
their shares as long as ``reconstruction_threshold`` neighbours survive.

In flwr 1.41 the SecAgg+ workflow runs on the compat ("legacy") strategy layer: a
``flwr.server.strategy.FedAvg`` inside ``DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(...))``,
called from the same Message-API ``ServerApp``. Owners send weight *deltas* (small numbers,
inside SecAgg+'s clipping/quantization range); ``DeltaFedAvg`` adds the averaged delta to the
global model. With client-level DP, Flower's client-side fixed clipping
(``DifferentialPrivacyClientSideFixedClipping`` + ``fixedclipping_mod``) clips each update before
masking and the server adds the Gaussian noise to the unmasked average.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flwr.app import Context
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import LegacyContext, ServerConfig
from flwr.server.strategy import DifferentialPrivacyClientSideFixedClipping
from flwr.server.strategy import FedAvg as CompatFedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.serverapp import Grid


class DeltaFedAvg(CompatFedAvg):
    """FedAvg over deltas: global += weighted mean of the owners' deltas (from SecAgg+'s sum)."""

    def __init__(self, initial: list[np.ndarray], **kwargs: Any) -> None:
        super().__init__(initial_parameters=ndarrays_to_parameters(initial), **kwargs)
        self.current = [np.asarray(a, np.float32) for a in initial]
        self.round_metrics: dict[int, dict] = {}

    def aggregate_fit(self, server_round, results, failures):
        params, metrics = super().aggregate_fit(server_round, results, failures)
        self.round_metrics[server_round] = {"owners": len(results), "failures": len(failures)}
        if params is None:
            return None, metrics
        delta = parameters_to_ndarrays(params)
        self.current = [c + d.astype(np.float32) for c, d in zip(self.current, delta, strict=True)]
        return ndarrays_to_parameters(self.current), metrics


def run_secagg(grid: Grid, context: Context, initial: list[np.ndarray], cfg: dict) -> DeltaFedAvg:
    """Run ``num-server-rounds`` rounds of FedAvg under SecAgg+; returns the strategy (its
    ``current`` holds the final global weights)."""
    n_min = int(cfg.get("min-nodes", 2))
    strategy: Any = DeltaFedAvg(
        initial,
        fraction_fit=float(cfg.get("fraction-train", 1.0)),
        fraction_evaluate=0.0,
        min_fit_clients=n_min,
        min_available_clients=n_min,
        on_fit_config_fn=lambda r: {"server-round": r},
    )
    inner = strategy
    if float(cfg.get("client-noise", 0)) > 0:
        strategy = DifferentialPrivacyClientSideFixedClipping(
            strategy,
            float(cfg["client-noise"]),
            float(cfg.get("client-clip", 1.0)),
            num_sampled_clients=int(cfg["sampled-per-round"]),
        )
    legacy = LegacyContext(
        context=context,
        config=ServerConfig(num_rounds=int(cfg.get("num-server-rounds", 1))),
        strategy=strategy,
    )
    workflow = SecAggPlusWorkflow(
        num_shares=float(cfg.get("secagg-shares", 1.0)),
        reconstruction_threshold=float(cfg.get("secagg-threshold", 0.6)),
        max_weight=float(cfg.get("max-weight", 100000.0)),
        clipping_range=float(cfg.get("secagg-clip-range", 8.0)),
        timeout=float(cfg.get("secagg-timeout", 120.0)),
    )
    DefaultWorkflow(fit_workflow=workflow)(grid, legacy)
    return inner
