"""What a central run's card says (``privsynth.train``): the data it trained on, the software,
and the privacy guarantee computed from what ran (the accountant's history, not the plan)."""

from __future__ import annotations

import platform
from dataclasses import dataclass, replace
from pathlib import Path

from ..data import DataSource, ImageDataset
from ..privacy.accounting import epsilon_from_history
from ..privacy.dpsgd import process_count, run_empty_batch_delta
from ..privacy.release import Release, gaussian
from ..privacy.release import outside as release_outside
from ..run import data_check

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


def data_block(data, dataset, train_set, split_seed, image_size) -> dict:
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


@dataclass(frozen=True)
class Unit:
    """Whom a guarantee protects and how the card states it: ``level`` and ``name`` (central: one
    image; federated: one image held by one owner, or one owner with all its images) and ``how``,
    what follows "(epsilon, delta)-DP at <level> level" in the card's sentence."""

    level: str
    name: str
    how: str


SAMPLE = Unit("sample", "one training image with its label", f". {PROTECTED}")
NO_DP = "trained without differential privacy"


def stated(
    levels: list[tuple[float, float, Unit]], not_protected=None, none=NO_DP, **sections
) -> dict:
    """The top of every card's privacy section, central or federated: the first level's
    (epsilon, delta, unit), one sentence per level, what is not protected, then ``sections``.
    No levels is "no DP" (``none``: how the card says so)."""
    top: dict = {"epsilon": None, "delta": 0.0, "unit": None}
    top["guarantee"] = f"none: {none}"
    if levels:
        epsilon, delta, unit = levels[0]
        top = {"epsilon": epsilon, "delta": delta, "unit": unit.name}
        top["guarantee"] = "; ".join(
            f"({e:.3g}, {d:.3g})-DP at {u.level} level{u.how}" for e, d, u in levels
        )
    if not_protected is not None:
        top["not_protected"] = not_protected
    return {**top, **sections}


def privacy_section(
    releases: list[Release],
    spec,
    result,
    total_delta,
    mechanism,
    carried=(),
    outside=None,
    *,
    unit: Unit = SAMPLE,
    not_protected: str = NOT_PROTECTED,
    limitation: str | None = None,
) -> dict:
    """The card's privacy section of a run whose noise draws are ``releases``, in order (a
    central run's `run_releases`; a federated one-shot run's summed shares); the empty list is
    "no DP". The accounted ones compose in ONE Opacus accountant, the run's
    (``result.accountant``, which starts from their histories: ``spec.prior``); ``carried``:
    entries an interrupted earlier segment ran past its last checkpoint (its weights were
    discarded, its spend was not), composed in the same accountant. The releases outside it
    (class counts) add by basic composition: ``outside`` as booked (default: as released)."""
    if not releases:
        return stated([], none=f"{NO_DP} (a non-private baseline)")
    carried = [list(h) for h in carried]
    sgd_eps = epsilon_from_history(
        [*carried, *result.accountant.history], spec.delta, spec.accountant
    )
    counted = release_outside(releases)
    outside = outside if outside is not None else counted
    total = sgd_eps + outside[0]
    total_delta = spec.delta + outside[1] if outside[1] > counted[1] else total_delta
    # --nproc: the chance that a skipped empty local batch occurs at all (dpsgd.py) joins delta
    empty_batch = run_empty_batch_delta(result.dp_plan)
    total_delta = total_delta + empty_batch
    names = {r.name for r in releases}
    return stated(
        [(total, total_delta, unit)],
        not_protected,
        composition=composition(spec, "size_release" in names, _warmed(names)),
        mechanism={"name": mechanism, "description": MECHANISMS.get(mechanism, mechanism)},
        dp_sgd=dp_sgd_block(names, spec, result, sgd_eps, carried, empty_batch),
        neighbouring=neighbouring_block(releases, limitation=limitation),
    )


def _warmed(names: set[str]) -> bool:
    return any(n.startswith("warmup.") for n in names)


def composition(spec, sized: bool, warmed: bool) -> str:
    """How the card's epsilon is composed (``spec.prior``: the releases opening the accountant)."""
    if not spec.prior:
        return "dp_sgd epsilon + class_proportions epsilon (basic composition)"
    return (
        "dp_sgd epsilon (one Opacus accountant over "
        + ("the size release, " if sized else "")
        + ("the warm-up release, " if warmed else "")
        + "and the DP-SGD steps, its history) + class_proportions epsilon (basic composition)"
    )


def dp_sgd_block(names: set[str], spec, result, sgd_eps, carried, empty_batch) -> dict:
    """The card's ``privacy.dp_sgd``: the accountant's history and the plan it ran."""
    plan, acc = result.dp_plan, result.accountant
    lead = sum(int(h[2]) for h in spec.prior)  # size + warm-up release entries opening it
    block = {
        "epsilon": sgd_eps,
        "delta": spec.delta,
        "accountant": spec.accountant,
        "noise_multiplier": plan.noise_multiplier,
        "sample_rate": plan.sample_rate,
        # The nominal batch size B (a public setting), not q * N: that product is the
        # exact number of training images, which no published field carries.
        "batch_size": plan.batch_size if plan.sample_rate < 1 else None,
        "steps": acc.steps - lead,
        "includes_warmup_release": _warmed(names),
        "includes_size_release": "size_release" in names,
        "planned_steps": plan.steps,
        "max_grad_norm": spec.max_grad_norm,
        "target_epsilon": plan.target_epsilon,
        # q = 1 (a one-shot release, full-batch steps) samples nothing: every image is in it
        "poisson_sampling": plan.sample_rate < 1,
        "grad_sample_mode": spec.grad_sample_mode,
        "history": acc.to_json()["history"],
    }
    if carried:
        block["rerun_history"] = carried
        block["rerun_note"] = (
            "steps an interrupted segment of this run ran past its last checkpoint (booked "
            "ahead; their weights were discarded): composed with the history above in the "
            "same accountant"
        )
    block["computed_by"] = "opacus accountant from the steps that ran"
    if empty_batch:
        block.update(empty_local_batch_delta=empty_batch, processes=process_count())
    return block


def run_releases(privacy: dict, warm, result, counts: dict) -> list[Release]:
    """A central run's noise draws, in the order they were made: the size release (as its card
    entry keeps it), a warm-up's, the method's own (a one-shot release, or the DP-SGD steps),
    the class counts. Empty without DP."""
    if result.accountant is None:
        return []
    out = []
    size = privacy.get("size_release")
    if size is not None:
        drawn = gaussian("size_release", size["sigma"])
        out.append(drawn.with_count(size["dp_count"], size.get("how") or SIZE_HOW))
    if warm is not None and warm.release is not None:
        out.append(warm.release.release)
    if result.release is not None:
        out.append(result.release)
    else:
        plan = result.dp_plan
        steps = result.accountant.steps - sum(r.steps for r in out)
        out.append(gaussian("dp_sgd", plan.noise_multiplier, 1.0, plan.sample_rate, steps))
    if counts.get("dp_count") is not None:
        how = COUNTS_HOW.format(mechanism=counts["mechanism"])
        drawn = Release("class_proportions", counts["mechanism"], 0.0)
        drawn = replace(drawn, epsilon=counts["epsilon"], delta=counts["delta"])
        out.append(drawn.with_count(counts["dp_count"], how))
    return out


SIZE_HOW = "the training-set size plus Gaussian noise, rounded (at least 1): the N_hat"
COUNTS_HOW = (
    "sum of the class counts released with the {mechanism} mechanism (before the floor of "
    "one image per class)"
)


NEIGHBOURING = (
    "add/remove one record: two training sets are neighbours when one is the other with one "
    "image (with its label) added or removed, the relation Opacus' accountants analyse"
)


def neighbouring_block(releases: list[Release], *, limitation: str | None = None) -> dict:
    """The card's ``privacy.neighbouring``: the relation the guarantee is stated for and the counts
    the card publishes. Under add/remove-one an exact training-set size tells two neighbours apart,
    so no published field holds one, nor a value computed from it: the sample rate, the steps
    and the default delta are computed from the size release's N_hat. A count appears only as the
    noisy value of a DP release the guarantee already covers (a `Release`'s ``dp_count``).
    ``limitation``: what a card made without a size release (a federation's) still discloses."""
    dp_counts = [
        {"release": r.name, "dp_count": r.dp_count, "how": r.how}
        for r in releases
        if r.dp_count is not None
    ]
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
