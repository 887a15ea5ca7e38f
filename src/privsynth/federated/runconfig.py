"""The federated run config: one table of defaults, read the same way by every path.

``flwr run .`` reads ``[tool.flwr.app.config]`` in pyproject.toml (a test keeps it equal to
:data:`DEFAULTS`; Flower only lets ``--run-config`` override keys listed there); the launcher
(``privsynth federate``) starts from :data:`DEFAULTS` and writes its own copy; the ServerApp and the
ClientApp read every key through :func:`resolve`, so no module keeps a default of its own.

Some values are derived, not configured, because a privacy claim depends on them:
with client-level DP every owner's FedAvg weight is 1 (:func:`aggregation_weight`), so SecAgg+'s
``max-weight`` is forced to 1 — any larger value scales each update down before quantisation and
the quantisation error, scaled back up, breaks the clip bound the accountant relies on.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Mapping

from ..errors import ConfigError

DEFAULTS: dict[str, Any] = {
    "method": "dpgan",
    "model-config": "{}",
    "data": "digits",
    "data-format": "{}",  # the public format inputs (DataSource.options() as JSON)
    "image-size": 8,
    "image-channels": 1,
    "num-classes": 10,
    "class-names": "0,1,2,3,4,5,6,7,8,9",
    "holdout": 0.2,
    "split-seed": 0,
    "partition": "iid",
    "alpha": 0.3,
    "partition-seed": 0,
    "num-server-rounds": 10,
    "local-steps": 20,
    "fraction-train": 1.0,
    "min-nodes": 2,
    "epsilon": 10.0,
    "delta": 0.0,
    "clip": 1.0,
    "accountant": "prv",
    "noise-multiplier": 0.0,
    "aggregation": "plain",
    "client-noise": 0.0,
    "client-clip": 1.0,
    "client-delta": 1e-5,
    "max-weight": 100000.0,
    "secagg-shares": 1.0,
    "secagg-threshold": 0.6,
    "secagg-clip-range": 8.0,
    "secagg-timeout": 120.0,
    "ckks-public": "",
    "ckks-secret": "",
    "wait-timeout": 120.0,
    "round-timeout": 600.0,
    "out-dir": "runs/federated",
    "seed": 0,
}


def client_dp(cfg: Mapping[str, Any]) -> bool:
    """Client-level DP is on (server-side Gaussian noise on clipped owner updates)."""
    return float(cfg.get("client-noise", DEFAULTS["client-noise"])) > 0


def aggregation_weight(cfg: Mapping[str, Any], num_examples: int) -> int:
    """An owner's FedAvg weight: its image count, or 1 with client-level DP (the sensitivity of
    the sum of clipped updates is then the clip norm, whatever the owners hold)."""
    return 1 if client_dp(cfg) else int(num_examples)


def resolve(run_config: Mapping[str, Any]) -> dict[str, Any]:
    """:data:`DEFAULTS` overlaid with ``run_config``, plus the derived values."""
    cfg = {**DEFAULTS, **dict(run_config)}
    if client_dp(cfg):
        cfg["max-weight"] = 1.0  # = the largest weight aggregation_weight gives
    return cfg


def require_dp_accounting() -> None:
    """Flower's ``RdpAccountant`` (plain aggregation with client-level DP) needs ``dp-accounting``,
    which the federated extra brings through ``flwr[dp]``: say so in one line if it is missing."""
    if importlib.util.find_spec("dp_accounting") is None:
        raise ConfigError(
            "client-level DP accounting needs the package dp-accounting (Flower's [dp] extra); "
            "install the federated extra: pip install 'privsynth[federated]'"
        )
