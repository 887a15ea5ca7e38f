"""The Markdown summary printed to the terminal after `privsynth evaluate`."""

from __future__ import annotations


def fmt(x, spec: str = ".3f") -> str:
    if x is None:
        return "–"
    if isinstance(x, str):
        return x
    return format(x, spec)


def eps_text(eps) -> str:
    return "∞ (no DP)" if eps in ("infinity", None) or eps == float("inf") else f"{eps:.3g}"


def stats_rows(result: dict) -> list[str]:
    lines = ["| data | mean | std | skewness | kurtosis | Δmean | Δstd | Δskew | Δkurt |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["stats_table"]:
        name = "real (train)" if r["model"] == "real" else r["model"]
        d = [fmt(r.get(f"d_{k}"), "+.4f") for k in ("mean", "std", "skewness", "kurtosis")]
        lines.append(f"| {name} | {r['mean']:.4f} | {r['std']:.4f} | {r['skewness']:.3f} | "
                     f"{r['kurtosis']:.3f} | " + " | ".join(d) + " |")
    return lines


def summary(result: dict) -> str:
    ds = result["dataset"]
    lines = [f"## privsynth evaluation — {ds['name']} ({ds['n_train']} train / {ds['n_holdout']} "
             f"holdout, fingerprint {ds['fingerprint'][:12]})", "", "### Pixel statistics", ""]
    lines += stats_rows(result)
    floor = result["real_floor"]
    lines += ["", "### Fidelity (FD-LeNet feature space), detection, utility", "",
              "| model | ε | FD-LeNet | KID×1e3 | precision | recall | density | coverage | "
              "detect AUC [95% CI] | TSTR | TRTR |",
              "|---|---|---|---|---|---|---|---|---|---|---|",
              f"| real holdout (floor) | – | {floor['fd_lenet']:.2f} | "
              f"{1e3 * floor['kid_lenet']['mean']:.2f} | {floor['prdc']['precision']:.3f} | "
              f"{floor['prdc']['recall']:.3f} | {floor['prdc']['density']:.3f} | "
              f"{floor['prdc']['coverage']:.3f} | – | – | – |"]
    for m in result["models"]:
        f, d, u = m["fidelity"], m["detection"], m["utility"]
        lines.append(f"| {m['name']} | {eps_text(m['epsilon'])} | {f['fd_lenet']:.2f} | "
                     f"{1e3 * f['kid_lenet']['mean']:.2f} | {f['prdc']['precision']:.3f} | "
                     f"{f['prdc']['recall']:.3f} | {f['prdc']['density']:.3f} | "
                     f"{f['prdc']['coverage']:.3f} | {d['auc']:.3f} [{d['auc_ci'][0]:.3f}, "
                     f"{d['auc_ci'][1]:.3f}] | {u['tstr']['accuracy']:.1%} | "
                     f"{u['trtr']['accuracy']:.1%} |")
    lines += ["", "### Membership inference (members = training split, non-members = holdout)", "",
              "| model | attack | AUC [95% CI] | TPR@1%FPR | TPR@0.1%FPR | DP ceiling TPR@1% | "
              "DCR share closer to train |", "|---|---|---|---|---|---|---|"]
    for m in result["models"]:
        p = m["privacy"]
        for name, a in p["mia"].items():
            lines.append(f"| {m['name']} | {name} | {a['auc']:.3f} [{a['auc_ci95'][0]:.2f}, "
                         f"{a['auc_ci95'][1]:.2f}] | {a['tpr_at_0.01_fpr']:.3f} | "
                         f"{a['tpr_at_0.001_fpr']:.3f} | {a['dp_ceiling_tpr_at_0.01_fpr']:.3f} | "
                         f"{p['dcr']['share_closer_to_train']:.3f} |")
    lines += ["", f"evaluation took {result['seconds']:.1f} s"]
    return "\n".join(lines)
