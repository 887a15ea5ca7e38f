"""Secure aggregation with SecAgg+ (Flower's ``SecAggPlusWorkflow`` + ``secaggplus_mod``): the
server can unmask only the *sum* of the updates of the owners that finished the round (owners
that drop are recovered from their secret-shared masks while ``reconstruction_threshold``
neighbours survive).

In flwr 1.41 the SecAgg+ workflow runs on the compat ("legacy") strategy layer, called from the
same Message-API ``ServerApp``. Owners send weight *deltas* (small numbers, inside SecAgg+'s
clipping/quantization range); ``DeltaFedAvg`` adds the averaged delta to the global model. With
client-level DP, Flower's client-side fixed clipping clips each update before masking and the
server adds Gaussian noise (std sigma*C/m) to the new global model. That noise is the noise of
the *released* model because:
- the global model is what the DP wrapper returns (noise included): ``DeltaFedAvg`` takes it back
  from the workflow at the start of each round and at the end, never from its own sum;
- the average has a fixed denominator, the declared number of owners per round m (run config
  ``client-owners``, public): with m' < m survivors the sum still carries noise of std sigma*C
  (the Gaussian mechanism the accountant books) instead of being divided by m'.
SecAgg+'s quantisation moves each update by up to sqrt(d) * 2c/Q in L2, so owners clip to C
minus that margin (:func:`quantised_clip`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from flwr.app import Context, Message
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat
from flwr.server import LegacyContext, ServerConfig
from flwr.server.strategy import DifferentialPrivacyClientSideFixedClipping
from flwr.server.strategy import FedAvg as CompatFedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_PARAMS_RECORD
from flwr.serverapp import Grid

from ..errors import ConfigError
from .runconfig import client_dp, resolve

QUANTIZATION_RANGE = 2**22  # Q: SecAgg+'s integer levels (Flower's default, passed explicitly)


def quantised_clip(
    clip: float, noise_multiplier: float, entries: int, clipping_range: float, levels: int
) -> tuple[float, float, float]:
    """``(clip to send, noise multiplier to add, margin)`` so that a clipped update *after*
    SecAgg+'s quantisation (stochastic rounding to ``levels`` levels over [-c, c]: less than
    2c/Q per entry) still has L2 norm <= ``clip``; the noise multiplier is scaled by
    C / (C - margin), so the noise std stays sigma * C / m for sensitivity C."""
    margin = math.sqrt(entries) * 2.0 * clipping_range / levels
    if margin >= clip / 2:
        raise ConfigError(
            f"SecAgg+'s quantisation error ({margin:.3g} in L2 over {entries} values) is not "
            f"small against the client clip {clip:g}; raise --client-clip or lower "
            "secagg-clip-range"
        )
    inner = clip - margin
    return inner, noise_multiplier * clip / inner, margin


def fit_reply(msg: Message, arrays: list[np.ndarray], num_examples: int, metrics: dict) -> Message:
    """An owner's reply in the compat ("legacy") records SecAgg+'s workflow reads."""
    fitres = compat.FitRes(
        status=compat.Status(code=compat.Code.OK, message=""),
        parameters=ndarrays_to_parameters(arrays),
        num_examples=num_examples,
        metrics=metrics,
    )
    return Message(compat.fitres_to_recorddict(fitres, keep_input=False), reply_to=msg)


class DeltaFedAvg(CompatFedAvg):
    """FedAvg over deltas: global += weighted mean of the owners' deltas (from SecAgg+'s sum).

    ``planned_owners`` (client-level DP): divide the survivors' summed deltas by this fixed
    number instead of by the survivors' count (every weight is then 1).
    """

    def __init__(
        self, initial: list[np.ndarray], planned_owners: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(initial_parameters=ndarrays_to_parameters(initial), **kwargs)
        self.current = [np.asarray(a, np.float32) for a in initial]
        self.planned_owners = planned_owners
        self.quantisation_margin = 0.0  # client-level DP: C minus the clip the owners apply
        self.round_metrics: dict[int, dict] = {}

    def configure_fit(self, server_round, parameters, client_manager):
        # the global model the owners start from: the last release, DP noise included
        self.current = [np.asarray(a, np.float32) for a in parameters_to_ndarrays(parameters)]
        return super().configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(self, server_round, results, failures):
        params, metrics = super().aggregate_fit(server_round, results, failures)
        self.round_metrics[server_round] = {"owners": len(results), "failures": len(failures)}
        if params is None:
            return None, metrics
        delta = parameters_to_ndarrays(params)  # the mean over the len(results) survivors
        scale = len(results) / self.planned_owners if self.planned_owners else 1.0
        new = [c + scale * d.astype(np.float32) for c, d in zip(self.current, delta, strict=True)]
        return ndarrays_to_parameters(new), metrics


def run_secagg(grid: Grid, context: Context, initial: list[np.ndarray], cfg: dict) -> DeltaFedAvg:
    """Run ``num-server-rounds`` rounds of FedAvg under SecAgg+ (``cfg``: the run config, with
    ``sampled-per-round`` when client-level DP is on); returns the strategy, whose ``current``
    holds the released global weights (after the last round's DP noise, if any)."""
    cfg = resolve(cfg)  # (idempotent) derives max-weight from the weights the owners use
    n_min = int(cfg["min-nodes"])
    dp = client_dp(cfg)
    strategy: Any = DeltaFedAvg(
        initial,
        planned_owners=int(cfg["sampled-per-round"]) if dp else None,
        fraction_fit=float(cfg["fraction-train"]),
        fraction_evaluate=0.0,
        min_fit_clients=n_min,
        min_available_clients=n_min,
        on_fit_config_fn=lambda r: {"server-round": r},
    )
    inner = strategy
    if dp:
        # the owners clip to C minus the quantisation margin; the noise stays sigma*C/m
        clip, noise, inner.quantisation_margin = quantised_clip(
            float(cfg["client-clip"]),
            float(cfg["client-noise"]),
            sum(int(np.asarray(a).size) for a in initial),
            float(cfg["secagg-clip-range"]),
            QUANTIZATION_RANGE,
        )
        strategy = DifferentialPrivacyClientSideFixedClipping(
            strategy, noise, clip, num_sampled_clients=int(cfg["sampled-per-round"])
        )
    _, legacy = run_workflow(
        grid,
        context,
        cfg,
        strategy,
        int(cfg["num-server-rounds"]),
        max_weight=float(cfg["max-weight"]),
        clipping_range=float(cfg["secagg-clip-range"]),
        quantization_range=QUANTIZATION_RANGE,
    )
    # the workflow keeps the strategy's last return (the noised model) as the global model
    final = compat.arrayrecord_to_parameters(
        legacy.state.array_records[MAIN_PARAMS_RECORD], keep_input=True
    )
    inner.current = [np.asarray(a, np.float32) for a in parameters_to_ndarrays(final)]
    return inner


def run_workflow(
    grid, context, cfg, strategy, rounds: int, workflow_cls=SecAggPlusWorkflow, **ranges
):
    """Run Flower's SecAgg+ workflow around a compat ``strategy`` with the run config's shares,
    threshold and timeout (``ranges``: max_weight, clipping_range, quantization_range); returns
    the workflow and its legacy context."""
    workflow = workflow_cls(
        num_shares=float(cfg["secagg-shares"]),
        reconstruction_threshold=float(cfg["secagg-threshold"]),
        timeout=float(cfg["secagg-timeout"]),
        **ranges,
    )
    legacy = LegacyContext(
        context=context, config=ServerConfig(num_rounds=rounds), strategy=strategy
    )
    DefaultWorkflow(fit_workflow=workflow)(grid, legacy)
    return workflow, legacy
