"""The privacy-utility frontier as a PNG: TSTR accuracy vs epsilon, one line per method."""

from __future__ import annotations

import math
import os

from ..atomic import atomic_path
from ..nodp import is_private


def plot_frontier(table: dict, path: str | os.PathLike[str]) -> None:
    """Utility vs epsilon (log axis; "no DP" drawn at the right edge) with the train-on-real
    ceiling as a dashed line. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = [r["epsilon"] for r in table["rows"] if is_private(r)]
    hi = max(finite) if finite else 1.0
    inf_x = hi * 3.0

    def xpos(r):
        return float(r["epsilon"]) if is_private(r) else inf_x

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for method in table["methods"]:
        pts = sorted((xpos(r), r["tstr_accuracy"]) for r in table["rows"] if r["method"] == method)
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=method)
    ax.axhline(table["train_on_real_accuracy"], color="k", ls="--", lw=1, label="train on real")
    ax.set_xscale("log")
    ticks = sorted(set(finite)) + ([inf_x] if not all(is_private(r) for r in table["rows"]) else [])
    ax.set_xticks(ticks)
    ax.set_xticklabels(
        [("no DP" if math.isclose(t, inf_x) and t not in finite else f"{t:g}") for t in ticks]
    )
    ax.minorticks_off()
    ax.set(xlabel="epsilon (delta fixed)", ylabel="TSTR accuracy on real holdout", ylim=(0, 1.0))
    ax.set_title(f"Privacy-utility frontier: {table['data']} ({table['n_train']} train)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
