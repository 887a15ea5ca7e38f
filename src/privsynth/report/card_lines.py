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


def format_card(card: dict, spend: dict | None = None) -> str:
    """The card as text. ``spend``: the dataset's ledger total (default: the card's snapshot)."""
    pv, data = card["privacy"], card["data"]
    shape = "x".join(map(str, data.get("image_shape", [])))
    lines = [
        f"privsynth run {card['run_id']}  [{card['status']}]",
        f"  method      {card['method']}"
        + ("  (chosen by --method auto)" if card.get("method_choice") else ""),
        f"  data        {data.get('name')}  ({shape}, {len(data.get('classes', []))} classes)",
    ]
    if not is_private(card):
        lines.append("  privacy     NONE — ∞ (no DP): a non-private baseline")
    else:
        eps = pv.get("epsilon")
        lines.append(
            f"  privacy     ({eps:.4g}, {pv['delta']:.3g})-DP per {pv['unit']}"
            if isinstance(eps, (int, float))
            else f"  privacy     {unfinished_dp(card)}"
            if card.get("status") == "diverged"
            else f"  privacy     (training not finished) {unfinished_dp(card)}"
        )
        sgd = pv.get("dp_sgd")
        gaussian = pv.get("mechanism", {}).get("name") == "gaussian"
        if sgd:
            with_release = (
                ", with the warm-up release" if sgd.get("includes_warmup_release") else ""
            )
            lines.append(
                f"  {'Gaussian' if gaussian else 'DP-SGD':<11} epsilon "
                f"{sgd['epsilon']:.4g} at delta {sgd['delta']:.3g} "
                f"({sgd['accountant']} accountant, computed from what ran"
                f"{with_release})"
            )
            lines.append(
                f"              sigma {sgd['noise_multiplier']:.4g}, one release on all "
                f"training images, sensitivity C {sgd['max_grad_norm']}"
                if gaussian
                else f"              sigma {sgd['noise_multiplier']:.4g}, "
                f"q {sgd['sample_rate']:.4g} "
                f"(Poisson, batch size {sgd.get('batch_size') or '?'}), {sgd['steps']} "
                f"steps, clip C {sgd['max_grad_norm']}"
            )
        lines += _warmup_lines(pv.get("warmup"))
        counts = pv.get("class_proportions", {})
        if counts.get("mechanism", "uniform") != "uniform":
            when = (
                "released" if counts.get("values") is not None else "to be released after training"
            )
            lines.append(
                f"  classes     proportions {when} with {counts['mechanism']} "
                f"(epsilon {counts['epsilon']:.3g})"
            )
        size = size_sentence(pv.get("neighbouring"))
        if size:
            lines.append(f"  size        {size}")
        if pv.get("ledger"):
            led = pv["ledger"]
            lines.append(
                "  ledger      this dataset's total epsilon "
                f"{led['dataset_epsilon_spent']:.4g} by "
                f"{led['composition'].split(':')[0]} when this run finished"
                + (f" ({led['location']})" if led.get("location") else "")
            )
        total = spend_line(spend or pv.get("dataset_spend"))
        if total:
            lines.append(f"  dataset     total spend {total}")
        for note in pv.get("warnings", []):
            lines.append(f"  warning     {note}")
        if not_covered(card):
            lines.append(f"  not covered {not_covered(card)}")
    lines.append(f"  in words    {plain_language(card)}")
    public = public_data_sentence(card)
    if public:
        lines.append(f"              {public}")
    if "progress" in card:
        lines.append(f"  progress    {card['progress']}")
    return "\n".join(lines)


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
