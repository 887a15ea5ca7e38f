"""The public numbers of a federated one-shot release (oneshot.py) that owners, server and card
compute alike from the run config (nobody has to trust another's number), and the one request
the server sends every owner."""

from __future__ import annotations

import math
import warnings

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from ..errors import ConfigError
from ..models.base import sensitivity
from ..models.registry import method_class
from ..privacy.accounting import calibrate_noise, epsilon_from_history
from ..privacy.distributed_noise import DistributedPlan, opendp_rho, plan_release
from ..privacy.release import Release, gaussian
from .runconfig import privacy_spec


def is_oneshot(method: str) -> bool:
    """The method federates by summing one noisy release (its class says so, models/base.py)."""
    return method_class(method).federates_by == "release-sum"


def clip_norm(cfg: dict) -> float:
    """C: the features' norm, so one image moves the sum by at most C (1.0 without DP)."""
    return sensitivity(privacy_spec(cfg))


def noise_multiplier(cfg: dict) -> float:
    """sigma of the whole release: Opacus, sampling rate 1, one step (0 without DP). Owners and
    server compute it from the same run config, so nobody has to trust another's number."""
    spec = privacy_spec(cfg)
    if spec is None:
        return 0.0
    if spec.noise_multiplier:
        return spec.noise_multiplier
    if spec.delta is None:
        raise ConfigError(
            "a one-shot release needs delta in the run config (privsynth federate "
            "sets 1/(10 N)); pass --delta"
        )
    with warnings.catch_warnings():  # PRV at q = 1 evaluates log(1 - q) = -inf: harmless
        warnings.simplefilter("ignore", RuntimeWarning)
        return calibrate_noise(spec.epsilon, spec.delta, 1.0, 1, spec.accountant)


def share_plan(cfg: dict, synth, owners: int, threshold: int) -> DistributedPlan:
    """The grid and noise shares of ``owners`` owners' sum (threshold t): one image moves one
    class column (the statistic's last axis) of the method's statistic by at most C."""
    *entries, classes = synth.statistic_shape()
    return plan_release(
        noise_multiplier(cfg),
        clip_norm(cfg),
        int(cfg["max-images"]),
        owners,
        threshold,
        math.prod(entries),
        classes,
    )


def shares_info(mode: str, plan: DistributedPlan, survivors: int, failures: int) -> dict:
    """What the card reports of a sum of distributed-noise shares (oneshot_card.py)."""
    return {
        "aggregation": mode,
        "plan": plan,
        "survivors": survivors,
        "failures": failures,
        "opendp_rho": opendp_rho(plan) if plan.noise_multiplier else None,
    }


def central_release(cfg: dict, name: str) -> Release | None:
    """The central Gaussian release the owners' summed shares stand for (None without DP): one
    draw at noise multiplier sigma and sensitivity C on the whole set."""
    if privacy_spec(cfg) is None:
        return None
    return gaussian(name, noise_multiplier(cfg), clip_norm(cfg))


def release_epsilon(cfg: dict) -> tuple[float, float]:
    spec = privacy_spec(cfg)
    return epsilon_from_history(
        [(noise_multiplier(cfg), 1.0, 1)], spec.delta, spec.accountant
    ), spec.delta


def ask_every_owner(grid: Grid, cfg: dict, variant: str) -> tuple[list[Message], int]:
    """Send the one-shot release request (``variant``: plain | ckks) to every connected owner:
    the replies that came back without an error, and how many owners were asked."""
    request = [
        Message(
            RecordDict({"config": ConfigRecord({"oneshot": variant})}),
            message_type="train",
            dst_node_id=nid,
        )
        for nid in sorted(grid.get_node_ids())
    ]
    replies = grid.send_and_receive(request, timeout=float(cfg["round-timeout"]))
    return [r for r in replies if not r.has_error()], len(request)
