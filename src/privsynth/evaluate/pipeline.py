"""``privsynth.evaluate.evaluate``: fidelity, detection, utility and privacy risk for one or more
synthetic sets against the same real train/holdout split, composed into one plain dict.

How the real data is used (and why):
- the holdout is cut in two halves, seeded: *reference* (trains the FD-LeNet feature extractor;
  the attacker's population sample for calibrated attacks) and *non-members* (MIA non-members);
- MIA members are an equal-size random subset of the training split;
- fidelity compares synthetic images with the training split (what the generator imitated), next
  to a real-vs-real floor (training split vs non-member holdout half);
- TSTR/TRTR/detection test on the holdout. TSTR, TRTR (LeNet and ResNet) and the detection
  classifier are trained by one loop on one fixed schedule with no model selection
  (`classifier.train_fixed`); detection tests on the half of its balanced set it did not train on;
- every Fréchet figure comes with within-class spread and recall, and plain-words collapse flags
  (`diversity`).

Membership inference assumes members and non-members come from one distribution: a holdout that
is a separate set (``--holdout PATH``, e.g. an official test split) can differ from the training
split in ways an attack picks up without any memorisation, so the result then carries
``MIA_SHIFT_WARNING`` (metrics.json ``warnings``, the HTML report and the Markdown summary).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..atomic import write_json
from ..data import ImageDataset
from ..nodp import is_private
from . import attribute, detection, diversity, fidelity, mia, privacy, utility
from .classifier import check_classifier
from .feature_space import fitted_space
from .features import feature_model, features
from .sources import Subject, load_subjects

MIA_SHIFT_WARNING = (
    "the holdout is a separate set (--holdout PATH), not a random split of the training "
    "data's source: the membership-inference figures (and DCR) then measure the distribution "
    "shift between the two sets as well as membership, and an attack can tell them apart "
    "without any memorisation. Read them as evidence of memorisation only if the holdout was "
    "drawn at random from the same source as the training images."
)


def seeded_draws(
    train: ImageDataset, hold: ImageDataset, seed: int, max_members: int, n_fidelity: int
):
    """The evaluation's random draws, in one seeded order (benchmarks that report the same
    figures call this too): the holdout's reference and non-member halves, the MIA members
    and non-members (index arrays of equal size), and the fidelity subset of the training split.
    """
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(hold))
    ref = hold.subset(perm[: len(hold) // 2], name="reference")
    nonmem = hold.subset(perm[len(hold) // 2 :], name="nonmembers")
    m = min(max_members, len(nonmem), len(train))
    members_idx = rng.permutation(len(train))[:m]
    nonmem_idx = rng.permutation(len(nonmem))[:m]
    fid_idx = rng.permutation(len(train))[:n_fidelity]
    return ref, nonmem, members_idx, nonmem_idx, fid_idx


def evaluate(
    runs: list[str | os.PathLike[str]] = (),
    *,
    synthetic: str | None = None,
    data: str | ImageDataset | None = None,
    out: str | os.PathLike[str] | None = None,
    holdout: float = 0.2,
    split_seed: int = 0,
    image_size: int | None = None,
    n_synthetic: int | None = None,
    max_members: int = 1000,
    n_fidelity: int = 5000,
    cache_dir: str | None = None,
    inception_weights: str | None = None,
    html: bool = True,
    seed: int = 0,
    progress: bool = True,
    classifier_passes: int = utility.DEFAULT_PASSES,
    classifiers: tuple[str, ...] = utility.UTILITY_CLASSIFIERS,
) -> dict:
    """Evaluate run folders (``runs``) and/or a synthetic set made elsewhere (``synthetic`` +
    ``data``). Returns the metrics dict; with ``out`` also writes metrics.json and report.html.

    ``data`` for runs overrides the recorded source (needed for runs trained from memory).
    ``n_synthetic``: images per model, sampled class-balanced from a run, or a class-balanced
    subset of a set made elsewhere (default `utility.DEFAULT_N_SYNTHETIC`).
    ``classifier_passes``: every CNN's training budget, in images seen (default 150,000; TSTR
    always makes at least one full pass over the synthetic set).
    ``classifiers``: the TSTR/TRTR networks, side by side (default LeNet and ResNet)."""
    for c in classifiers:
        check_classifier(c)
    opts = _Options(seed, progress, classifier_passes, tuple(classifiers), inception_weights)
    n_synthetic = n_synthetic or utility.DEFAULT_N_SYNTHETIC
    t0 = time.time()
    subjects, train, hold, separate = load_subjects(
        runs, synthetic, data, holdout, split_seed, image_size, n_synthetic, seed
    )
    real = _real_side(train, hold, max_members, n_fidelity, cache_dir, opts)
    imbalanced = None  # the imbalanced-real baseline: trained once, reused for every subject
    models = []
    for subj in subjects:
        row, imbalanced = _evaluate_subject(subj, real, opts, imbalanced)
        models.append(row)
    result = _result(real, subjects, models, separate)
    result["seconds"] = round(time.time() - t0, 2)
    if out is not None:
        from ..report.html import write_report

        write_json(os.path.join(out, "metrics.json"), _plain(result))
        if html:
            write_report(os.path.join(out, "report.html"), result, subjects, train)
    return result


@dataclass(frozen=True)
class _Options:
    seed: int
    progress: bool
    passes: int
    classifiers: tuple[str, ...]
    inception_weights: str | None

    @property
    def fit(self) -> dict:
        """Every classifier's training keywords."""
        return {"passes": self.passes, "seed": self.seed, "progress": self.progress}


@dataclass
class _Real:
    """The real side every synthetic set is measured against, computed once: the split, the
    seeded draws, the feature extractor and fidelity space, the real floor and TRTR."""

    train: ImageDataset
    hold: ImageDataset
    ref: ImageDataset
    nonmem: ImageDataset
    members: tuple[np.ndarray, np.ndarray]  # MIA members' images, labels
    nonmembers: tuple[np.ndarray, np.ndarray]
    fid_idx: np.ndarray
    extractor: Any
    fx_info: dict
    space: Any
    f_train: np.ndarray  # fidelity-space features of the fidelity subset of train
    f_candidates: np.ndarray  # LeNet features (the attacks'): members then non-members
    f_ref: np.ndarray
    floor: dict = field(default_factory=dict)
    trtr: dict = field(default_factory=dict)


def _real_side(train, hold, max_members, n_fidelity, cache_dir, opts: _Options) -> _Real:
    seed = opts.seed
    ref, nonmem, members_idx, nonmem_idx, fid_idx = seeded_draws(
        train, hold, seed, max_members, n_fidelity
    )
    extractor, fx_info = feature_model(ref, cache_dir, seed, opts.progress, opts.passes)
    l_nonmem, f_ref = features(extractor, nonmem.images), features(extractor, ref.images)
    xm = train.images[members_idx]
    # FD / KID / PRDC (the f_* of train, non-members, synthetic) read the fidelity space: LeNet
    # alone for grey; LeNet + colour and edge blocks for colour, where LeNet features let
    # featureless colour blobs pass as real. The attacks keep the LeNet features.
    space = fitted_space(extractor, train.images[fid_idx], seed=seed)
    real = _Real(
        train,
        hold,
        ref,
        nonmem,
        members=(xm, train.labels[members_idx]),
        nonmembers=(nonmem.images[nonmem_idx], nonmem.labels[nonmem_idx]),
        fid_idx=fid_idx,
        extractor=extractor,
        fx_info=fx_info,
        space=space,
        f_train=space(train.images[fid_idx]),
        f_candidates=np.concatenate([features(extractor, xm), l_nonmem[nonmem_idx]]),
        f_ref=f_ref,
    )
    real.floor = _real_floor(real, seed)
    real.trtr = utility.per_classifier(
        utility.trtr, train.images, train.labels, hold, opts.classifiers, **opts.fit
    )
    return real


def _versus_train(real: _Real, images: np.ndarray, labels: np.ndarray, seed: int) -> dict:
    """FD, KID, PRDC (in the fidelity space) and within-class diversity of a set vs the
    fidelity subset of the training split (what the generator imitated)."""
    f, train = real.space(images), real.train
    return {
        "fd_lenet": fidelity.frechet(real.f_train, f),
        "kid_lenet": fidelity.kid(real.f_train, f, seed=seed),
        "prdc": fidelity.prdc_scores(real.f_train, f, seed=seed),
        "diversity": diversity.within_class_diversity(
            train.images, train.labels, images, labels, train.num_classes, seed=seed
        ),
    }


def _real_floor(real: _Real, seed: int) -> dict:
    """Real vs real (training split vs the non-member holdout half): the figures' floor."""
    floor = _versus_train(real, real.nonmem.images, real.nonmem.labels, seed)
    floor["collapse_flags"] = diversity.collapse_flags(
        floor["diversity"], floor["prdc"], None, real.train.class_names
    )
    return floor


def _evaluate_subject(subj: Subject, real: _Real, opts: _Options, imbalanced):
    """One synthetic set's row, and the imbalanced-real baseline for the next subject."""
    t1 = time.time()
    stages = tqdm(total=6, desc=f"evaluate {subj.name}", disable=not opts.progress, leave=False)
    row = {
        "name": subj.name,
        "source": subj.source,
        "n_synthetic": int(len(subj.images)),
        "private": is_private(subj.card or {}),
        "epsilon": subj.epsilon if is_private(subj.card or {}) else None,
        "delta": subj.delta,
        # the card without its keyed data check and ledger key: reports get shared
        "card": _shareable(subj.card),
    }
    l_syn = features(real.extractor, subj.images)
    stages.set_postfix_str("fidelity")
    row["fidelity"], row["collapse_flags"] = _subject_fidelity(subj, real, opts)
    stages.update()
    stages.set_postfix_str("detection")
    row["detection"] = detection.detection(
        real.hold.images, subj.images, opts.seed, progress=opts.progress, passes=opts.passes
    )
    stages.update()
    stages.set_postfix_str("utility")
    row["utility"] = _subject_utility(subj, real, opts, imbalanced)
    imbalanced = row["utility"]["augmentation"]["imbalanced_real"]
    stages.update()
    stages.set_postfix_str("membership inference")
    row["privacy"] = _privacy(subj, real, l_syn, opts.seed)
    stages.update()
    stages.set_postfix_str("attribute inference")
    (xm, ym), (xn, yn) = real.members, real.nonmembers
    row["privacy"]["attribute_inference"] = attribute.attribute_inference(
        xm, ym, xn, yn, subj.images, subj.labels, real.ref.images, real.ref.labels, opts.seed
    )
    stages.update()
    row["privacy"]["nearest_pairs"] = privacy.nearest_pairs(real.train.images, subj.images)
    stages.update()
    stages.close()
    row["seconds"] = round(time.time() - t1, 2)
    return row, imbalanced


def _subject_fidelity(subj: Subject, real: _Real, opts: _Options) -> tuple[dict, list[str]]:
    """The subject's fidelity figures and its plain-words collapse flags."""
    train = real.train
    fid = {
        "per_class_diff": fidelity.per_class_diff(
            train.images, train.labels, subj.images, subj.labels, train.num_classes
        ),
        **_versus_train(real, subj.images, subj.labels, opts.seed),
    }
    flags = diversity.collapse_flags(
        fid["diversity"], fid["prdc"], real.floor["prdc"], train.class_names
    )
    if opts.inception_weights:
        from .inception import fid as inception_fid

        fid["fid_inception"] = inception_fid(
            opts.inception_weights, train.images[real.fid_idx], subj.images
        )
    return fid, flags


def _subject_utility(subj: Subject, real: _Real, opts: _Options, imbalanced) -> dict:
    """TSTR per classifier, the real-data TRTR beside it, and augmentation of the real data."""
    train, hold = real.train, real.hold
    tstr = utility.per_classifier(
        utility.tstr, subj.images, subj.labels, hold, opts.classifiers, **opts.fit
    )
    aug = utility.augmentation(
        train.images,
        train.labels,
        subj.images,
        subj.labels,
        hold.images,
        hold.labels,
        train.num_classes,
        baseline=imbalanced,
        **opts.fit,
    )
    return {
        "protocol": utility.PROTOCOL,
        "classifiers": list(opts.classifiers),
        "tstr": tstr,
        "trtr": real.trtr,
        "augmentation": aug,
    }


def _result(real: _Real, subjects: list, models: list[dict], separate: bool) -> dict:
    train, hold, m = real.train, real.hold, len(real.members[0])
    return {
        "format": "privsynth-evaluation/2",
        "dataset": {
            "name": train.name,
            "n_train": len(train),
            "n_holdout": len(hold),
            "holdout_random_split": not separate,
            "n_reference": len(real.ref),
            "n_members": int(m),
            "n_nonmembers": int(m),
            "n_fidelity": int(len(real.fid_idx)),
            "image_shape": list(train.image_shape),
            "classes": train.class_names,
        },
        "feature_extractor": real.fx_info,
        "feature_space": real.space.info(),
        "stats_table": fidelity.stats_table(
            train.images, {"real holdout": hold.images, **{s.name: s.images for s in subjects}}
        ),
        "real_floor": real.floor,
        "models": models,
        "warnings": [MIA_SHIFT_WARNING] if separate else [],
        "seconds": 0.0,
    }


def _privacy(subj: Subject, real: _Real, f_syn: np.ndarray, seed: int) -> dict:
    """Membership attacks (members vs non-members) against the DP ceiling, and DCR."""
    (xm, ym), (xn, yn), ref = real.members, real.nonmembers, real.ref
    candidates, m = (np.concatenate([xm, xn]), np.concatenate([ym, yn])), len(xm)
    domias = privacy.domias(real.f_candidates, f_syn, real.f_ref, seed=seed)
    # subj.synthesizer is None for a synthetic set read from files (no model, no white box)
    scores, radius = privacy.membership_scores(
        candidates,
        (subj.images, subj.labels),
        (ref.images, ref.labels),
        subj.synthesizer,
        {"domias": domias},
    )
    attacks = {
        name: mia.roc_summary(s[:m], s[m:], subj.epsilon, subj.delta) for name, s in scores.items()
    }
    best = max(attacks, key=lambda a: attacks[a]["auc"])
    return {
        "mia": attacks,
        "monte_carlo_radius": radius,
        "strongest_attack": best,
        "dcr": privacy.dcr(xm, ym, xn, yn, subj.images, subj.labels),
        "white_box": "white_box" in scores,
    }


def _shareable(card: dict | None) -> dict | None:
    if card is None:
        return None
    card = {**card, "data": _without(card.get("data") or {}, "check", "dataset_key")}
    led = (card.get("privacy") or {}).get("ledger")
    if isinstance(led, dict) and "dataset_key" in led:
        card["privacy"] = {**card["privacy"], "ledger": _without(led, "dataset_key")}
    return card


def _without(d: dict, *keys: str) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


def _plain(obj):
    """Floats that JSON can hold (NaN/inf -> null / "infinity")."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return None if math.isnan(f) else ("infinity" if math.isinf(f) else f)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
