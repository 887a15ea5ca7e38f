"""A self-contained HTML report: every image is embedded as a base64 PNG, no external files."""

from __future__ import annotations

import base64
import html
import os
import time

from ..atomic import atomic_path
from ..nodp import is_private
from .card_lines import format_card
from .grid import gallery_png, grid_png
from .markdown import (
    CLASSIFIER_NAMES,
    accuracy_cells,
    classifiers_of,
    collapse_text,
    eps_text,
    fmt,
    spread_text,
)
from .plots import roc_png

CSS = """body{font-family:system-ui,sans-serif;margin:24px;max-width:1150px;color:#222}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:3px 8px;
font-size:13px;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
h2{border-bottom:2px solid #444;padding-bottom:2px;margin-top:28px}.card{background:#f7f7f2;
border:1px solid #cc9;padding:8px 12px;white-space:pre-wrap;font-family:monospace;font-size:12px}
.flex{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}.note{color:#555;font-size:13px}
.bad{color:#b00;font-weight:bold}.ok{color:#070}"""


def img(png: bytes, alt: str, width: int | None = None) -> str:
    w = f' width="{width}"' if width else ""
    return (
        f'<img alt="{html.escape(alt)}"{w} src="data:image/png;base64,'
        f'{base64.b64encode(png).decode()}">'
    )


def table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def png_width(png: bytes) -> int:
    """Pixel width from the PNG header (IHDR: bytes 16..20, big-endian)."""
    return int.from_bytes(png[16:20], "big")


def verdict(flags: list[str]) -> str:
    text = html.escape(collapse_text(flags))
    return f"<span class='bad'>{text}</span>" if flags else f"<span class='ok'>{text}</span>"


def flag_html(flags: list[str], width: int | None = None) -> str:
    """The plain-words flags in red, one per line (empty string when there are none)."""
    if not flags:
        return ""
    style = f" style='max-width:{width}px'" if width else ""
    return (
        f"<div class='bad'{style}>" + "<br>".join(f"⚠ {html.escape(f)}" for f in flags) + "</div>"
    )


def privacy_card(m: dict) -> str:
    """The run card (if any) plus what the attacks found, against what the guarantee allows."""
    lines = []
    if m.get("card"):
        lines.append(format_card(m["card"]))
    else:
        lines.append(f"synthetic set {m['source']} (made elsewhere: no card, no DP claim known)")
    p = m["privacy"]
    best = p["mia"][p["strongest_attack"]]
    lines += [
        "",
        f"strongest membership attack: {p['strongest_attack']}  AUC {best['auc']:.3f} "
        f"(DP ceiling {best['dp_ceiling_auc']:.3f}),  "
        f"TPR@1%FPR {best['tpr_at_0.01_fpr']:.3f} "
        f"(ceiling {best['dp_ceiling_tpr_at_0.01_fpr']:.3f})",
        f"synthetic images nearer a training image than a holdout image: "
        f"{p['dcr']['share_closer_to_train']:.1%} (50% = no sign of copying)",
    ]
    if any(a["exceeds_dp_ceiling"] for a in p["mia"].values()):
        lines.append(
            "WARNING: an attack exceeds the DP ceiling at a low FPR — check the claim "
            "(or the statistical noise of few non-members)"
        )
    return f'<div class="card">{html.escape(chr(10).join(lines))}</div>'


def render(result: dict, subjects: list, train) -> str:
    sections = (
        _header(result),
        _privacy_cards(result),
        _samples(result, subjects, train),
        _pixel_stats(result),
        _fidelity(result),
        _detection(result),
        _utility(result),
        _membership(result),
        _gallery(result, subjects, train),
    )
    return "\n".join([line for section in sections for line in section] + ["</body></html>"])


def _header(result: dict) -> list[str]:
    ds = result["dataset"]
    return [
        f"<!doctype html><html><head><meta charset='utf-8'><title>privsynth evaluation — "
        f"{html.escape(ds['name'])}</title><style>{CSS}</style></head><body>",
        f"<h1>privsynth evaluation: {html.escape(ds['name'])}</h1>",
        f"<p class='note'>{ds['n_train']} training / {ds['n_holdout']} holdout images "
        f"({'x'.join(map(str, ds['image_shape']))}, {len(ds['classes'])} classes). "
        f"Written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        f" in {result['seconds']:.1f} s.</p>",
    ]


def _warnings(result: dict) -> list[str]:
    return [f"<p class='bad'>⚠ Warning: {html.escape(w)}</p>" for w in result.get("warnings", [])]


def _privacy_cards(result: dict) -> list[str]:
    # the attack summaries below read differently when the holdout is a separate set
    return [
        "<h2>Privacy cards</h2>",
        *_warnings(result),
        *(f"<h3>{html.escape(m['name'])}</h3>{privacy_card(m)}" for m in result["models"]),
    ]


def _samples(result: dict, subjects: list, train) -> list[str]:
    k = len(result["dataset"]["classes"])
    out = ["<h2>Samples (one row per class)</h2><div class='flex'>"]
    for s, m in zip(subjects, result["models"], strict=True):
        png = grid_png(s.images, s.labels, k)
        out.append(
            f"<div><b>{html.escape(s.name)}</b><br>{img(png, s.name)}"
            f"{flag_html(m.get('collapse_flags', []), png_width(png))}</div>"
        )
    out.append(
        f"<div><b>real (training split)</b><br>"
        f"{img(grid_png(train.images, train.labels, k), 'real')}</div></div>"
    )
    return out


def _pixel_stats(result: dict) -> list[str]:
    moments = ("mean", "std", "skewness", "kurtosis")
    rows = [
        [
            html.escape("real (train)" if r["model"] == "real" else r["model"]),
            *(f"{r[c]:.4f}" for c in moments),
            *(fmt(r.get(f"d_{c}"), "+.4f") for c in moments),
        ]
        for r in result["stats_table"]
    ]
    header = ["data", *moments, "Δmean", "Δstd", "Δskew", "Δkurt"]
    return ["<h2>Pixel statistics (real training split vs synthetic)</h2>", table(header, rows)]


FIDELITY_HEADER = [
    "model",
    "FD-LeNet",
    "KID ×1e3",
    "precision",
    "recall",
    "density",
    "coverage",
    "within-class spread syn/real",
    "collapse?",
    "FID (Inception)",
]
PRDC = ("precision", "recall", "density", "coverage")


def _fidelity(result: dict) -> list[str]:
    fx = result["feature_extractor"]
    out = [
        "<h2>Fidelity in the FD-LeNet feature space</h2>"
        f"<p class='note'>Features: 128-d penultimate layer of a LeNet trained on "
        f"{fx['n_reference']} real reference (holdout) images, validation accuracy "
        f"{fx['val_accuracy']:.1%}. FD-LeNet is a Fréchet distance in <i>this</i> space, "
        f"not FID. The real-holdout row is the floor: two real samples.</p>"
    ]
    space = result.get("feature_space") or {}
    if space.get("name", "lenet") != "lenet":  # colour: LeNet features alone miss colour noise
        out.append(
            f"<p class='note'>Colour images: FD, KID and precision / recall / density / "
            f"coverage are read in the <b>{space['name']}</b> space ({space['version']}): "
            "these LeNet features next to a fixed random conv net and colour / edge "
            "statistics, each block standardised on the real images.</p>"
        )
    floor = result["real_floor"]
    rows = [_fidelity_row("real holdout (floor)", floor, floor.get("collapse_flags", []), True)]
    rows += [
        _fidelity_row(html.escape(m["name"]), m["fidelity"], m.get("collapse_flags", []))
        for m in result["models"]
    ]
    out.append(table(FIDELITY_HEADER, rows))
    out.append(
        "<p class='note'>A low Fréchet distance alone does not mean varied images: a "
        "generator that draws one good image per class can score well. Read it with the "
        "within-class spread (mean pairwise pixel distance inside a class, each image "
        "standardised for brightness and contrast; synthetic / real: 1 = as varied as the "
        "real data) and recall / coverage.</p>"
    )
    for m in result["models"]:
        flags = m.get("collapse_flags", [])
        out.append(
            f"<p><b>{html.escape(m['name'])}</b>: "
            + (flag_html(flags) if flags else "<span class='ok'>no sign of mode collapse</span>")
            + "</p>"
        )
    return out


def _fidelity_row(name: str, f: dict, flags: list[str], floor: bool = False) -> list:
    """One row (the real floor's shows no KID spread and has no Inception FID)."""
    kid_std = "" if floor else f" ± {1e3 * f['kid_lenet']['std']:.2f}"
    return [
        name,
        f"{f['fd_lenet']:.2f}",
        f"{1e3 * f['kid_lenet']['mean']:.2f}{kid_std}",
        *(f"{f['prdc'][c]:.3f}" for c in PRDC),
        spread_text(f.get("diversity")),
        verdict(flags),
        fmt(f.get("fid_inception"), ".2f"),
    ]


def _detection(result: dict) -> list[str]:
    rows = [
        [
            html.escape(m["name"]),
            f"{m['detection']['accuracy']:.3f}",
            f"{m['detection']['auc']:.3f}",
            f"[{m['detection']['auc_ci'][0]:.3f}, {m['detection']['auc_ci'][1]:.3f}]",
            m["detection"]["n_test"],
        ]
        for m in result["models"]
    ]
    header = [
        "model",
        "accuracy",
        "AUC (0.5 = indistinguishable)",
        "95% CI (DeLong)",
        "test images",
    ]
    return ["<h2>Detection: real vs synthetic classifier</h2>", table(header, rows)]


def _utility(result: dict) -> list[str]:
    classifiers = classifiers_of(result)
    names = [CLASSIFIER_NAMES.get(c, c) for c in classifiers]
    intro = (
        "<h2>Utility: train on synthetic, test on real (TSTR) vs train on real (TRTR)</h2>"
        "<p class='note'>Each classifier (LeNet; ResNet-8 on standardised images, with "
        "random shifts) follows one fixed schedule set by the training-set size alone "
        "and the last epoch is "
        "reported: nothing is selected, the holdout is only the test set. TRTR: the same "
        "classifier and rule on the real training split. Synthetic images are sampled "
        "class-balanced. The augmentation columns use the LeNet.</p>"
    )
    rows = [_utility_row(m, classifiers) for m in result["models"]]
    header = [
        "model",
        "synthetic images",
        *(f"TSTR {n}" for n in names),
        *(f"TRTR {n}" for n in names),
        "minority acc., imbalanced real",
        "minority acc., real + synthetic",
        "overall acc., real + synthetic",
    ]
    return [intro, table(header, rows)]


def _utility_row(m: dict, classifiers: list[str]) -> list:
    u = m["utility"]
    a = u["augmentation"]
    return [
        html.escape(m["name"]),
        m["n_synthetic"],
        *accuracy_cells(u, "tstr", classifiers),
        *accuracy_cells(u, "trtr", classifiers),
        f"{a['minority_accuracy']['imbalanced_real']:.1%}",
        f"{a['minority_accuracy']['real_plus_synthetic']:.1%}",
        f"{a['real_plus_synthetic']['accuracy']:.1%}",
    ]


MIA_HEADER = [
    "attack",
    "AUC [95% CI]",
    "TPR@1%",
    "TPR@0.1%",
    "DP ceiling @1%",
    "DP ceiling @0.1%",
    "significantly above ceiling",
]


def _membership(result: dict) -> list[str]:
    out = [
        "<h2>Membership inference</h2><p class='note'>Members: training images; "
        "non-members: holdout images (equal numbers). Dashed: the largest TPR any attack "
        "can reach against the claimed (ε, δ)-DP.</p>",
        *_warnings(result),
    ]
    for m in result["models"]:
        out += [_attacks(m), _attribute_inference(m["privacy"]["attribute_inference"])]
    return out


def _attacks(m: dict) -> str:
    """One model's membership attacks against the DP ceiling, its DCR and its ROC plot."""
    p = m["privacy"]
    rows = [
        [
            html.escape(n),
            f"{a['auc']:.3f} [{a['auc_ci95'][0]:.3f}, {a['auc_ci95'][1]:.3f}]",
            f"{a['tpr_at_0.01_fpr']:.3f}",
            f"{a['tpr_at_0.001_fpr']:.3f}",
            f"{a['dp_ceiling_tpr_at_0.01_fpr']:.3f}",
            f"{a['dp_ceiling_tpr_at_0.001_fpr']:.3f}",
            "<span class='bad'>yes</span>" if a["exceeds_dp_ceiling"] else "no",
        ]
        for n, a in p["mia"].items()
    ]
    eps = m["epsilon"] if is_private(m) else None
    roc = roc_png(p["mia"], f"{m['name']} (ε = {eps_text(m)})", eps, m["delta"])
    return (
        f"<h3>{html.escape(m['name'])}</h3><div class='flex'><div>"
        + table(MIA_HEADER, rows)
        + table(["DCR", "value"], [[k, f"{v:.4f}"] for k, v in p["dcr"].items()])
        + f"</div>{img(roc, 'ROC ' + m['name'], 420)}</div>"
    )


def _attribute_inference(ai: dict) -> str:
    rows = [
        [
            src,
            who,
            f"{ai[src][who]['mse_hidden_half']:.4f}",
            f"{ai[src][who]['label_accuracy']:.3f}",
        ]
        for src in ("synthetic", "reference")
        for who in ("members", "nonmembers")
    ]
    return (
        "<p><b>Attribute inference</b> (attacker knows the top half, reconstructs the "
        f"bottom half and the label from {ai['n_pool']} images of each source)</p>"
        + table(["attacker's images", "targets", "MSE hidden half", "label accuracy"], rows)
    )


def _gallery(result: dict, subjects: list, train) -> list[str]:
    out = [
        "<h2>Nearest-neighbour gallery</h2><p class='note'>The synthetic images closest to "
        "any training image (left of each pair) beside that training image (right).</p>"
    ]
    for m, s in zip(result["models"], subjects, strict=True):
        pairs = m["privacy"]["nearest_pairs"]
        dists = ", ".join(f"{p['distance']:.2f}" for p in pairs)
        out.append(
            f"<h3>{html.escape(m['name'])}</h3>"
            f"{img(gallery_png(pairs, s.images, train.images), 'gallery ' + m['name'])}"
            f"<p class='note'>L2 distances (pixels 0..1): {dists}</p>"
        )
    return out


def write_report(path: str | os.PathLike[str], result: dict, subjects: list, train) -> None:
    text = render(result, subjects, train)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
