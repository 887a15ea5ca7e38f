"""The federated run's card: what each guarantee protects, each with its own epsilon.

Two guarantees can hold at once, with different units:
- sample-level (one image with its label): each owner's DP-SGD, accounted by that owner's Opacus
  accountant. Owners' datasets are disjoint and every other owner's update is computed without
  that image, so the released model is (max_i eps_i, max_i delta_i)-DP for every image.
- client-level (one owner with all its images): server-side Gaussian noise on the clipped average
  of the owners' updates (Flower's fixed-clipping wrappers), in the model the server releases.
  Flower's ``RdpAccountant`` (no sampling amplification) reports its epsilon in plain mode; we
  recompute it with Opacus' RDP accountant from (noise multiplier, q = 1, rounds) and store both.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..atomic import write_json
from ..orchestrate.trainer_card import Unit, stated
from ..privacy.accounting import epsilon_from_history
from ..run import Card, RunWriter
from .runconfig import client_dp, privacy_spec
from .task import global_momentum

SAMPLE_UNIT = "one training image with its label (held by one owner)"
CLIENT_UNIT = "one data owner with all of its images"
SAMPLE = Unit("sample", SAMPLE_UNIT, f" (unit: {SAMPLE_UNIT}), by DP-SGD inside every owner")
CLIENT = Unit(
    "client",
    CLIENT_UNIT,
    f" (unit: {CLIENT_UNIT}), by server-side Gaussian noise on clipped updates",
)


# How client-level noise reaches the released model, per aggregation mode (docs/federated.md).
CLIENT_NOISE_PATH = {
    "plain": "Flower's DifferentialPrivacyServerSideFixedClipping: the server clips each update "
    "to C, averages over the m sampled owners (m declared before the run) and adds "
    "N(0, (sigma*C/m)^2) to the new global model; a round that sampled other than m owners, or "
    "in which a sampled owner fails, is not released (Flower's accounted mode)",
    "secagg": "owners clip (Flower's fixedclipping_mod) to C minus SecAgg+'s quantisation error "
    "before masking; the server divides the unmasked sum of the surviving owners' deltas by the "
    "declared m (fixed denominator) and Flower's DifferentialPrivacyClientSideFixedClipping adds "
    "N(0, (sigma*C/m)^2) to the new global model, which is the one the next round starts from "
    "and the one released",
    "ckks": "owners clip their delta to C and encrypt it; the server adds the ciphertexts to the "
    "global model held encrypted as [m*w, m] and adds Gaussian noise of std sigma*C to it "
    "(sigma*C/m on the model, Flower's compute_stdv); dividing by the fixed m keeps rounds with "
    "dropouts fully noised; owners decrypt each round's noised model, one decrypts the last",
}


def not_protected(mode: str, client_dp: bool) -> str:
    """What the card must not be read as protecting (it lists what was released besides the
    model, so that nothing the run publishes goes unmentioned)."""
    parts = [
        "Hyper-parameter tuning and repeated runs on the same owners' data (see each owner's "
        "ledger); properties shared by many images.",
        "Released beside the model and not protected: each owner's epsilon, DP-SGD history "
        "and bytes sent, and how many owners each round aggregated (they describe the plan and "
        "who took part, not image content); an owner's sample rate (and a default delta) is "
        "computed from its image count and discloses it. The card publishes no owner's exact "
        "image count; the server receives it (the FedAvg weight). Owners send no losses or "
        "other statistics of their private batches.",
        "Secure/encrypted aggregation hides individual updates from the server but adds no DP.",
    ]
    if client_dp:
        server_sees = {
            "plain": "every owner's un-noised update",
            "secagg": "the un-noised sum of the updates",
            "ckks": "its own noise, so it can remove it from the model it releases",
        }[mode]
        parts.append(
            "Client-level DP protects the released model and the global models owners receive "
            "each round; the server adds the noise and is trusted with it "
            f"(it knows {server_sees})."
        )
    return " ".join(parts)


def privacy_block(cfg: dict, reports: list[dict], flower_accountant=None) -> dict:
    """``card["privacy"]`` of a federated DP-SGD run, by the central writer (`stated`): the
    sample-level guarantee first when both hold."""
    mode = str(cfg["aggregation"])
    spec = privacy_spec(cfg)
    sections, levels = {}, []
    if spec is not None:
        sections["sample_level"] = level = _sample_level(spec, reports)
        levels.append((level["epsilon"], level["delta"], SAMPLE))
    if client_dp(cfg):
        sections["client_level"] = level = _client_level(cfg, mode, flower_accountant)
        levels.append((level["epsilon"], level["delta"], CLIENT))
    return stated(
        levels,
        not_protected(mode, client_dp(cfg)),
        aggregation=mode,
        server_sees={
            "plain": "every owner's model update (each already DP if sample-level DP is on)",
            "secagg": "only the sum of the owners' updates (SecAgg+, Flower)",
            "ckks": "only CKKS ciphertexts of the updates and of their sum (TenSEAL)",
        }[mode],
        **sections,
    )


def _sample_level(spec, reports: list[dict]) -> dict:
    """Each owner's DP-SGD guarantee, recomputed from its history (independently of the owner's
    number); no owner's exact image count (add/remove-one: docs/privacy.md)."""
    keys = ("partition", "epsilon", "delta", "noise_multiplier", "sample_rate")
    owners = []
    for r in reports:
        history = json.loads(r["history"])["history"] if r["history"] else []
        owner = {k: r[k] for k in keys} | {"history": history}
        owner["epsilon_recomputed"] = epsilon_from_history(history, r["delta"], spec.accountant)
        owners.append(owner)
    return {
        "epsilon": max((o["epsilon"] for o in owners), default=spec.epsilon),
        "delta": max((o["delta"] for o in owners), default=0.0),
        "unit": SAMPLE_UNIT,
        "target_epsilon": None if spec.noise_multiplier else spec.epsilon,
        "noise_multiplier_fixed": spec.noise_multiplier,
        "accountant": spec.accountant,
        "clip": spec.max_grad_norm,
        "per_owner": owners,
        "owners_reporting": len(owners),
        "computed_by": "each owner's Opacus accountant from the DP-SGD steps it ran; the "
        "released model is (max_i eps_i, max_i delta_i)-DP per image because "
        "owners hold disjoint images",
    }


def _client_level(cfg: dict, mode: str, flower_accountant) -> dict:
    """The server's Gaussian noise on the clipped updates, per round, accounted at q = 1."""
    noise, clip, rounds = (
        float(cfg["client-noise"]),
        float(cfg["client-clip"]),
        int(cfg["num-server-rounds"]),
    )
    delta = float(cfg["client-delta"])
    m = int(cfg.get("sampled-per-round", 0))
    block = {
        # Opacus RDP: ``rounds`` Gaussian releases, sensitivity = clip, no subsampling
        "epsilon": epsilon_from_history([(noise, 1.0, rounds)], delta, "rdp"),
        "delta": delta,
        "unit": CLIENT_UNIT,
        "noise_multiplier": noise,
        "clip": clip,
        "rounds": rounds,
        "sampled_per_round": m,
        "denominator": f"fixed: the declared m = {m} owners per round (run config "
        "client-owners), whatever the number of owners that connect or reply",
        "sampling": "none assumed (q = 1: no amplification by client sampling is claimed)",
        "noise_std_on_model": noise * clip / max(m, 1),
        "how": CLIENT_NOISE_PATH[mode],
        "epsilon_flower_rdp": float(flower_accountant.get_privacy_spent().epsilon)
        if flower_accountant is not None
        else None,
    }
    if mode == "secagg":
        margin = float(cfg.get("secagg-quantisation-margin", 0.0))
        block["clip_before_quantisation"] = clip - margin
        block["quantisation_margin"] = margin
        block["sensitivity"] = (
            "C: owners clip to C minus SecAgg+'s quantisation error sqrt(d)*2c/Q, so each "
            "quantised update has L2 norm <= C"
        )
    block["computed_by"] = (
        "Opacus RDP accountant from (noise multiplier, q=1, rounds); Flower's RdpAccountant "
        "value alongside when the strategy kept one"
    )
    return block


def write_run(
    cfg: dict, synth, reports: list[dict], rounds_info: dict, wall: float, flower_accountant=None
) -> dict:
    rounds = int(cfg["num-server-rounds"])
    federated = {
        "owners_reporting": len(reports),
        "rounds": rounds,
        "local_steps": int(cfg["local-steps"]),
        # FedAvgM momentum the owners applied (off under client-level DP; task.py)
        "global_momentum": 0.0 if client_dp(cfg) else global_momentum(cfg),
        "fraction_train": float(cfg["fraction-train"]),
        "partition": str(cfg["partition"]),
        "alpha": float(cfg["alpha"]),
        "per_round": {str(r): v for r, v in rounds_info.items()},
        "bytes_up_per_round": sum(r["bytes_up"] for r in reports) / rounds,
        "bytes_down_per_round": sum(r["bytes_down"] for r in reports) / rounds,
        "bytes_note": "payload bytes of Flower records counted by each owner's "
        "traffic mod (no transport framing)",
    }
    train = {"wall_seconds": round(wall, 2), "steps": rounds * int(cfg["local-steps"])}
    privacy = privacy_block(cfg, reports, flower_accountant)
    return save_run(cfg, synth, privacy, federated, train, {"reports": reports})


def save_run(cfg: dict, synth, privacy: dict, federated: dict, train: dict, extra: dict) -> dict:
    """card.json, weights.safetensors and federation.json (the run config, ``extra``) in
    ``out-dir`` (the server's machine); api.federate completes the data fields."""
    out = Path(str(cfg["out-dir"]))
    k = int(cfg["num-classes"])
    privacy["class_proportions"] = {
        "mechanism": "uniform",
        "epsilon": 0.0,
        "delta": 0.0,
        "values": (np.ones(k) / k).tolist(),
    }
    card = Card.new(
        synth.name,
        status="complete",
        private=privacy["epsilon"] is not None,
        config=synth.config_dict(),
        privacy=privacy,
        data={
            "name": str(cfg["data"]),
            "image_shape": list(synth.image_shape),
            "classes": str(cfg["class-names"]).split(",")
            if cfg["class-names"]
            else [str(i) for i in range(k)],
            "source": None,
            "image_size": int(cfg["image-size"]),
            "split_seed": int(cfg["split-seed"]),
            "fingerprint": None,
        },
        federated=federated,
        train=train,
    )
    writer = RunWriter(out, card)
    writer.save_weights(synth.state_dict())
    writer.write()
    write_json(out / "federation.json", {"run_config": cfg, **extra})
    return card.to_json()
