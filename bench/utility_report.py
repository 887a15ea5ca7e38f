"""The utility benchmark's table (Markdown) and frontier plot (PNG), from its result dict."""

from __future__ import annotations

import math
import os

CLASSIFIERS = (("lenet", "LeNet"), ("resnet", "ResNet"))


def _eps_key(e) -> float:
    return math.inf if isinstance(e, str) else float(e)


def _eps_label(e) -> str:
    return "no DP" if isinstance(e, str) else f"eps {e:g}"


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def markdown(table: dict) -> str:
    """Two tables: TSTR (LeNet / ResNet) per method x epsilon, then every cell's details."""
    eps = sorted(table["epsilons"], key=_eps_key)
    cells = {(r["method"], str(r["epsilon"])): r for r in table["rows"]}
    skipped = {(r["method"], str(r["epsilon"])) for r in table["not_run"]}
    trtr = table["reference"]["trtr"]
    lines = [
        f"TSTR on {table['data']} ({table['n_train']} train / {table['n_holdout']} holdout, "
        f"{table['n_synthetic']} synthetic images), LeNet / ResNet:",
        "",
        "| method | " + " | ".join(_eps_label(e) for e in eps) + " |",
        "|---|" + "---|" * len(eps),
    ]
    for m in table["methods"]:
        row = []
        for e in eps:
            r = cells.get((m, str(e)))
            row.append(
                f"{_pct(r['tstr']['lenet']['accuracy'])} / {_pct(r['tstr']['resnet']['accuracy'])}"
                if r
                else "not run"
                if (m, str(e)) in skipped
                else "–"
            )
        lines.append(f"| {m} | " + " | ".join(row) + " |")
    lines.append(
        "| *train on real (TRTR)* | "
        + " | ".join(
            f"{_pct(trtr['lenet']['accuracy'])} / {_pct(trtr['resnet']['accuracy'])}" for _ in eps
        )
        + " |"
    )
    floor = table["reference"]["real_floor"]
    lines += [
        "",
        f"Real floor ({floor['what']}): FD-LeNet {floor['fd_lenet']:.2f}, precision "
        f"{floor['prdc']['precision']:.2f}, recall {floor['prdc']['recall']:.2f}.",
        "",
        "| cell | eps spent | FD-LeNet | precision | recall | spread syn/real | collapse? "
        "| train min | peak MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(
        table["rows"], key=lambda r: (table["methods"].index(r["method"]), _eps_key(r["epsilon"]))
    ):
        spent = r["epsilon_spent"]
        wall, mem = r["train"].get("wall_seconds"), r["train"].get("peak_rss_mib")
        flags = "; ".join(f.split(":")[0] for f in r["collapse_flags"]) or "no"
        lines.append(
            f"| {r['cell']} | {spent if isinstance(spent, str) else f'{spent:.3g}'} | "
            f"{r['fd_lenet']:.1f} | {r['prdc']['precision']:.2f} | "
            f"{r['prdc']['recall']:.2f} | {r['within_class_spread']:.2f} | {flags} | "
            f"{'–' if wall is None else f'{wall / 60:.1f}'} | "
            f"{'–' if mem is None else f'{mem:.0f}'} |"
        )
    for r in table["not_run"]:
        e = r["epsilon"] if isinstance(r["epsilon"], str) else f"{r['epsilon']:g}"
        lines.append(f"| {r['method']}-eps{e} | not run: {r['reason']} | | | | | | | |")
    return "\n".join(lines) + "\n"


def plot_frontier(table: dict, path: str | os.PathLike[str]) -> None:
    """TSTR vs epsilon (log axis, "no DP" at the right), one line per method, one panel per
    classifier, TRTR dashed. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from privsynth.atomic import atomic_path

    finite = sorted({float(e) for e in table["epsilons"] if not isinstance(e, str)})
    inf_x = (finite[-1] if finite else 1.0) * 3.0
    xpos = lambda e: inf_x if isinstance(e, str) else float(e)  # noqa: E731
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), dpi=110, sharey=True)
    for ax, (key, label) in zip(axes, CLASSIFIERS, strict=True):
        for m in table["methods"]:
            pts = sorted(
                (xpos(r["epsilon"]), r["tstr"][key]["accuracy"])
                for r in table["rows"]
                if r["method"] == m
            )
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=m)
        ax.axhline(
            table["reference"]["trtr"][key]["accuracy"],
            color="k",
            ls="--",
            lw=1,
            label="train on real (TRTR)",
        )
        ax.set_xscale("log")
        ticks = finite + ([inf_x] if "inf" in map(str, table["epsilons"]) else [])
        ax.set_xticks(ticks)
        ax.set_xticklabels(["no DP" if t == inf_x else f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel(f"epsilon (delta {table['delta'] or 'default'})")
        ax.set_title(f"TSTR, {label}")
        ax.set_ylim(0, 1.0)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy on the real holdout")
    axes[1].legend(fontsize=8, loc="lower right")
    partial = " (partial)" if table.get("partial") else ""
    fig.suptitle(
        f"Utility frontier: {table['data']}, {table['n_train']} training images, "
        f"{table['n_synthetic']} synthetic{partial}"
    )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
