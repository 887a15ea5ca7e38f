"""The card of a federated one-shot release (oneshot.py): the guarantee, its assumptions, and the
numbers that price it. Written in the same form as a central dpmerf card (``privacy.dp_sgd`` holds
the Gaussian release, ``privacy.mechanism.name`` is "gaussian"), so `privsynth info` reads it."""

from __future__ import annotations

import math
import time
import uuid
from pathlib import Path

import numpy as np

from ..atomic import write_json
from ..privacy.accounting import epsilon_from_history
from ..run import FORMAT, WEIGHTS, save_weights, write_card
from .card import SAMPLE_UNIT
from .oneshot_plan import central_release
from .runconfig import privacy_spec

SECAGG_ASSUMPTIONS = [
    "the server is honest-but-curious: it runs Flower's SecAgg+ protocol as written (it does not "
    "forge dropouts or drop messages selectively to unmask a smaller set) and only tries to "
    "learn from what it receives",
    "at least t - 1 (t: the SecAgg+ reconstruction threshold) of the owners whose shares enter "
    "the sum are honest: each adds its noise share (sized so that t - 1 shares carry the full "
    "noise: an owner in the sum knows its own share) and reveals it to nobody; with h < t - 1 "
    "honest owners in the sum the noise multiplier is sigma * sqrt(h / (t - 1))",
    "fewer than t owners collude with the server (SecAgg+'s own assumption for hiding individual "
    "shares), and the owners' channels to the server are authenticated (TLS in a deployment)",
    "every owner holds at most max-images images (public; an owner with more refuses)",
]
CKKS_ASSUMPTIONS = [
    "the server is honest-but-curious: it adds every owner's ciphertext once and asks an owner "
    "to decrypt only that sum (it holds the public key, so a deviating server could encrypt a "
    "count of its own and pass one owner's ciphertext off as the sum: CKKS gives "
    "confidentiality, not integrity)",
    "no owner colludes with the server: every owner holds the CKKS secret key and could "
    "decrypt another owner's ciphertext for it",
    "at least n - 1 owners are honest: each adds its noise share (sized so that n - 1 shares "
    "carry the full noise, CKKS has no threshold: an owner knows its own share) and reveals it "
    "to nobody; with h < n - 1 honest owners in the sum the noise multiplier is "
    "sigma * sqrt(h / (n - 1)); a sum of fewer than n shares is never decrypted (a dropout "
    "releases nothing)",
    "every owner holds at most max-images images (public; an owner with more refuses)",
]
UNCOVERED = {
    "secagg": " Outside the assumptions (privacy.assumptions): a server that deviates from SecAgg+ "
    "(e.g. forges dropouts) or colludes with t or more owners, and sums holding fewer than t "
    "honest owners' shares.",
    "ckks": " Outside the assumptions (privacy.assumptions): a server that deviates from the "
    "protocol (forges or replays ciphertexts) or colludes with any owner, and sums holding fewer "
    "than n honest owners' shares.",
    "plain": "",
}
PLAIN_ASSUMPTIONS = [
    "none beyond the image's own owner adding its noise: every owner's reply is the central "
    "Gaussian release of its own images, DP before it leaves the owner; the server may see "
    "every reply; owners hold disjoint images, so the sum is as private as each reply",
]


def mechanism_text(info: dict) -> str:
    if info["aggregation"] == "plain":
        return (
            "the Gaussian mechanism (OpenDP), once per owner on its own embedding sum with "
            "the full central noise sigma*C; the server sums the replies (n times the "
            "central noise variance)"
        )
    if info["aggregation"] == "ckks":
        return (
            "the distributed discrete Gaussian (Kairouz, Liu & Steinke 2021) under CKKS "
            "(TenSEAL): each owner rounds its embedding sum to an integer grid, adds OpenDP's "
            "discrete Gaussian of scale sigma*Delta/sqrt(n-1) grid units and encrypts the "
            "integers; the server adds the n ciphertexts, one owner decrypts the exact integer "
            "sum (noise std >= sigma*Delta even to an owner who subtracts its own share, "
            "Delta = C in grid units plus the rounding term); "
            "accounted as one Gaussian release (RDP, q = 1)"
        )
    return (
        "the distributed discrete Gaussian (Kairouz, Liu & Steinke 2021) under Flower's "
        "SecAgg+: each owner rounds its embedding sum to SecAgg+'s grid and adds OpenDP's "
        "discrete Gaussian of scale sigma*Delta/sqrt(t-1) grid units; the server unmasks only "
        "the exact sum of >= t shares (noise std >= sigma*Delta, also to an owner who "
        "subtracts its own share; Delta = C in grid units "
        "plus the rounding term); accounted as one Gaussian release (RDP, q = 1)"
    )


def guarantee_block(cfg: dict, info: dict) -> dict:
    """``card["privacy"]`` of a one-shot federated release."""
    spec = privacy_spec(cfg)
    if spec is None:
        return {
            "epsilon": None,
            "delta": 0.0,
            "unit": None,
            "aggregation": info["aggregation"],
            "guarantee": "none: released without differential privacy",
        }
    release = central_release(cfg, "federated_share_sum")  # what the summed shares stand for
    sigma, delta, accountant = release.sigma, spec.delta, spec.accountant
    clip = release.sensitivity
    eps = epsilon_from_history(release.history, delta, accountant)
    block: dict = {"aggregation": info["aggregation"], "unit": SAMPLE_UNIT}
    if info["aggregation"] in ("secagg", "ckks"):
        plan = info["plan"]
        # the 40-sigma clipping tail (distributed_noise.py), added to delta: (1 + e^eps) p
        p = 10.0**plan.log10_clip_probability if plan.log10_clip_probability > -300 else 0.0
        delta_total = delta + (1 + math.exp(min(eps, 700))) * p
        secagg = info["aggregation"] == "secagg"
        assumptions = SECAGG_ASSUMPTIONS if secagg else CKKS_ASSUMPTIONS
        k = info["survivors"]
        block["distributed_noise"] = {
            **plan.to_json(),
            "shares_in_sum": k,
            "owners_failed": info["failures"],
            "noise_std_released": plan.noise_std_with(k),
            "noise_std_central": sigma * clip,
            "noise_ratio_to_central": plan.noise_std_with(k) / (sigma * clip),
            # an owner in the sum knows its own share: the noise it faces is the other k - 1
            "noise_std_against_an_owner": plan.noise_std_against_an_owner(k),
            "opendp_rho": info["opendp_rho"],
            "opacus_rdp_rho": 1 / (2 * sigma**2),
            "clip_delta": delta_total - delta,
            "server_sees": "only the sum of the owners' noisy shares (SecAgg+, Flower)"
            if secagg
            else "each owner's CKKS ciphertext (TenSEAL) and the decrypted, exact integer sum "
            "of the noisy shares",
        }
        who = (
            f"against the server, any one owner and anyone who sees the released generator "
            f"or samples, "
            f"assuming the {len(assumptions)} conditions under 'assumptions' (t = "
            f"{plan.threshold} of {plan.owners} owners; {k} shares were summed)"
        )
    else:
        delta_total, assumptions = delta, PLAIN_ASSUMPTIONS
        block["distributed_noise"] = {
            "owners_in_sum": info["survivors"],
            "owners_failed": info["failures"],
            "noise_std_per_owner": info["owner_noise_std"],
            "noise_std_released": info["owner_noise_std"] * math.sqrt(info["survivors"]),
            "noise_std_central": sigma * clip,
            "server_sees": "every owner's noisy embedding sum (each already DP)",
        }
        who = "against the server, the other owners and anyone who sees the release"
    block.update(
        epsilon=eps,
        delta=delta_total,
        guarantee=f"({eps:.3g}, {delta_total:.3g})-DP at sample level (unit: {SAMPLE_UNIT}) "
        f"{who}; one release of the class-wise kernel mean embedding, the generator "
        "trained on it afterwards (post-processing)",
        assumptions=assumptions,
        mechanism={
            "name": "gaussian",
            "variant": info["aggregation"],
            "description": mechanism_text(info),
        },
        dp_sgd={
            "epsilon": eps,
            "delta": delta,
            "accountant": accountant,
            "noise_multiplier": sigma,
            "sample_rate": 1.0,
            "steps": 1,
            "planned_steps": 1,
            "max_grad_norm": clip,
            "target_epsilon": spec.epsilon,
            "history": release.card()["history"],
            "includes_warmup_release": False,
            "computed_by": "opacus accountant from the one release (sigma, q = 1, 1 step)",
        },
        not_protected="Hyper-parameter tuning and repeated runs on the same owners' data (see "
        "each owner's ledger); properties shared by many images. Released beside "
        "the generator: the number of owners and of shares summed. The launcher's exact "
        "counts max-images and total-images stay in the run folder's federation.json, off the "
        "card; a default delta = 1/(10 total-images) discloses the total."
        + UNCOVERED[info["aggregation"]],
    )
    return block


def write_oneshot_run(cfg: dict, synth, result, info: dict, wall: float) -> dict:
    """card.json + weights.safetensors in ``out-dir``; api.federate completes the data fields."""
    out = Path(str(cfg["out-dir"]))
    k = int(cfg["num-classes"])
    privacy = guarantee_block(cfg, info)
    privacy["class_proportions"] = {
        "mechanism": "uniform",
        "epsilon": 0.0,
        "delta": 0.0,
        "values": (np.ones(k) / k).tolist(),
    }
    if "dp_sgd" in privacy:  # the total as the summed release's count feature has it, no exact one
        from ..orchestrate.trainer_card import neighbouring_block
        from ..privacy.accounting import default_delta

        total = max(1, int(cfg.get("total-images", 0)))
        # a federation makes no size release (docs/privacy.md): its default delta still tells
        limitation = (
            "the default delta = 1/(10 N) gives N itself (pass --delta to avoid it): it is "
            "computed from the exact N, so this card discloses the training-set size through "
            "it; the guarantee above does not hide it"
            if privacy["dp_sgd"]["delta"] == default_delta(total)
            else None
        )
        privacy["neighbouring"] = neighbouring_block([result.release], limitation=limitation)
    card = {
        "format": FORMAT,
        "run_id": uuid.uuid4().hex[:12],
        "status": "complete",
        "method": synth.name,
        "private": privacy["epsilon"] is not None,
        "config": synth.config_dict(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "privacy": privacy,
        "data": {
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
        "federated": {
            "one_shot": True,
            "owners_in_sum": info["survivors"],
            "owners_failed": info["failures"],
            "rounds": 1,
            "partition": str(cfg["partition"]),
            "alpha": float(cfg["alpha"]),
        },
        "train": {"wall_seconds": round(wall, 2), "steps": result.steps, "metrics": result.metrics},
    }
    save_weights(
        out / WEIGHTS, synth.state_dict(), {"method": synth.name, "run_id": card["run_id"]}
    )
    write_card(out, card)
    write_json(
        out / "federation.json", {"run_config": cfg, "one_shot": privacy.get("distributed_noise")}
    )
    return card
