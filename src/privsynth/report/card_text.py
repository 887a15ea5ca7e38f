"""Words for a privacy card: the data owner's one-sentence summary and the model card
(README.md in Hugging Face's format) written next to card.json. Plain functions of the card dict;
they read nothing else."""

from __future__ import annotations

import math

from ..nodp import is_private
from .markdown import CLASSIFIER_NAMES

LICENSE_UNSET = "other"


def _number(x: float) -> str:
    if x < 100:
        return f"{x:.3g}"
    if x < 1e6:
        return f"{x:,.0f}"
    return f"{x:.2e}"


def _percent(p: float) -> str | None:
    """Enough decimals to tell the bound from 100%; None when it is 100% to six places."""
    q = 1.0 - p
    if q < 1e-8:
        return None
    decimals = min(6, max(1, math.ceil(-math.log10(q)) - 1))
    return f"{100 * p:.{decimals}f}%"


def unfinished_dp(card: dict) -> str | None:
    """What a DP run that has no final guarantee is: 'unfinished DP run: 2 of 6 steps, epsilon
    so far ...' (killed or still training) or 'diverged DP run: stopped at step ...'; None for a
    finished run and for a run without DP."""
    pv = card.get("privacy") or {}
    if not is_private(card) or isinstance(pv.get("epsilon"), (int, float)):
        return None
    delta = (pv.get("dp_sgd_plan") or {}).get("delta")
    at = f" at delta {delta:.3g}" if isinstance(delta, (int, float)) else ""
    if card.get("status") == "diverged":
        div = card.get("diverged") or {}
        eps = div.get("epsilon_spent")
        spent = (
            f"; the steps that ran spent epsilon {eps:.3g}{at} (booked in the ledger)"
            if isinstance(eps, (int, float))
            else "; the spend of the steps that ran stays booked in the ledger"
        )
        return (
            f"diverged DP run: training diverged at step {div.get('step', '?')} (NaN or "
            f"infinite values) and released no weights{spent}"
        )
    planned = (pv.get("dp_sgd_plan") or {}).get("steps")
    of = f" of {planned}" if isinstance(planned, int) else ""
    progress = card.get("progress") or {}
    done, eps = progress.get("steps_done"), progress.get("epsilon_spent")
    if not isinstance(done, int):
        return (
            f"unfinished DP run: no checkpoint yet (0{of} steps); no weights released until it "
            "finishes"
        )
    so_far = f", epsilon so far {eps:.3g}{at}" if isinstance(eps, (int, float)) else ""
    return (
        f"unfinished DP run: {done}{of} steps at its last checkpoint{so_far}; no weights "
        "released until it finishes (rerun the same `privsynth train` to resume)"
    )


def plain_language(card: dict) -> str:
    """One sentence a data owner can sign off on: what (epsilon, delta) mean for one record."""
    pv = card.get("privacy", {})
    eps = pv.get("epsilon")
    unfinished = unfinished_dp(card)
    if unfinished:  # a DP run without its final guarantee (killed, still training or diverged)
        return (
            f"This is an {unfinished}; its guarantee is stated once training finishes."
            if card.get("status") != "diverged"
            else f"This is a {unfinished}."
        )
    if not is_private(card):
        return (
            "This run has no differential privacy: its weights and samples may reveal "
            "individual training images, so do not publish them if the data is private."
        )
    delta = float(pv.get("delta", 0.0))
    unit = str(pv.get("unit") or "one training image with its label")
    records = "each training record"  # never the exact count (add/remove-one neighbours)
    except_ = (
        f", except with probability δ = {delta:.2g} (about 1 in {1 / delta:,.0f})"
        if delta > 0
        else ""
    )
    from ..privacy.ceiling import guess_accuracy  # (privacy/ imports torch: not at --help)

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


def public_data_sentence(card: dict) -> str | None:
    """'The model was pretrained on public data ...' when the run used --public-data, naming the
    dataset as the user gave it (never its local path); None otherwise."""
    public = ((card.get("privacy") or {}).get("warmup") or {}).get("public_data")
    if not public:
        return None
    name = public.get("name")
    named = f"`{name}`" if name else "a dataset"
    n = public.get("n_images")
    count = f" ({n:,} images)" if isinstance(n, int) else ""
    return (
        f"Before training on the private data, the model was pretrained on public data: "
        f"{named}{count}, declared public by the user. No privacy budget was spent on it and "
        "this run's guarantee does not cover it: what those images show can appear in the "
        "weights and samples."
    )


def size_sentence(neighbouring: dict | None) -> str | None:
    """What the card says about the training-set size: the DP count(s) it publishes, or none,
    and the parameters that disclose it anyway (``privacy.neighbouring``)."""
    if not neighbouring:
        return None
    shown = []
    for c in neighbouring.get("published_counts") or []:
        release = c["release"].removesuffix("_release").replace("_", " ")
        shown.append(f"{c['dp_count']:,.1f} (DP count from the {release} release)")
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
    # an exported card has no ledger location (it stays on the owner's machine)
    where = f"; ledger {spend['ledger']}" if spend.get("ledger") else ""
    return (
        f"epsilon {spend['epsilon']:.4g}{of}, delta {spend['delta']:.3g}{over} "
        f"({spend.get('composition', 'basic composition')}{where})"
    )


def model_card(
    card: dict,
    evaluation: dict | None = None,
    files: list[str] | None = None,
    license_id: str | None = None,
    exported: bool = False,
) -> str:
    """README.md for a run folder in Hugging Face's model-card format (YAML front matter +
    Markdown): method, guarantee, what is not protected, evaluation if any, how to sample.
    ``exported``: the card of `privsynth export`, where an absent evaluation was left out on
    purpose (it is published only with --include-evaluation)."""
    lines = [
        *_front_matter(card, license_id),
        *_method_lines(card),
        *_guarantee_lines(card),
        "## What is not protected",
        "",
        not_covered(card) or "See docs/privacy.md.",
        "",
        *_evaluation_lines(evaluation, exported),
        *HOW_TO_SAMPLE,
    ]
    if files:
        lines += ["## Files", "", *[f"- `{f}`" for f in files], ""]
    return "\n".join(lines)


def _front_matter(card: dict, license_id: str | None) -> list[str]:
    """The YAML header Hugging Face reads: license, library, tags, dataset."""
    pv = card.get("privacy") or {}
    private = is_private(card) and isinstance(pv.get("epsilon"), (int, float))
    license_id = license_id or card.get("license") or LICENSE_UNSET
    tags = [
        "privsynth",
        "synthetic-data",
        "image-generation",
        card.get("method", "?"),
        "differential-privacy" if private or unfinished_dp(card) else "no-differential-privacy",
    ]
    front = ["---", f"license: {license_id}"]
    if license_id == LICENSE_UNSET:
        front.append("license_name: unspecified")
    return front + [
        "library_name: privsynth",
        "tags:",
        *[f"- {t}" for t in tags],
        "datasets:",
        f"- {_yaml_str(str((card.get('data') or {}).get('name') or 'dataset'))}",
        "---",
        "",
    ]


def _method_lines(card: dict) -> list[str]:
    """The title (method, dataset, guarantee), status and the Method section."""
    data, pv = card.get("data") or {}, card.get("privacy") or {}
    method, name = card.get("method", "?"), str(data.get("name") or "dataset")
    eps = pv.get("epsilon")
    unfinished = unfinished_dp(card)
    title_eps = (
        f"(ε = {eps:.3g}, δ = {float(pv.get('delta', 0)):.2g})-DP"
        if is_private(card) and isinstance(eps, (int, float))
        else unfinished.split(":")[0]
        if unfinished
        else "no differential privacy"
    )
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
    chosen = card.get("method_choice")
    if chosen:  # --method auto: one sentence on why, from the card's recorded reasons
        lines += [
            f"Chosen by `--method auto` from public facts only: {'; '.join(chosen['reasons'])}.",
            "",
        ]
    size = size_sentence(pv.get("neighbouring"))
    return lines + ([size, ""] if size else [])


def _guarantee_lines(card: dict) -> list[str]:
    """The Privacy guarantee section: plain words, then the mechanism, releases and spend."""
    pv = card.get("privacy") or {}
    sgd, size = pv.get("dp_sgd"), pv.get("size_release")
    spend = spend_line(pv.get("dataset_spend"))
    one_release = (pv.get("mechanism") or {}).get("name") == "gaussian"
    paragraphs = [
        plain_language(card),
        public_data_sentence(card),
        pv.get("guarantee") and f"Formally: {pv['guarantee']}",
        sgd
        and (
            f"One Gaussian release: noise multiplier σ = {sgd['noise_multiplier']:.4g}, "
            f"sensitivity C = {sgd['max_grad_norm']}"
            if one_release
            else f"DP-SGD: noise multiplier σ = {sgd['noise_multiplier']:.4g}, Poisson "
            f"sample rate q = {sgd['sample_rate']:.4g}, {sgd['steps']} steps, clip C = "
            f"{sgd['max_grad_norm']}"
        )
        + f"; ε computed by the Opacus `{sgd['accountant']}` accountant from what ran.",
        size
        and f"Size release: the number of training images with Gaussian noise σ = "
        f"{size['sigma']:.4g} (sensitivity 1), released first and composed in the same "
        "accountant; the sampling rate and the default δ are computed from it.",
        spend
        and f"This dataset's total spend in the privacy ledger when this card was written: "
        f"{spend}.",
    ]
    return ["## Privacy guarantee", "", *(line for p in paragraphs if p for line in (p, ""))]


HOW_TO_SAMPLE = [
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


EVALUATION_HEADING = "## Evaluation (not covered by the differential-privacy guarantee)"


def _evaluation_lines(evaluation: dict | None, exported: bool) -> list[str]:
    """The evaluation section. Its figures are measured on real data without noise (TRTR trains
    a classifier on the private training split), so its heading says the guarantee does not
    cover them."""
    if evaluation and "tstr_accuracy" in evaluation:
        # quick_eval.json lists its classifiers; the headline figures are the first one's
        first = (evaluation.get("classifiers") or [evaluation.get("classifier", "CNN")])[0]
        classifier = CLASSIFIER_NAMES.get(first, first)
        return [
            EVALUATION_HEADING,
            "",
            f"- TSTR accuracy (a {classifier} trained on "
            f"{evaluation.get('n_synthetic', '?')} synthetic images, tested on "
            f"{evaluation.get('n_holdout', '?')} real held-out images): "
            f"**{evaluation['tstr_accuracy']:.1%}**",
            f"- TRTR accuracy (the same {classifier} trained on the real training split): "
            f"{evaluation['trtr_accuracy']:.1%}",
            "",
            "These figures are computed on the real training split and holdout without "
            "differential privacy: the guarantee above does not cover them, and each one "
            "reveals a little about the private data.",
            "",
        ]
    if exported:
        why = (
            "No evaluation figures are published with this model: they are computed on the "
            "private data without differential privacy (`privsynth export --include-evaluation` "
            "adds them, marked as not covered by the guarantee)."
        )
    else:
        why = (
            "No evaluation stored with this run (`privsynth evaluate RUN --out eval/` "
            "measures fidelity, utility and privacy risk)."
        )
    return ["## Evaluation", "", why, ""]


def _yaml_str(text: str) -> str:
    safe = text and all(c.isalnum() or c in "-_./" for c in text)
    return text if safe else '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
