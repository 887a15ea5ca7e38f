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
import json
from typing import Any, Mapping

from ..errors import ConfigError
from ..privacy.accounting import PrivacySpec

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


# The owners' sample-level privacy travels as one JSON value, ``privacy``: a `PrivacySpec`
# (``PrivacySpec.to_json``) or ``null`` for no DP, read only by `privacy_spec`. `flwr run .` in the
# repository reads pyproject's table, which still spells it as these five keys (0 = off/unset);
# `privacy_spec` reads them only when ``privacy`` is absent, and `resolve` drops them when it is
# present so that no second spelling travels beside it.
PRIVACY_KEYS = ("epsilon", "delta", "clip", "accountant", "noise-multiplier")


def privacy_run_config(spec: PrivacySpec | None) -> dict[str, str]:
    """The run-config entry that carries ``spec`` (None = no sample-level DP)."""
    return {"privacy": json.dumps(spec.to_json() if spec is not None else None)}


def privacy_spec(cfg: Mapping[str, Any]) -> PrivacySpec | None:
    """The owners' sample-level DP-SGD spec from a run config; None = no DP."""
    if "privacy" in cfg:
        return PrivacySpec.from_json(json.loads(str(cfg["privacy"])))
    eps, sigma = float(cfg["epsilon"]), float(cfg["noise-multiplier"])
    if eps <= 0 and sigma <= 0:
        return None
    return PrivacySpec(
        epsilon=eps if eps > 0 else None,
        delta=float(cfg["delta"]) or None,
        noise_multiplier=sigma if sigma > 0 else None,
        max_grad_norm=float(cfg["clip"]),
        accountant=str(cfg["accountant"]),
    )


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
    if "privacy" in run_config:
        for key in PRIVACY_KEYS:
            cfg.pop(key, None)
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
