"""Words for a privacy card: the data owner's one-sentence summary and the model card
(README.md in Hugging Face's format) written next to card.json. Plain functions of the card dict;
they read nothing else."""

from __future__ import annotations

import math

LICENSE_UNSET = "other"


def _number(x: float) -> str:
    if x < 100:
        return f"{x:.3g}"
    if x < 1e6:
        return f"{x:,.0f}"
    return f"{x:.2e}"


def guess_accuracy(epsilon: float, delta: float) -> float:
    """Best accuracy of any yes/no guess 'was this image used?' at a 50/50 prior under
    (epsilon, delta)-DP: maximise (TPR + 1 - FPR)/2 subject to TPR <= e^eps FPR + delta and
    1 - FPR <= e^eps (1 - TPR) + delta (the hypothesis-testing form of DP, Kairouz et al. 2015)."""
    if math.isinf(epsilon):
        return 1.0
    e = math.exp(min(epsilon, 700.0))
    return min(1.0, ((1 - delta) * (e - 1) / (e + 1) + 1 + delta) / 2)


def _percent(p: float) -> str | None:
    """Enough decimals to tell the bound from 100%; None when it is 100% to six places."""
    q = 1.0 - p
    if q < 1e-8:
        return None
    decimals = min(6, max(1, math.ceil(-math.log10(q)) - 1))
    return f"{100 * p:.{decimals}f}%"


def plain_language(card: dict) -> str:
    """One sentence a data owner can sign off on: what (epsilon, delta) mean for one record."""
    pv = card.get("privacy", {})
    eps = pv.get("epsilon")
    if not card.get("private") or eps in (None, "infinity"):
        return (
            "This run has no differential privacy: its weights and samples may reveal "
            "individual training images, so do not publish them if the data is private."
        )
    if not isinstance(eps, (int, float)):
        return "Training has not finished; the guarantee is stated once it has."
    delta = float(pv.get("delta", 0.0))
    unit = str(pv.get("unit") or "one training image with its label")
    records = "each training record"  # never the exact count (add/remove-one neighbours)
    except_ = (
        f", except with probability δ = {delta:.2g} (about 1 in {1 / delta:,.0f})"
        if delta > 0
        else ""
    )
    acc = _percent(guess_accuracy(eps, delta))
    guess = (
        f"is right at most {acc} of the time (a coin flip is 50%)"
        if acc
        else "could be right almost every time (at this ε the bound says little about a single "
        "record)"
    )
    return (
        f"For {records} (unit: {unit}), whether or not it was used changes the chance of "
        f"anything this run releases (its weights and every image sampled from them) by at "
        f"most a factor e^ε = {_number(math.exp(min(eps, 700.0)))} (ε = {eps:.3g}){except_}, "
        f"so someone who knows all the other records and guesses whether it was used "
        f"{guess}."
    )


def not_covered(card: dict) -> str:
    text = str(card.get("privacy", {}).get("not_protected") or "")
    # Older cards started the text with its own label.
    return text[len("Not covered:") :].strip() if text.startswith("Not covered:") else text


def size_sentence(neighbouring: dict | None) -> str | None:
    """What the card says about the training-set size: the DP count(s) it publishes, or none,
    and the parameters that disclose it anyway (``privacy.neighbouring``)."""
    if not neighbouring:
        return None
    shown = [
        f"{c['dp_count']:,.1f} (DP count from the {c['release']} release)"
        for c in neighbouring.get("published_counts") or []
    ]
    text = (
        "Training-set size: not published exactly (neighbouring datasets differ by adding or "
        "removing one record, so an exact count would tell them apart); "
        + (f"noisy: {'; '.join(shown)}." if shown else "no DP count was released.")
    )
    if neighbouring.get("limitation"):
        text += f" Limitation: {neighbouring['limitation']}."
    return text


def spend_line(spend: dict | None) -> str | None:
    """'epsilon 12.3, delta 2e-05 (basic composition; ledger ...)' from privacy.dataset_spend."""
    if not spend:
        return None
    runs = spend.get("runs")
    over = f" over {runs} run{'s' if runs != 1 else ''}" if isinstance(runs, int) else ""
    budget = spend.get("budget")
    of = f" of budget {budget:g}" if isinstance(budget, (int, float)) else ""
    return (
        f"epsilon {spend['epsilon']:.4g}{of}, delta {spend['delta']:.3g}{over} "
        f"({spend.get('composition', 'basic composition')}; ledger {spend.get('ledger', '?')})"
    )


def model_card(
    card: dict,
    evaluation: dict | None = None,
    files: list[str] | None = None,
    license_id: str | None = None,
) -> str:
    """README.md for a run folder in Hugging Face's model-card format (YAML front matter +
    Markdown): method, guarantee, what is not protected, evaluation if any, how to sample."""
    data, pv = card.get("data") or {}, card.get("privacy") or {}
    method, name = card.get("method", "?"), str(data.get("name") or "dataset")
    eps = pv.get("epsilon")
    private = bool(card.get("private")) and isinstance(eps, (int, float))
    title_eps = (
        f"(ε = {eps:.3g}, δ = {float(pv.get('delta', 0)):.2g})-DP"
        if private
        else "no differential privacy"
    )
    license_id = license_id or card.get("license") or LICENSE_UNSET
    tags = [
        "privsynth",
        "synthetic-data",
        "image-generation",
        method,
        "differential-privacy" if private else "no-differential-privacy",
    ]
    front = ["---", f"license: {license_id}"]
    if license_id == LICENSE_UNSET:
        front.append("license_name: unspecified")
    front += [
        "library_name: privsynth",
        "tags:",
        *[f"- {t}" for t in tags],
        "datasets:",
        f"- {_yaml_str(name)}",
        "---",
        "",
    ]
    shape = "x".join(map(str, data.get("image_shape", []))) or "?"
    classes = data.get("classes") or []
    lines = [
        f"# {method} on {name}: {title_eps}",
        "",
        f"Status: **{card.get('status', '?')}** · run `{card.get('run_id', '?')}` · "
        f"written by privsynth",
        "",
        "## Method",
        "",
        f"`{method}` trained with privsynth on `{name}` ({shape} pixels (C x H x W), "
        f"{len(classes)} classes: "
        f"{', '.join(map(str, classes[:20]))}{' …' if len(classes) > 20 else ''}). "
        "Configuration: `config` in card.json.",
        "",
    ]
    size = size_sentence(pv.get("neighbouring"))
    if size:
        lines += [size, ""]
    lines += ["## Privacy guarantee", "", plain_language(card), ""]
    if pv.get("guarantee"):
        lines += [f"Formally: {pv['guarantee']}", ""]
    sgd = pv.get("dp_sgd")
    if sgd:
        lines += [
            f"DP-SGD: noise multiplier σ = {sgd['noise_multiplier']:.4g}, Poisson sample "
            f"rate q = {sgd['sample_rate']:.4g}, {sgd['steps']} steps, clip C = "
            f"{sgd['max_grad_norm']}; ε computed by the Opacus `{sgd['accountant']}` "
            "accountant from the steps that ran.",
            "",
        ]
    spend = spend_line(pv.get("dataset_spend"))
    if spend:
        lines += [
            f"This dataset's total spend in the privacy ledger when this card was written: "
            f"{spend}.",
            "",
        ]
    lines += ["## What is not protected", "", not_covered(card) or "See docs/privacy.md.", ""]
    lines += ["## Evaluation", ""]
    if evaluation and "tstr_accuracy" in evaluation:
        lines += [
            f"- TSTR accuracy (a {evaluation.get('classifier', 'CNN')} trained on "
            f"{evaluation.get('n_synthetic', '?')} synthetic images, tested on "
            f"{evaluation.get('n_holdout', '?')} real held-out images): "
            f"**{evaluation['tstr_accuracy']:.1%}**",
            f"- TRTR accuracy (the same CNN trained on the real training split): "
            f"{evaluation['trtr_accuracy']:.1%}",
            "",
            "These figures are computed on the real holdout without differential privacy "
            "(the guarantee above does not cover them).",
            "",
        ]
    else:
        lines += [
            "No evaluation stored with this run (`privsynth evaluate RUN --out eval/` "
            "measures fidelity, utility and privacy risk).",
            "",
        ]
    lines += [
        "## How to sample",
        "",
        "```bash",
        "pip install privsynth",
        "privsynth sample . -n 1000 --out synthetic/     # PNG folder per class",
        "privsynth sample . -n 1000 --out synthetic.npz  # or arrays",
        "```",
        "",
        "```python",
        "import privsynth",
        "",
        'run = privsynth.Run.load(".")  # this folder',
        "images, labels = run.sample(100)  # uint8 N x C x H x W",
        "```",
        "",
    ]
    if files:
        lines += ["## Files", "", *[f"- `{f}`" for f in files], ""]
    return "\n".join(front + lines)


def _yaml_str(text: str) -> str:
    safe = text and all(c.isalnum() or c in "-_./" for c in text)
    return text if safe else '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
