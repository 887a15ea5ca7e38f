"""What a central run's card says (``privsynth.train``): the data it trained on, the software,
and the privacy guarantee computed from what ran (the accountant's history, not the plan)."""

from __future__ import annotations

import platform
from pathlib import Path

from .data import DataSource, ImageDataset
from .privacy.accounting import epsilon_from_history
from .privacy.dpsgd import process_count, run_empty_batch_delta
from .run import INFINITY, data_check

PROTECTED = (
    "Sample-level (example-level) differential privacy: adding or removing any one "
    "training image together with its label changes the distribution of everything "
    "released (weights, samples) by at most (epsilon, delta)."
)
NOT_PROTECTED = (
    "Hyper-parameter tuning or repeated runs on the same private data "
    "(see the privacy ledger for composed spends), the holdout split (used only for "
    "evaluation, never for training), the run folder's split.json and train_state.pt, "
    "training losses (progress bar, card train.metrics: computed on private batches "
    "without noise), and properties shared by many images (DP protects individuals, "
    "not population statistics)."
)


MECHANISMS = {
    "dp-sgd": "DP-SGD (Opacus): per-sample gradients clipped to C, Gaussian noise sigma * C "
    "added at every step, Poisson-subsampled batches",
    "gaussian": "the Gaussian mechanism (OpenDP), released once on the whole training set with "
    "sensitivity C; accounted as one step at sampling rate 1",
}


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("privsynth", "torch", "opacus", "numpy", "scikit-learn", "safetensors"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def data_block(data, dataset, train_set, parts, split_seed, image_size) -> dict:
    return {
        "name": dataset.name,
        "check": data_check(dataset, train_set),
        "image_shape": list(dataset.image_shape),
        "classes": dataset.class_names,
        "split_seed": split_seed,
        "source": source(data),
        "image_size": image_size,
        "format": data.options() if isinstance(data, DataSource) else None,
    }


def source(data) -> str | None:
    """Where evaluation can reload the data: 'digits', an absolute path, or None (in-memory)."""
    if isinstance(data, ImageDataset):
        return None
    return "digits" if str(data) == "digits" else str(Path(data).resolve())


def privacy_block(
    spec, result, counts, total_delta, n, mechanism, carried=(), outside=None
) -> dict:
    """``carried``: accountant entries an interrupted earlier segment of this run ran past its
    last checkpoint (its weights were discarded, its spend was not): composed with the lineage's
    history in one accountant. ``outside``: the releases outside the accountant as booked
    (default: the class counts once)."""
    if spec is None:
        return {
            "epsilon": INFINITY,
            "delta": 0.0,
            "unit": None,
            "guarantee": "none: trained without differential privacy (a non-private "
            "baseline); epsilon = infinity",
        }
    plan, acc = result.dp_plan, result.accountant
    carried = [list(h) for h in carried]
    sgd_eps = epsilon_from_history([*carried, *acc.history], spec.delta, spec.accountant)
    outside = outside if outside is not None else (counts["epsilon"], counts["delta"])
    total = sgd_eps + outside[0]
    total_delta = spec.delta + outside[1] if outside[1] > counts["delta"] else total_delta
    # --nproc: the chance that a skipped empty local batch occurs at all (dpsgd.py) joins delta
    empty_batch = run_empty_batch_delta(plan)
    total_delta = total_delta + empty_batch
    lead = sum(int(h[2]) for h in spec.prior)  # size + warm-up release entries opening it
    warm_lead = lead - (1 if spec.size is not None else 0)
    return {
        "epsilon": total,
        "delta": total_delta,
        "guarantee": f"({total:.3g}, {total_delta:.3g})-DP at sample level. {PROTECTED}",
        "not_protected": NOT_PROTECTED,
        "unit": "one training image with its label",
        "composition": (
            "dp_sgd epsilon (one Opacus accountant over "
            + ("the size release, " if spec.size is not None else "")
            + ("the warm-up release, " if warm_lead else "")
            + "and the DP-SGD steps, its history) + class_proportions epsilon (basic "
            "composition)"
            if lead
            else "dp_sgd epsilon + class_proportions epsilon (basic composition)"
        ),
        "mechanism": {"name": mechanism, "description": MECHANISMS.get(mechanism, mechanism)},
        "dp_sgd": {
            "epsilon": sgd_eps,
            "delta": spec.delta,
            "accountant": spec.accountant,
            "noise_multiplier": plan.noise_multiplier,
            "sample_rate": plan.sample_rate,
            # The nominal batch size B (a public setting), not q * N: that product is the
            # exact number of training images, which no published field carries.
            "batch_size": plan.batch_size if plan.sample_rate < 1 else None,
            "steps": acc.steps - lead,
            "includes_warmup_release": bool(warm_lead),
            "includes_size_release": spec.size is not None,
            "planned_steps": plan.steps,
            "max_grad_norm": spec.max_grad_norm,
            "target_epsilon": plan.target_epsilon,
            "poisson_sampling": True,
            "grad_sample_mode": spec.grad_sample_mode,
            "history": acc.to_json()["history"],
            **(
                {
                    "rerun_history": carried,
                    "rerun_note": "steps an interrupted segment of this run ran past its last "
                    "checkpoint (booked ahead; their weights were discarded): composed with "
                    "the history above in the same accountant",
                }
                if carried
                else {}
            ),
            "computed_by": "opacus accountant from the steps that ran",
            **(
                {"empty_local_batch_delta": empty_batch, "processes": process_count()}
                if empty_batch
                else {}
            ),
        },
    }


NEIGHBOURING = (
    "add/remove one record: two training sets are neighbours when one is the other with one "
    "image (with its label) added or removed, the relation Opacus' accountants analyse"
)


def neighbouring_block(dp_counts: list[dict], *, limitation: str | None = None) -> dict:
    """The card's ``privacy.neighbouring``: the relation the guarantee is stated for and the counts
    the card publishes. Under add/remove-one an exact training-set size tells two neighbours apart,
    so no published field holds one, nor a value computed from it: the sample rate, the steps
    and the default delta are computed from the size release's N_hat. A count appears only as the
    noisy value of a DP release the guarantee already covers (``dp_counts``, `released_counts`).
    ``limitation``: what a card made without a size release (a federation's) still discloses."""
    block = {
        "relation": NEIGHBOURING,
        "exact_counts": "none published: the card, `privsynth info` and the model card's "
        "description name no exact count of private images (the training-set size N, the "
        "total, the holdout size), and no parameter is computed from one: the DP-SGD sample "
        "rate q = min(1, B/N_hat), the steps and the default delta 1/(10 N_hat) use the "
        "size release's N_hat; evaluation figures, not covered by the guarantee, may name "
        "the holdout size",
        "published_counts": dp_counts,
        "counts_protected_by": "the DP release that drew them (their epsilon is part of this "
        "run's epsilon); none is published without one"
        if dp_counts
        else "no count is published",
    }
    if limitation:
        block["exact_counts"] = block["exact_counts"].split(", and no parameter")[0] + (
            "; evaluation figures, not covered by the guarantee, may name the holdout size"
        )
        block["limitation"] = limitation
    return block


def released_counts(
    counts: dict, result, warm, method: str, size: dict | None = None
) -> list[dict]:
    """The noisy training-set counts this run's DP releases drew (post-processing of releases the
    guarantee covers): the size release (``size``: the card's ``privacy.size_release``), the
    class-proportion release, the count feature of ``method``'s one release (dpmerf, dpkernel), a
    warm-up release."""
    out = []
    if size is not None:
        out.append(
            {
                "release": "size_release",
                "dp_count": size["dp_count"],
                "how": "the training-set size plus Gaussian noise of standard deviation "
                f"{size['sigma']:.3g}, rounded (at least 1): the N_hat that the sample rate, "
                "the steps and the default delta are computed from",
            }
        )
    if counts.get("dp_count") is not None:
        out.append(
            {
                "release": "class_proportions",
                "dp_count": counts["dp_count"],
                "how": f"sum of the class counts released with the {counts['mechanism']} "
                "mechanism (before the floor of one image per class)",
            }
        )
    if getattr(result, "dp_count", None) is not None:
        out.append(
            {
                "release": method,
                "dp_count": result.dp_count,
                "how": f"the count feature of {method}'s one Gaussian release, summed over classes",
            }
        )
    warm_count = warm.released_count() if warm is not None else None
    if warm_count is not None:
        out.append(warm_count)
    return out
