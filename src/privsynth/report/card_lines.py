"""A run's privacy card as the text `privsynth info`, `train` and `federate` print and the HTML
report shows. A plain function of the card dict (and the ledger's total, when given)."""

from __future__ import annotations

from ..nodp import is_private
from .card_text import (
    not_covered,
    plain_language,
    public_data_sentence,
    size_sentence,
    spend_line,
    unfinished_dp,
)


def _row(label: str, text) -> str:
    return f"  {label:<11} {text}"


def format_card(card: dict, spend: dict | None = None) -> str:
    """The card as text. ``spend``: the dataset's ledger total (default: the card's snapshot)."""
    data = card["data"]
    shape = "x".join(map(str, data.get("image_shape", [])))
    auto = "  (chosen by --method auto)" if card.get("method_choice") else ""
    lines = [
        f"privsynth run {card['run_id']}  [{card['status']}]",
        _row("method", card["method"] + auto),
        _row("data", f"{data.get('name')}  ({shape}, {len(data.get('classes', []))} classes)"),
    ]
    if not is_private(card):
        lines.append(_row("privacy", "NONE — ∞ (no DP): a non-private baseline"))
    else:
        lines += _dp_lines(card, spend)
    lines.append(_row("in words", plain_language(card)))
    public = public_data_sentence(card)
    if public:
        lines.append(f"{'':14}{public}")
    if "progress" in card:
        lines.append(_row("progress", card["progress"]))
    return "\n".join(lines)


def _dp_lines(card: dict, spend: dict | None) -> list[str]:
    """A DP run's guarantee, mechanism, releases, spend and caveats."""
    pv = card["privacy"]
    eps = pv.get("epsilon")
    if isinstance(eps, (int, float)):
        lines = [_row("privacy", f"({eps:.4g}, {pv['delta']:.3g})-DP per {pv['unit']}")]
    else:
        unfinished = "" if card.get("status") == "diverged" else "(training not finished) "
        lines = [_row("privacy", unfinished + str(unfinished_dp(card)))]
    sgd = pv.get("dp_sgd")
    gaussian = pv.get("mechanism", {}).get("name") == "gaussian"
    if sgd:
        with_release = ", with the warm-up release" if sgd.get("includes_warmup_release") else ""
        how = (
            f"one release on all training images, sensitivity C {sgd['max_grad_norm']}"
            if gaussian
            else f"q {sgd['sample_rate']:.4g} (Poisson, batch size "
            f"{sgd.get('batch_size') or '?'}), {sgd['steps']} steps, clip C {sgd['max_grad_norm']}"
        )
        lines += [
            _row(
                "Gaussian" if gaussian else "DP-SGD",
                f"epsilon {sgd['epsilon']:.4g} at delta {sgd['delta']:.3g} ({sgd['accountant']} "
                f"accountant, computed from what ran{with_release})",
            ),
            f"{'':14}sigma {sgd['noise_multiplier']:.4g}, {how}",
        ]
    lines += _warmup_lines(pv.get("warmup"))
    counts = pv.get("class_proportions", {})
    when = "released" if counts.get("values") is not None else "to be released after training"
    led, total = pv.get("ledger"), spend_line(spend or pv.get("dataset_spend"))
    optional = [
        (
            "classes",
            counts.get("mechanism", "uniform") != "uniform"
            and f"proportions {when} with {counts['mechanism']} (epsilon {counts['epsilon']:.3g})",
        ),
        ("size", size_sentence(pv.get("neighbouring"))),
        (
            "ledger",
            led
            and f"this dataset's total epsilon {led['dataset_epsilon_spent']:.4g} by "
            f"{led['composition'].split(':')[0]} when this run finished"
            + (f" ({led['location']})" if led.get("location") else ""),
        ),
        ("dataset", total and f"total spend {total}"),
        *(("warning", note) for note in pv.get("warnings", [])),
        ("not covered", not_covered(card)),
    ]
    return lines + [_row(label, text) for label, text in optional if text]


def _warmup_lines(warm: dict | None) -> list[str]:
    """What pretrained the model before DP-SGD: a DP release (central images or DP-MERF) and/or
    public data."""
    if not warm:
        return []
    out = []
    for kind, what in (
        ("central", "central images: Gaussian release"),
        ("merf", "DP-MERF release: Gaussian"),
    ):
        r = warm.get(kind)
        if not r:
            continue
        share = f", {r['share']:.0%} share" if r.get("share") else ""
        sampling = f", q {r['sample_rate']:.3g} x {r['queries']}" if kind == "central" else ""
        drawn = "; its generator's draws pretrained the model" if kind == "merf" else ""
        out.append(
            f"  warm-up     {what}, sigma {r['noise_multiplier']:.4g}{sampling}, epsilon alone "
            f"{r['epsilon_alone']:.3g}{share}{drawn}; composed with DP-SGD in one accountant"
        )
    p = warm.get("public_data")
    if p:
        # the name the user gave the data, not its local path (older cards: the path)
        named = p.get("name") or p.get("source") or "(in memory)"
        out.append(
            f"  warm-up     public data {named} ({p['n_images']} "
            "images, declared public: no budget spent, not protected)"
        )
    return out
