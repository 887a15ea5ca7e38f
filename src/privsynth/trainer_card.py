"""What a central run's card says (``privsynth.train``): the data it trained on, the software,
and the privacy guarantee computed from what ran (the accountant's history, not the plan)."""

from __future__ import annotations

import platform
from pathlib import Path

from .data import DataSource, ImageDataset
from .privacy.accounting import epsilon_from_history
from .run import INFINITY

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
        "fingerprint": dataset.fingerprint,
        "source_fingerprint": dataset.source_fingerprint,
        "train_fingerprint": train_set.fingerprint,
        "n_total": len(dataset),
        "n_train": len(train_set),
        "n_holdout": len(parts.holdout),
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
    lead = sum(int(h[2]) for h in spec.prior)  # warm-up release entries opening the history
    return {
        "epsilon": total,
        "delta": total_delta,
        "guarantee": f"({total:.3g}, {total_delta:.3g})-DP at sample level. {PROTECTED}",
        "not_protected": NOT_PROTECTED,
        "unit": "one training image with its label",
        "composition": (
            "dp_sgd epsilon (one Opacus accountant over the warm-up release and the "
            "DP-SGD steps, its history) + class_proportions epsilon (basic "
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
            "expected_batch_size": round(plan.expected_batch_size, 1),
            "steps": acc.steps - lead,
            "includes_warmup_release": bool(lead),
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
            "n_private": n,
            "computed_by": "opacus accountant from the steps that ran",
        },
    }
