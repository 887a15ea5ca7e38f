"""The Markdown summary printed to the terminal after `privsynth evaluate`."""

from __future__ import annotations

from ..nodp import is_private


def fmt(x, spec: str = ".3f") -> str:
    if x is None:
        return "–"
    if isinstance(x, str):
        return x
    return format(x, spec)


def eps_text(row: dict) -> str:
    """An evaluation or sweep row's epsilon for display."""
    return f"{row['epsilon']:.3g}" if is_private(row) else "∞ (no DP)"


def stats_rows(result: dict) -> list[str]:
    lines = [
        "| data | mean | std | skewness | kurtosis | Δmean | Δstd | Δskew | Δkurt |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["stats_table"]:
        name = "real (train)" if r["model"] == "real" else r["model"]
        d = [fmt(r.get(f"d_{k}"), "+.4f") for k in ("mean", "std", "skewness", "kurtosis")]
        lines.append(
            f"| {name} | {r['mean']:.4f} | {r['std']:.4f} | {r['skewness']:.3f} | "
            f"{r['kurtosis']:.3f} | " + " | ".join(d) + " |"
        )
    return lines


CLASSIFIER_NAMES = {"lenet": "LeNet", "resnet": "ResNet"}


def spread_text(div: dict | None) -> str:
    """Within-class spread, synthetic / real (mean over classes; the least varied class)."""
    if not div or div.get("ratio_mean") is None or div["ratio_mean"] != div["ratio_mean"]:
        return "–"
    return f"{div['ratio_mean']:.2f} (min {div['ratio_min']:.2f})"


def collapse_text(flags: list[str]) -> str:
    """The short verdict next to a Fréchet figure: what the first flag names, or 'no'."""
    return "; ".join(f.split(":")[0] for f in flags) if flags else "no"


def flag_lines(result: dict) -> list[str]:
    """One plain-words line per flag, per model (or a line saying nothing was flagged)."""
    lines = []
    for m in result["models"]:
        flags = m.get("collapse_flags", [])
        lines += [f"- **{m['name']}**: {f}" for f in flags] or [
            f"- {m['name']}: no sign of mode collapse (within-class spread and recall close "
            f"enough to the real data's)"
        ]
    return lines


def accuracy_cells(u: dict, kind: str, classifiers: list[str]) -> list[str]:
    return [f"{u[kind][c]['accuracy']:.1%}" if c in u[kind] else "–" for c in classifiers]


def classifiers_of(result: dict) -> list[str]:
    """The TSTR/TRTR classifiers (the first model's: every model is evaluated with the same)."""
    return result["models"][0]["utility"].get("classifiers", ["lenet"]) if result["models"] else []


def summary(result: dict) -> str:
    ds = result["dataset"]
    lines = [
        f"## privsynth evaluation — {ds['name']} ({ds['n_train']} train / {ds['n_holdout']} "
        "holdout)",
        "",
        "### Pixel statistics",
        "",
        *stats_rows(result),
        *_fidelity_lines(result),
        *_utility_lines(result),
        *_membership_lines(result),
        "",
        f"evaluation took {result['seconds']:.1f} s",
    ]
    return "\n".join(lines)


def _fidelity_row(name: str, eps: str, f: dict, flags: list[str]) -> str:
    return (
        f"| {name} | {eps} | {f['fd_lenet']:.2f} | {1e3 * f['kid_lenet']['mean']:.2f} | "
        + "".join(f"{f['prdc'][c]:.3f} | " for c in ("precision", "recall", "density", "coverage"))
        + f"{spread_text(f.get('diversity'))} | {collapse_text(flags)} |"
    )


def _fidelity_lines(result: dict) -> list[str]:
    floor = result["real_floor"]
    return [
        "",
        "### Fidelity (FD-LeNet feature space) with the collapse check",
        "",
        "| model | ε | FD-LeNet | KID×1e3 | precision | recall | density | coverage | "
        "within-class spread syn/real | collapse? |",
        "|---|---|---|---|---|---|---|---|---|---|",
        _fidelity_row("real holdout (floor)", "–", floor, floor.get("collapse_flags", [])),
        *(
            _fidelity_row(m["name"], eps_text(m), m["fidelity"], m.get("collapse_flags", []))
            for m in result["models"]
        ),
        "",
        "A low Fréchet distance alone does not mean varied images: read it with the "
        "spread (1 = as varied as the real data) and recall.",
        "",
        *flag_lines(result),
    ]


def _utility_lines(result: dict) -> list[str]:
    classifiers = classifiers_of(result)
    names = [CLASSIFIER_NAMES.get(c, c) for c in classifiers]
    lines = [
        "",
        "### Detection and utility (fixed training schedule, last epoch; the holdout "
        "is only the test set)",
        "",
        "| model | n synthetic | detect AUC [95% CI] | "
        + " | ".join([*(f"TSTR {n}" for n in names), *(f"TRTR {n}" for n in names)])
        + " |",
        "|---|---|---|" + "---|" * (2 * len(names)),
    ]
    for m in result["models"]:
        d, u = m["detection"], m["utility"]
        cells = accuracy_cells(u, "tstr", classifiers) + accuracy_cells(u, "trtr", classifiers)
        lines.append(
            f"| {m['name']} | {m['n_synthetic']} | {d['auc']:.3f} [{d['auc_ci'][0]:.3f}, "
            f"{d['auc_ci'][1]:.3f}] | " + " | ".join(cells) + " |"
        )
    return lines


def _membership_lines(result: dict) -> list[str]:
    lines = [
        "",
        "### Membership inference (members = training split, non-members = holdout)",
        "",
        *[f"**Warning:** {w}\n" for w in result.get("warnings", [])],
        "| model | attack | AUC [95% CI] | TPR@1%FPR | TPR@0.1%FPR | DP ceiling TPR@1% | "
        "DCR share closer to train |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in result["models"]:
        p = m["privacy"]
        for name, a in p["mia"].items():
            lines.append(
                f"| {m['name']} | {name} | {a['auc']:.3f} [{a['auc_ci95'][0]:.2f}, "
                f"{a['auc_ci95'][1]:.2f}] | {a['tpr_at_0.01_fpr']:.3f} | "
                f"{a['tpr_at_0.001_fpr']:.3f} | {a['dp_ceiling_tpr_at_0.01_fpr']:.3f} | "
                f"{p['dcr']['share_closer_to_train']:.3f} |"
            )
    return lines
