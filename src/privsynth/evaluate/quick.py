"""The short evaluation printed after ``privsynth train --evaluate``.

The seeds' stats table (real holdout vs synthetic), the within-class spread with its collapse
flag, and TSTR next to TRTR under the same protocol as ``privsynth evaluate`` (class-balanced
synthetic set, fixed schedule, last epoch). The LeNet by default, which keeps it to seconds on
digits; ``classifiers=("lenet", "resnet")`` adds the stronger CNN. The full evaluation with
Fréchet distances and privacy attacks is ``privsynth evaluate``.
"""

from __future__ import annotations

from ..nodp import is_private
from ..report.markdown import CLASSIFIER_NAMES
from .classifier import check_classifier
from .diversity import collapse_flags, within_class_diversity
from .fidelity import stats_table
from .utility import DEFAULT_PASSES, balanced_labels, per_classifier, trtr, tstr


def quick_evaluate(
    run,
    data=None,
    n_synthetic: int | None = None,
    classifiers: tuple[str, ...] = ("lenet",),
    passes: int = DEFAULT_PASSES,
    seed: int = 0,
) -> dict:
    """``n_synthetic`` class-balanced samples (default: as many as the training split)."""
    for c in classifiers:
        check_classifier(c)
    train, holdout = run.load_data(data)
    k = train.num_classes
    n = n_synthetic or len(train)
    images, labels = run.sample(n, labels=balanced_labels(n, k, seed), seed=seed)
    div = within_class_diversity(train.images, train.labels, images, labels, k, seed=seed)
    kw = dict(passes=passes, seed=seed)
    t = per_classifier(tstr, images, labels, holdout, classifiers, **kw)
    r = per_classifier(trtr, train.images, train.labels, holdout, classifiers, **kw)
    return {
        "stats": stats_table(holdout.images, {run.method: images}),
        "diversity": div,
        "collapse_flags": collapse_flags(div, class_names=train.class_names),
        "tstr": t,
        "trtr": r,
        # the first classifier's figures under the names this file has always used
        "tstr_accuracy": t[classifiers[0]]["accuracy"],
        "trtr_accuracy": r[classifiers[0]]["accuracy"],
        "n_synthetic": n,
        "n_holdout": len(holdout),
        "classifiers": list(classifiers),
        "protocol": t[classifiers[0]]["selection"],
    }


def markdown(result: dict, card: dict) -> str:
    eps = f"{card['privacy']['epsilon']:.3g}" if is_private(card) else "∞ (no DP)"
    lines = [
        f"### {card['method']} on {card['data']['name']} (epsilon = {eps})",
        "",
        "| model | mean | std | skewness | kurtosis |",
        "|---|---|---|---|---|",
    ]
    for r in result["stats"]:
        lines.append(
            f"| {r['model']} | {r['mean']:.4f} | {r['std']:.4f} | {r['skewness']:.3f} | "
            f"{r['kurtosis']:.3f} |"
        )
    div = result["diversity"]
    lines += [
        "",
        f"Within-class spread, synthetic / real: {div['ratio_mean']:.2f} "
        f"(1 = as varied as the real data; least varied class {div['ratio_min']:.2f})",
    ]
    lines += [f"WARNING {f}" for f in result["collapse_flags"]]
    lines += [
        "",
        f"Train on {result['n_synthetic']} class-balanced synthetic images, test on "
        f"{result['n_holdout']} real holdout images (fixed schedule, last epoch):",
        "",
        "| classifier | TSTR accuracy | TRTR accuracy (same classifier, real train split) |",
        "|---|---|---|",
    ]
    for c in result["classifiers"]:
        lines.append(
            f"| {CLASSIFIER_NAMES.get(c, c)} | **{result['tstr'][c]['accuracy']:.1%}** | "
            f"{result['trtr'][c]['accuracy']:.1%} |"
        )
    return "\n".join(lines)
