"""``privsynth audit``: an empirical lower bound on epsilon from ONE training run with canaries.

Canaries are real images given a wrong label (mislabeled: unusual for their class, so a model
that memorises them shows it). Each is included in training independently with probability 1/2;
the rest are left out entirely. One run through ``privsynth.train``; then every canary is scored
with the membership attacks (black-box on the synthetic set; white-box when the model exposes
``membership_scores``), and the one-run bound of Steinke, Nasr & Jagielski (2023) turns the
guesses into "epsilon >= X at confidence C". This is an audit, not accounting: it can show that
a run leaks at least that much; it cannot prove a run is private. The accountant's epsilon is
printed next to it; a bound above it would mean a broken implementation (or bad luck at 1 - C).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from ..atomic import write_json
from ..data import ImageDataset, load_dataset, split
from ..errors import ConfigError
from ..nodp import is_private
from . import onerun, privacy


def make_canaries(
    data: ImageDataset, count: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pick ``count`` images, give each a different (wrong) label, and flip a fair coin for each.
    Returns (canary source indices, canary labels, included mask, indices of the other images)."""
    if not 2 <= count <= len(data) // 2:
        raise ConfigError(
            f"--canaries {count}: use between 2 and half the dataset ({len(data) // 2})"
        )
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(data))[:count]
    shift = rng.integers(1, data.num_classes, size=count)
    labels = (data.labels[idx] + shift) % data.num_classes
    included = rng.random(count) < 0.5
    rest = np.setdiff1d(np.arange(len(data)), idx)
    return idx, labels, included, rest


def audit_dataset(
    data: ImageDataset, idx, labels, included, rest, holdout: float, split_seed: int
) -> tuple[ImageDataset, int]:
    """The audit run's dataset and the holdout count to train it with.

    The one-run theorem assumes that only the canaries' inclusion changes between worlds, so the
    non-canary images are split first — train/holdout fixed by ``split_seed``, whatever canaries
    are drawn in — and the included canaries then join the training part. The rows are arranged
    so that the trainer's own ``split(dataset, n_holdout, split_seed)`` reproduces exactly that.
    """
    base = split(range(len(rest)), holdout, split_seed)  # split only needs len()
    rest_train, rest_holdout = rest[base.train], rest[base.holdout]
    inc = idx[included]
    n, n_holdout = len(rest) + len(inc), len(rest_holdout)
    parts = split(range(n), n_holdout, split_seed)  # what the trainer will compute
    rows = np.empty(n, np.int64)  # source index of each row
    rows[parts.holdout] = rest_holdout
    rows[parts.train] = np.concatenate([rest_train, inc])
    labs = data.labels[rows].astype(np.int64)
    labs[parts.train[len(rest_train) :]] = labels[included]  # the canaries' (wrong) labels
    dataset = ImageDataset(
        data.images[rows], labs, list(data.class_names), name=f"{data.name}+canaries"
    )
    return dataset, n_holdout


def audit(
    data: str | os.PathLike[str] | ImageDataset = "digits",
    method: str = "dpgan",
    out: str | os.PathLike[str] = "audit",
    *,
    canaries: int = 100,
    confidence: float = 0.95,
    holdout: float = 0.2,
    split_seed: int = 0,
    seed: int = 0,
    image_size: int | None = None,
    n_synthetic: int | None = None,
    progress: bool = True,
    **train_kwargs,
) -> dict:
    """Train ``method`` once on ``data`` + canaries (into ``out/run``) and return the audit:
    the empirical epsilon lower bound (overall and per attack) next to the accountant's epsilon.
    Writes ``out/audit.json``. The run's privacy spend goes into the ledger like any run.
    ``train_kwargs``: the run's other `RunRequest.build` keywords (epsilon, no_dp, config...)."""
    from ..orchestrate.trainer import train
    from ..request import RunRequest

    if not 0 < confidence < 1:
        raise ConfigError(f"--confidence {confidence}: use a probability such as 0.95")
    t0 = time.time()
    ds = data if isinstance(data, ImageDataset) else load_dataset(data, image_size=image_size)
    idx, labels, included, rest = make_canaries(ds, canaries, seed)
    train_set, n_holdout = audit_dataset(ds, idx, labels, included, rest, holdout, split_seed)
    # The canaries are the source's own images: book the spend on the source dataset's budget.
    train_set.content = ds.content
    request = RunRequest.build(
        train_set,
        method,
        Path(out) / "run",
        holdout=n_holdout,
        split_seed=split_seed,
        seed=seed,
        progress=progress,
        **train_kwargs,
    )
    run = train(request)
    _, reference = run.load_data(train_set)
    n_syn = n_synthetic or max(len(train_set) - len(reference), 10 * ds.num_classes)
    synthetic = run.sample(n_syn, seed=seed)
    candidates, ref = (ds.images[idx], labels), (reference.images, reference.labels)
    scores, _ = privacy.membership_scores(candidates, synthetic, ref, run.synthesizer)
    bound = onerun.audit_scores(
        scores, included, delta=run.delta if run.private else 0.0, confidence=confidence
    )
    result = {
        "format": "privsynth-audit/1",
        "method": method,
        "private": run.private,
        "accountant_epsilon": run.epsilon if run.private else None,
        "delta": run.delta,
        **bound,
        "canary_kind": "mislabeled real images",
        "n_synthetic": int(n_syn),
        "run": str(Path(out) / "run"),
        "dataset": {"name": ds.name},
        "seconds": round(time.time() - t0, 2),
    }
    if run.private:
        result["bound_within_claim"] = bool(result["epsilon_lower_bound"] <= run.epsilon)
    write_json(Path(out) / "audit.json", result)
    return result


def markdown(result: dict) -> str:
    claim = result["accountant_epsilon"]
    claim = f"{claim:.3g} (δ = {result['delta']:.3g})" if is_private(result) else "∞ (no DP)"
    lines = [
        f"### privsynth audit — {result['method']} on {result['dataset']['name']}",
        "",
        f"- accountant's epsilon: **{claim}**",
        f"- empirical lower bound: **ε ≥ {result['epsilon_lower_bound']:.3f}** at "
        f"{result['confidence']:.0%} confidence ({result['canaries']} canaries, "
        f"{result['included']} included; Steinke–Nasr–Jagielski one-run audit, Bonferroni "
        f"over {result['tests_corrected_for']} guess rules)",
        "",
        "| attack | ε lower bound | guesses (k+, k-) | correct |",
        "|---|---|---|---|",
    ]
    for name, a in result["per_attack"].items():
        lines.append(
            f"| {name} | {a['epsilon_lower_bound']:.3f} | {a['guesses']} "
            f"({a['k_pos']}, {a['k_neg']}) | {a['correct']} |"
        )
    return "\n".join(lines)
