"""The federated run config: one table of defaults, read the same way by every path.

``flwr run .`` reads ``[tool.flwr.app.config]`` in pyproject.toml (a test keeps it equal to
:data:`DEFAULTS`; Flower only lets ``--run-config`` override keys listed there); the launcher
starts from :data:`DEFAULTS`; the apps read every key through :func:`resolve`, so no module keeps a
default of its own. The owners' sample-level privacy is one key, ``privacy``: a `PrivacySpec` as
JSON, or ``null`` for no DP (``flwr run --run-config "privacy='{\"epsilon\": 5.0}'"``).

Some values are derived, not configured, because a privacy claim depends on them: with
client-level DP every owner's FedAvg weight is 1 (:func:`aggregation_weight`), so SecAgg+'s
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
    # the owners' sample-level DP: PrivacySpec's JSON (its defaults), or "null" for no DP
    "privacy": json.dumps(PrivacySpec().to_json()),
    "aggregation": "plain",
    "client-noise": 0.0,
    "client-clip": 1.0,
    "client-delta": 1e-5,
    # client-level DP's m: the owners per round, a public constant of the run (0 = min-nodes).
    # Every round divides by m and adds noise sigma*C/m, however many owners reply.
    "client-owners": 0,
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
    # this federation's id: the key of each owner's ledger segment and on-disk state (owner.py);
    # empty = Flower's run id
    "federation-id": "",
    # a per-owner epsilon limit on top of each owner's dataset budget (0 = none; --budget)
    "budget": 0.0,
    "force": False,
}


def privacy_run_config(spec: PrivacySpec | None) -> dict[str, str]:
    """The run-config entry that carries ``spec`` (None = no sample-level DP)."""
    return {"privacy": json.dumps(spec.to_json() if spec is not None else None)}


def privacy_spec(cfg: Mapping[str, Any]) -> PrivacySpec | None:
    """The owners' sample-level spec (keys the JSON omits take PrivacySpec's defaults)."""
    text = str(cfg.get("privacy", DEFAULTS["privacy"]))
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise ConfigError(
            f"run config 'privacy' is not JSON ({text!r}); write a PrivacySpec as JSON, "
            "e.g. privacy='{\"epsilon\": 10.0}', or privacy='null' for no DP"
        ) from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(
            f"run config 'privacy' must be a JSON object or null, got {text!r}; "
            "e.g. privacy='{\"epsilon\": 10.0}'"
        )
    try:
        return PrivacySpec.from_json(data)
    except TypeError:
        fields = sorted(PrivacySpec().to_json())
        raise ConfigError(
            f"run config 'privacy' has unknown keys {sorted(set(data) - set(fields))}; "
            f"a PrivacySpec has {fields}"
        ) from None


def client_dp(cfg: Mapping[str, Any]) -> bool:
    """Client-level DP is on (server-side Gaussian noise on clipped owner updates)."""
    return float(cfg.get("client-noise", DEFAULTS["client-noise"])) > 0


def declared_owners(cfg: Mapping[str, Any]) -> int:
    """Client-level DP's fixed denominator m: ``client-owners``, else ``min-nodes``. Declared
    before the run, never the number of SuperNodes that happen to connect: under add/remove-one-
    owner, a denominator that follows membership would change the sensitivity (about 2C/m)."""
    m = int(cfg.get("client-owners") or 0) or int(cfg.get("min-nodes", DEFAULTS["min-nodes"]))
    if m < 1:
        raise ConfigError(f"client-owners must be >= 1, got {m}")
    return m


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
