"""Matplotlib figures as PNG bytes (Agg backend: no display needed)."""

from __future__ import annotations

import io

import numpy as np


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def roc_png(
    attacks: dict[str, dict], title: str, epsilon: float | None = None, delta: float = 0.0
) -> bytes:
    """Membership-inference ROC curves on log-log axes, with the chance line and, for a DP model,
    the ceiling TPR <= e^eps FPR + delta."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..privacy.ceiling import dp_ceiling

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    floor = min(a["min_resolvable_fpr"] for a in attacks.values()) / 2
    grid = np.geomspace(floor, 1, 200)
    ax.plot(grid, grid, ":", color="grey", label="chance")
    if epsilon is not None and np.isfinite(epsilon):
        ax.plot(
            grid,
            dp_ceiling(epsilon, delta, grid),
            "--",
            color="black",
            label=f"DP ceiling (eps={epsilon:.3g})",
        )
    for name, a in attacks.items():
        fpr, tpr = np.asarray(a["roc"]["fpr"]), np.asarray(a["roc"]["tpr"])
        ax.step(
            np.maximum(fpr, floor),
            np.maximum(tpr, floor),
            where="post",
            label=f"{name} (AUC {a['auc']:.3f})",
        )
    ax.set(xscale="log", yscale="log", xlim=(floor, 1), ylim=(floor, 1.05))
    ax.set(xlabel="false positive rate", ylabel="true positive rate")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, which="both", alpha=0.2)
    return _png(fig)
