"""`FederateRequest`: everything one `federate` run is asked to do, in `RunRequest`'s parts (the
fields a federation shares with a central run) plus one `FederationRequest`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..models.registry import is_private
from ..privacy.accounting import PrivacySpec
from ..request import DataRequest, OutputRequest, PrivacyRequest, TrainingRequest


@dataclass(frozen=True)
class FederationRequest:
    """``aggregation``: ``plain`` | ``secagg`` (SecAgg+) | ``ckks`` (TenSEAL). ``client_epsilon``
    (or a fixed ``client_noise``): client-level DP by server-side Gaussian noise. ``dirichlet``:
    alpha of a non-IID label split (None = IID); ``owner_data``: one dataset path per owner
    instead. ``mode="simulate"``: at most ``sim_parallel`` owners (Ray actors) train at once
    (default: the CPU count). ``timeout``: seconds; ``extra_run_config``: run-config keys over
    the derived ones (runconfig.DEFAULTS)."""

    clients: int = 5
    rounds: int = 10
    local_steps: int = 20
    fraction: float = 1.0
    aggregation: str = "plain"
    client_epsilon: float | None = None
    client_noise: float | None = None
    client_clip: float = 1.0
    client_delta: float = 1e-5
    dirichlet: float | None = None
    owner_data: list[str] | None = None
    mode: str = "processes"
    sim_parallel: int | None = None
    tls: tuple[str, str, str] | None = None
    timeout: float = 1800
    extra_run_config: dict | None = None


# the fields of RunRequest's parts a federation reads (the others would be silently ignored)
_SHARED = {
    "data": ("source", "holdout", "split_seed", "image_size"),
    # the DP-SGD inside each owner, then the ledger each owner books into
    "privacy": ("epsilon", "delta", "noise_multiplier", "max_grad_norm", "accountant", "no_dp")
    + ("ledger", "budget", "force"),
    "training": ("config", "seed", "device"),
    "output": ("out", "overwrite"),
    "federation": tuple(f.name for f in dataclasses.fields(FederationRequest)),
}
_PART_OF = {name: part for part, names in _SHARED.items() for name in names}


@dataclass(frozen=True)
class FederateRequest:
    """``method`` and `RunRequest`'s parts, plus ``federation``. ``privacy`` is each owner's
    sample-level DP-SGD (``epsilon`` per owner; ``budget`` a per-owner limit on top of each
    owner's dataset budget in its ledger)."""

    method: str = "dpgan"
    data: DataRequest = field(default_factory=DataRequest)
    # epsilon 10 unless given; None (with no noise_multiplier) = no sample-level DP
    privacy: PrivacyRequest = field(default_factory=lambda: PrivacyRequest(epsilon=10.0))
    training: TrainingRequest = field(default_factory=TrainingRequest)
    output: OutputRequest = field(default_factory=lambda: OutputRequest(out=Path("runs/federated")))
    federation: FederationRequest = field(default_factory=FederationRequest)

    @classmethod
    def build(
        cls, data: Any = "digits", method: str = "dpgan", out: Any = "runs/federated", **kwargs
    ) -> FederateRequest:
        """From `federate`'s flat keywords (each a field of one part); an unknown one is refused
        naming the valid ones."""
        unknown = sorted(set(kwargs) - set(_PART_OF) | {"source"} & set(kwargs))
        if unknown:
            valid = ", ".join(sorted({"data", "method", *_PART_OF} - {"source"}))
            raise ConfigError(f"unknown federate option(s) {', '.join(unknown)}; valid: {valid}")
        kwargs.update(source=data, out=Path(out))
        defaults = cls(method=method)
        parts = {
            part: dataclasses.replace(
                getattr(defaults, part), **{k: v for k, v in kwargs.items() if _PART_OF[k] == part}
            )
            for part in _SHARED
        }
        return cls(method=method, **parts)

    def privacy_spec(self) -> PrivacySpec | None:
        """The owners' sample-level DP-SGD: sigma fixed (``noise_multiplier``) or calibrated to
        ``epsilon``; None without DP (``no_dp``, a non-private method, or neither value)."""
        p = self.privacy
        if p.no_dp or not is_private(self.method) or not (p.epsilon or p.noise_multiplier):
            return None
        return PrivacySpec(
            epsilon=p.epsilon or None,
            delta=p.delta,
            noise_multiplier=p.noise_multiplier or None,
            max_grad_norm=p.max_grad_norm,
            accountant=p.accountant,
        )
