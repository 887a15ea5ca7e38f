"""The short evaluation printed after ``privsynth train --evaluate``.

The seeds' stats table (real holdout vs synthetic) and TSTR next to TRTR. The full evaluation
with privacy attacks is ``privsynth evaluate``.
"""

from __future__ import annotations

from .fidelity import stats_table
from .utility import trtr, tstr


def quick_evaluate(run, data=None, n_synthetic: int | None = None, epochs: int = 10,
                   seed: int = 0) -> dict:
    train, holdout = run.load_data(data)
    n = n_synthetic or len(train)
    images, labels = run.sample(n, seed=seed)
    k = train.num_classes
    return {
        "stats": stats_table(holdout.images, {run.method: images}),
        "tstr_accuracy": tstr(images, labels, holdout.images, holdout.labels, k, epochs, seed),
        "trtr_accuracy": trtr(train.images, train.labels, holdout.images, holdout.labels, k,
                              epochs, seed),
        "n_synthetic": n, "n_holdout": len(holdout), "classifier": f"LeNet, {epochs} epochs",
    }


def markdown(result: dict, card: dict) -> str:
    eps = card["privacy"]["epsilon"]
    eps = eps if isinstance(eps, str) else f"{eps:.3g}"
    lines = [f"### {card['method']} on {card['data']['name']} (epsilon = {eps})", "",
             "| model | mean | std | skewness | kurtosis |", "|---|---|---|---|---|"]
    for r in result["stats"]:
        lines.append(f"| {r['model']} | {r['mean']:.4f} | {r['std']:.4f} | {r['skewness']:.3f} | "
                     f"{r['kurtosis']:.3f} |")
    lines += ["", f"TSTR accuracy (train on {result['n_synthetic']} synthetic, test on "
              f"{result['n_holdout']} real holdout): **{result['tstr_accuracy']:.1%}**",
              f"TRTR accuracy (same CNN trained on the real training split): "
              f"{result['trtr_accuracy']:.1%}"]
    return "\n".join(lines)
