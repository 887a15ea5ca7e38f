"""bench/scaling.py's outputs read back: the log-log plot and the Markdown tables, both from the
result JSON alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot(result: dict, path: Path) -> None:
    """Log-log wall and CPU seconds vs N per method (fitted power laws dashed); the colour cells
    as open squares."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for ax, key, what in zip(
        axes, ("wall_seconds", "cpu_seconds"), ("wall seconds", "CPU seconds"), strict=True
    ):
        for i, m in enumerate(result["config"]["methods"]):
            _plot_method(ax, result, m, key, f"C{i}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("private images N (28x28 grey; squares: CIFAR-10 32x32 colour)")
        ax.set_ylabel(f"{what} per run (one thread)")
        ax.legend(fontsize=8)
    fig.suptitle("privsynth train: cost against N (fixed budget per image)")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def _plot_method(ax, result: dict, method: str, key: str, colour: str) -> None:
    rows = [r for r in result["cells"] if r["method"] == method and not r["exit_code"]]
    grey = sorted((r["n"], r[key]) for r in rows if r["set"] == "grey")
    fit = result["exponents"].get(method, {}).get(key)
    if grey:
        label = f"{method} (b = {fit['b']:.2f})" if fit else method
        ax.plot(*zip(*grey, strict=True), "o", color=colour, label=label)
    if fit:
        xs = np.array([grey[0][0], grey[-1][0]], float)
        ax.plot(xs, fit["a"] * xs ** fit["b"], "--", color=colour, lw=1)
    colour_rows = [(r["n"], r[key]) for r in rows if r["set"] == "colour"]
    if colour_rows:
        ax.plot(*zip(*colour_rows, strict=True), "s", mfc="none", color=colour)


def affine_cpu(result: dict, method: str) -> tuple[float, float] | None:
    """Least-squares CPU seconds = fixed + per_image * N over the method's grey one-process
    cells: (fixed seconds, seconds per 1 000 images). A power law with b < 1 over 1k-8k is
    what a fixed start-up cost plus a linear per-image cost looks like; this splits the two."""
    pts = [
        (r["n"], r["cpu_seconds"])
        for r in result["cells"]
        if r["method"] == method and r["set"] == "grey" and not r["exit_code"]
    ]
    if len({n for n, _ in pts}) < 2:
        return None
    n, cpu = np.array(pts, float).T
    per_image, fixed = np.polyfit(n, cpu, 1)
    return float(fixed), float(per_image * 1000)


def markdown(result: dict) -> str:
    """The exponents and the cells as Markdown tables, from the result file alone."""
    lines = [
        "| method | b (wall) | b (CPU) | b (training only) | R^2 (wall) "
        "| CPU = fixed + per 1k images |",
        "|---|---|---|---|---|---|",
    ]
    for m, fits in result["exponents"].items():
        wall, cpu, train = (
            fits.get(k) for k in ("wall_seconds", "cpu_seconds", "train_wall_seconds")
        )
        cells = [f"{f['b']:.2f}" if f else "–" for f in (wall, cpu, train)]
        affine = affine_cpu(result, m)
        split = f"{affine[0]:.1f} s + {affine[1]:.2f} s" if affine else "–"
        lines.append(f"| {m} | {' | '.join(cells)} | {wall['r2'] if wall else '–'} | {split} |")
    lines += [
        "",
        "| method | cells | N | size | procs | wall s | CPU s | training s | peak MB | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = {"grey": 0, "colour": 1, "size": 2, "nproc": 3}
    for r in sorted(
        result["cells"], key=lambda r: (r["method"], order[r["set"]], r["n"], r["size"])
    ):
        lines.append(
            f"| {r['method']} | {r['set']} | {r['n']} | {r['size']} | {r['nproc']} | "
            f"{r['wall_seconds']} | {r['cpu_seconds']} | {r.get('train_wall_seconds', '–')} | "
            f"{r['peak_rss_mb']} | {r['load_before']} |"
        )
    return "\n".join(lines)
