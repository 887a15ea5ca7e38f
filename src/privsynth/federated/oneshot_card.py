"""The card of a federated one-shot release (oneshot.py): the guarantee, its assumptions, and the
numbers that price it. Written in the same form as a central dpmerf card (``privacy.dp_sgd`` holds
the Gaussian release, ``privacy.mechanism.name`` is "gaussian"), so `privsynth info` reads it."""

from __future__ import annotations

import math

from ..models.base import one_shot_plan
from ..models.context import FitResult
from ..models.registry import method_class
from ..orchestrate.trainer_card import Unit, privacy_section, stated
from ..privacy.accounting import AccountantState, default_delta, epsilon_from_history
from ..privacy.release import Release
from .card import SAMPLE_UNIT, save_run
from .oneshot_plan import central_release
from .runconfig import privacy_spec

WHAT = (
    "one release of the class-wise kernel mean embedding, the generator trained on it "
    "afterwards (post-processing)"
)
NOT_PROTECTED = (
    "Hyper-parameter tuning and repeated runs on the same owners' data (see each owner's "
    "ledger); properties shared by many images. Released beside the generator: the number of "
    "owners and of shares summed. The launcher's exact counts max-images and total-images stay "
    "in the run folder's federation.json, off the card; a default delta = 1/(10 total-images) "
    "discloses the total."
)
LIMITATION = (
    "the default delta = 1/(10 N) gives N itself (pass --delta to avoid it): it is computed "
    "from the exact N, so this card discloses the training-set size through it; the guarantee "
    "above does not hide it"
)
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


MECHANISM = {
    "plain": "the Gaussian mechanism (OpenDP), once per owner on its own embedding sum with the "
    "full central noise sigma*C; the server sums the replies (n times the central noise "
    "variance)",
    "ckks": "the distributed discrete Gaussian (Kairouz, Liu & Steinke 2021) under CKKS "
    "(TenSEAL): each owner rounds its embedding sum to an integer grid, adds OpenDP's discrete "
    "Gaussian of scale sigma*Delta/sqrt(n-1) grid units and encrypts the integers; the server "
    "adds the n ciphertexts, one owner decrypts the exact integer sum (noise std >= sigma*Delta "
    "even to an owner who subtracts its own share, Delta = C in grid units plus the rounding "
    "term); accounted as one Gaussian release (RDP, q = 1)",
    "secagg": "the distributed discrete Gaussian (Kairouz, Liu & Steinke 2021) under Flower's "
    "SecAgg+: each owner rounds its embedding sum to SecAgg+'s grid and adds OpenDP's discrete "
    "Gaussian of scale sigma*Delta/sqrt(t-1) grid units; the server unmasks only the exact sum "
    "of >= t shares (noise std >= sigma*Delta, also to an owner who subtracts its own share; "
    "Delta = C in grid units plus the rounding term); accounted as one Gaussian release (RDP, "
    "q = 1)",
}


def guarantee_block(cfg: dict, info: dict, release: Release | None = None) -> dict:
    """``card["privacy"]`` of a one-shot federated release, by the central writer: ``release``
    (default: the central release the summed shares stand for) with the federation's noise,
    assumptions and what the default delta discloses."""
    mode = info["aggregation"]
    spec = privacy_spec(cfg)
    if spec is None:
        return stated([], none="released without differential privacy", aggregation=mode)
    release = release or central_release(cfg, "federated_share_sum")
    eps = epsilon_from_history(release.history, spec.delta, spec.accountant)
    if mode == "plain":
        delta_total, assumptions = spec.delta, PLAIN_ASSUMPTIONS
        noise = _plain_noise(info, release)
        who = "against the server, the other owners and anyone who sees the release"
    else:
        noise, delta_total = _distributed_noise(info, release, eps, spec.delta)
        assumptions = SECAGG_ASSUMPTIONS if mode == "secagg" else CKKS_ASSUMPTIONS
        plan = info["plan"]
        who = (
            "against the server, any one owner and anyone who sees the released generator or "
            f"samples, assuming the {len(assumptions)} conditions under 'assumptions' (t = "
            f"{plan.threshold} of {plan.owners} owners; {info['survivors']} shares were summed)"
        )
    total = max(1, int(cfg.get("total-images", 0)))
    acc = AccountantState(spec.accountant, [*spec.prior, *release.history])
    unit = Unit("sample", SAMPLE_UNIT, f" (unit: {SAMPLE_UNIT}) {who}; {WHAT}")
    block = privacy_section(
        [release],
        spec,
        FitResult(1, one_shot_plan(spec, total, release.sigma), acc),
        delta_total,
        "gaussian",
        unit=unit,
        not_protected=NOT_PROTECTED + UNCOVERED[mode] + method_class(cfg["method"]).not_protected,
        # a federation makes no size release (docs/privacy.md): its default delta still tells
        limitation=LIMITATION if spec.delta == default_delta(total) else None,
    )
    block.update(aggregation=mode, distributed_noise=noise, assumptions=assumptions)
    block["mechanism"].update(variant=mode, description=MECHANISM[mode])
    return block


def _distributed_noise(
    info: dict, release: Release, eps: float, delta: float
) -> tuple[dict, float]:
    """The distributed discrete Gaussian's plan and what the summed shares carry; the delta
    with its clipping tail."""
    plan, k = info["plan"], info["survivors"]
    central = release.sigma * release.sensitivity
    # the 40-sigma clipping tail (distributed_noise.py), added to delta: (1 + e^eps) p
    p = 10.0**plan.log10_clip_probability if plan.log10_clip_probability > -300 else 0.0
    delta_total = delta + (1 + math.exp(min(eps, 700))) * p
    noise = {
        **plan.to_json(),
        "shares_in_sum": k,
        "owners_failed": info["failures"],
        "noise_std_released": plan.noise_std_with(k),
        "noise_std_central": central,
        "noise_ratio_to_central": plan.noise_std_with(k) / central,
        # an owner in the sum knows its own share: the noise it faces is the other k - 1
        "noise_std_against_an_owner": plan.noise_std_against_an_owner(k),
        "opendp_rho": info["opendp_rho"],
        "opacus_rdp_rho": 1 / (2 * release.sigma**2),
        "clip_delta": delta_total - delta,
        "server_sees": "only the sum of the owners' noisy shares (SecAgg+, Flower)"
        if info["aggregation"] == "secagg"
        else "each owner's CKKS ciphertext (TenSEAL) and the decrypted, exact integer sum "
        "of the noisy shares",
    }
    return noise, delta_total


def _plain_noise(info: dict, release: Release) -> dict:
    return {
        "owners_in_sum": info["survivors"],
        "owners_failed": info["failures"],
        "noise_std_per_owner": info["owner_noise_std"],
        "noise_std_released": info["owner_noise_std"] * math.sqrt(info["survivors"]),
        "noise_std_central": release.sigma * release.sensitivity,
        "server_sees": "every owner's noisy embedding sum (each already DP)",
    }


def write_oneshot_run(cfg: dict, synth, result, info: dict, wall: float) -> dict:
    """card.json + weights.safetensors in ``out-dir``; api.federate completes the data fields."""
    privacy = guarantee_block(cfg, info, result.release)
    federated = {
        "one_shot": True,
        "owners_in_sum": info["survivors"],
        "owners_failed": info["failures"],
        "rounds": 1,
        "partition": str(cfg["partition"]),
        "alpha": float(cfg["alpha"]),
    }
    train = {"wall_seconds": round(wall, 2), "steps": result.steps, "metrics": result.metrics}
    federation = {"one_shot": privacy.get("distributed_noise")}
    return save_run(cfg, synth, privacy, federated, train, federation)
