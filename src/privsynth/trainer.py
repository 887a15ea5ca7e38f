"""``privsynth.train``: data -> split -> privacy plan -> ledger check -> fit -> run folder.

Every method goes through this one function, so every run gets the same card, ledger entry,
checkpointing and resume behaviour.
"""

from __future__ import annotations

import json
import math
import platform
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from .data import DataSource, ImageDataset, is_holdout_path, load_split
from .errors import CheckpointError, ConfigError, PrivsynthError, TrainingDiverged
from .models import TrainContext
from .models.defaults import recommended_config
from .models.registry import create, is_private, private_name
from .models.warmup import WARMUP_STATE, WarmUp
from .preflight import check_device, check_output_folder
from .privacy import AccountantState, Ledger, PrivacySpec
from .privacy.accounting import epsilon_from_history
from .privacy.checks import PrivacyWarning, check_delta, default_epsilon, refuse_flags_without_dp
from .privacy.ledger import COMPOSITION_RULE
from .privacy.mechanisms import count_spend, release_proportions
from .privacy.spend import RunSpend
from .run import (
    CARD,
    INFINITY,
    SPLIT,
    TRAIN_STATE,
    Card,
    Run,
    RunWriter,
    load_train_state,
    read_card,
    save_train_state,
)

PROTECTED = (
    "Sample-level (example-level) differential privacy: adding or removing any one "
    "training image together with its label changes the distribution of everything "
    "released (weights, samples) by at most (epsilon, delta)."
)
NOT_PROTECTED = (
    "Hyper-parameter tuning or repeated runs on the same private data "
    "(see the privacy ledger for composed spends), the holdout split (used only for "
    "evaluation, never for training), the run folder's split.json and train_state.pt, "
    "training losses (progress bar, card train.metrics: computed on private batches "
    "without noise), and properties shared by many images (DP protects individuals, "
    "not population statistics)."
)


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("privsynth", "torch", "opacus", "numpy", "scikit-learn", "safetensors"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def train(
    data: str | Path | DataSource | ImageDataset = "digits",
    method: str = "dpmerf",
    out: str | Path = "runs/run",
    *,
    epsilon: float | None = None,
    delta: float | None = None,
    noise_multiplier: float | None = None,
    max_grad_norm: float = 1.0,
    accountant: str = "prv",
    grad_sample_mode: str = "bk",
    no_dp: bool = False,
    config: dict[str, Any] | None = None,
    holdout: float | str = 0.2,
    split_seed: int = 0,
    seed: int = 0,
    image_size: int | None = None,
    ledger: str | Path | None = None,
    budget: float | None = None,
    force: bool = False,
    overwrite: bool = False,
    class_proportions: str = "uniform",
    counts_epsilon: float = 0.1,
    device: str = "cpu",
    progress: bool = True,
    checkpoint_every: int = 500,
    warmup: str = "none",
    public_data: str | Path | ImageDataset | None = None,
    warmup_config: dict[str, Any] | None = None,
) -> Run:
    """Train ``method`` on ``data`` and write the run folder ``out``; returns the loaded `Run`.

    Private methods take ``epsilon`` (total, including any class-proportion release; default
    10) and ``delta`` (default 1/(10 N), N = training images; ``delta >= 1/N`` needs ``force``);
    the noise multiplier is calibrated with Opacus for the planned steps. ``no_dp=True`` (or a
    non-private method such as ``gan``) trains the same model without privacy: the card then says
    epsilon = infinity, and passing a privacy argument with it is an error.
    The spend is reserved in the ledger (``ledger``: path or postgresql:// URL, default
    ``$PRIVSYNTH_LEDGER`` or the per-user ledger) before the first private step, checked against
    the dataset's budget and ``budget`` (which only checks, never sets), and settled at the end.
    ``data``: 'digits', a path, a `DataSource` (a path plus its public format inputs, recorded
    on the card as ``data.format``) or an in-memory `ImageDataset`; ``holdout``: a fraction, a
    count, or the path of an official test split in the same format.
    If ``out`` holds an unfinished run of the same command, training resumes from its checkpoint.
    ``warmup="central"`` pretrains on a DP release of per-class central images first (its
    epsilon composed with DP-SGD's in one accountant, within ``epsilon``); ``public_data``
    pretrains on images the user declares public (no budget). ``warmup_config``: `WarmupConfig`
    keys (share, epochs, size, ...). See models/warmup.py and docs/warmup.md.
    """
    t0 = time.time()
    out = check_output_folder(out)
    check_device(device)
    private = is_private(method) and not no_dp
    if not private:
        refuse_flags_without_dp(
            method,
            no_dp,
            {
                "--epsilon": epsilon is not None,
                "--delta": delta is not None,
                "--noise-multiplier": noise_multiplier is not None,
                "--budget": budget is not None,
                "--class-proportions": class_proportions != "uniform",
            },
            twin=private_name(method) if private_name(method) != method else None,
        )
    if is_holdout_path(holdout):  # an official test split: recorded absolute, like --data
        holdout = str(Path(holdout).expanduser().resolve())
    dataset, parts = load_split(data, holdout, split_seed, image_size)
    train_set = dataset.subset(parts.train, name=dataset.name)
    n = len(train_set)

    spec = None
    if private:
        spec = PrivacySpec(
            epsilon=default_epsilon(epsilon, noise_multiplier),
            delta=delta,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            accountant=accountant,
            grad_sample_mode=grad_sample_mode,
        )
    torch.manual_seed(seed)  # reproducible initial weights
    # One place decides the defaults (models/defaults.py, by training-set size); flags override.
    config = {**recommended_config(method, n), **(config or {})}
    synth = create(method, dataset.image_shape, dataset.num_classes, config, private=private)
    full_config = synth.config_dict()
    _check_sizes(full_config)
    warm = WarmUp.build(warmup, public_data, warmup_config, dataset, private, synth)
    # Resuming needs the same command: a changed split would train on former holdout images, a
    # changed privacy flag would silently mix two plans in one card.
    mech = class_proportions if private else "uniform"
    request = json.loads(
        json.dumps(
            {
                "method": method,
                "private": private,
                "config": full_config,
                "privacy": spec.to_json() if spec else None,
                "class_proportions": mech,
                "counts_epsilon": counts_epsilon if mech != "uniform" else None,
                "holdout": holdout,
                "split_seed": split_seed,
                "seed": seed,
                "fingerprint": dataset.fingerprint,
                **({"warmup": warm.request()} if warm else {}),
            }
        )
    )

    card, resume = _start_or_resume(out, request, parts, overwrite)
    # --overwrite removes the old run only once the new one has something to write, so a
    # refused replacement (budget, unreachable epsilon) leaves the old run intact.
    replacing, created_out = overwrite and (out / CARD).exists(), not out.exists()
    writer = RunWriter(out, card, parts, replace=replacing)
    fresh = resume is None and (replacing or not (out / CARD).exists())
    run_id = card.run_id

    total_delta = spec.resolved_delta(n) if spec else 0.0
    notes = check_delta(total_delta, n, given=delta is not None, force=force) if spec else []
    # Class proportions are released once, after training (sampling is their only use); their
    # (epsilon, delta) is fixed now and taken out of the DP-SGD share of the target.
    c_eps, c_delta = count_spend(mech, counts_epsilon, total_delta / 2)
    if spec is not None and spec.epsilon is not None and c_eps >= spec.epsilon:
        raise ConfigError(
            f"--counts-epsilon {counts_epsilon} leaves nothing of --epsilon "
            f"{spec.epsilon} for training; use a smaller --counts-epsilon"
        )
    counts = card.privacy.get("class_proportions") or {
        "mechanism": mech,
        "epsilon": c_eps,
        "delta": c_delta,
        "values": None,
    }
    spend = None
    if private:
        ledger_obj = Ledger(ledger)
        moved = ledger_obj.import_legacy_beside(
            out, {dataset.fingerprint: dataset.source_fingerprint}
        )
        if moved:
            warnings.warn(
                f"imported {moved} spend(s) from the JSON ledger beside '{out}' into "
                f"{ledger_obj.shown}",
                PrivacyWarning,
                stacklevel=2,
            )
        prefix = (
            AccountantState.from_json(resume["accountant"]).history
            if resume is not None and resume.get("accountant")
            else []
        )
        spend = RunSpend(
            ledger_obj,
            dataset.source_fingerprint,
            dataset.name,
            run_id=run_id,
            method=method,
            out=str(out.resolve()),
            kind="train",
            limit=budget,
            force=force,
            accountant=spec.accountant,
            chunk=checkpoint_every,
            prefix=prefix,
        )
    try:
        if spec is not None:
            if spec.epsilon is not None:
                spec = spec.replace(epsilon=spec.epsilon - c_eps)
                if resume is None:  # fail fast, before any work: a calibrated run spends at
                    spend.reserve_target(spec.epsilon + c_eps, total_delta)  # most its target
            spec = spec.replace(delta=total_delta - c_delta)
        if warm is not None:  # the release's sigma joins the accountant before DP-SGD's
            prior, released = warm.prepare(spec, out, resuming=not fresh)
            if prior:
                spec = spec.replace(prior=prior)
            if spend is not None and spec.prior:
                spend.set_lead(spec.prior, spec.delta, released)
        card.request, card.private, card.config = request, private, full_config
        card.versions = versions()
        card.data = {
            "name": dataset.name,
            "fingerprint": dataset.fingerprint,
            "source_fingerprint": dataset.source_fingerprint,
            "train_fingerprint": train_set.fingerprint,
            "n_total": len(dataset),
            "n_train": n,
            "n_holdout": len(parts.holdout),
            "image_shape": list(dataset.image_shape),
            "classes": dataset.class_names,
            "split_seed": split_seed,
            "source": _source(data),
            "image_size": image_size,
            "format": data.options() if isinstance(data, DataSource) else None,
        }
        card.train = {**card.train, "seed": seed, "device": device, "holdout": holdout}
        if spend is not None:  # where this dataset's total is read back (cards, `info`)
            card.ledger = spend.ledger.shown
        card.privacy["class_proportions"] = counts
        if notes:
            card.privacy["warnings"] = notes
        checkpointed = [resume is not None]
        to_release = (
            (counts["epsilon"], counts["delta"]) if counts["values"] is None else (0.0, 0.0)
        )

        def diverged(step: int, bad: list[str], acc: AccountantState | None) -> None:
            """Stop for good: book exactly what ran, mark the card, keep no weights."""
            if spend is not None:
                spend.finish(acc.history if acc else None, status="diverged")
            checkpointed[0] = True  # the card stays: it says what happened
            card.status = "diverged"
            card.diverged = {"step": step, "non_finite": bad[:10]}
            writer.write()
            writer.remove((TRAIN_STATE, WARMUP_STATE))
            raise TrainingDiverged(
                f"training diverged at step {step}: {', '.join(bad[:3])} became NaN or "
                "infinite; lower the learning rate (--set lr=...) or fix --batch-size/--epochs, "
                "then rerun with --overwrite (the spend of the steps that ran stays in the "
                "ledger)"
            )

        def checkpoint(step: int, state: dict, acc: AccountantState | None) -> None:
            bad = non_finite(state)
            if bad:
                diverged(step, bad, acc)
            save_train_state(out / TRAIN_STATE, state)
            checkpointed[0] = True
            if spend is not None:  # the previous booking covers every step up to this one
                spend.checkpoint(acc.history if acc else [])
            sgd_eps = acc.epsilon(spec.delta) if (acc and spec) else 0.0
            card.progress = {"steps_done": step, "epsilon_spent": sgd_eps}
            writer.write()

        def on_plan(plan) -> None:
            # The exact spend of the whole plan (a fixed --noise-multiplier too), for the card;
            # the ledger reserves what this segment will run, in the same transaction as the
            # budget check.
            whole = [*spec.prior, (plan.noise_multiplier, plan.sample_rate, plan.steps)]
            planned = epsilon_from_history(whole, plan.delta, spec.accountant) + counts["epsilon"]
            spend.plan(plan.noise_multiplier, plan.sample_rate, plan.steps, plan.delta, to_release)
            card.privacy["dp_sgd_plan"] = {**plan.to_json(), "planned_epsilon": planned}
            writer.write()

        ctx = TrainContext(
            privacy=spec,
            seed=seed,
            device=device,
            progress=progress,
            checkpoint_every=checkpoint_every,
            checkpoint=checkpoint,
            on_plan=on_plan,
            resume=resume,
        )
        try:
            if warm is not None:
                card.privacy["warmup"] = warm.card(spec.delta if spec else 0.0, accountant)
                if resume is None:  # a DP checkpoint already holds the pretrained weights
                    writer.write()

                    def released() -> None:
                        checkpointed[0] = True  # spend booked: the card stays whatever happens
                        card.privacy["warmup"] = warm.card(spec.delta, accountant)
                        writer.write()

                    warm.run(
                        synth,
                        train_set,
                        ctx,
                        out,
                        spend.book_lead if spend else (lambda: None),
                        released,
                    )
            result = synth.fit(train_set, ctx)
        except PrivsynthError:
            # Refused before anything was kept (e.g. epsilon unreachable, budget): leave nothing.
            if fresh and not checkpointed[0] and not writer.replace:
                for name in (CARD, SPLIT, WARMUP_STATE):
                    (out / name).unlink(missing_ok=True)
                if created_out or replacing:
                    shutil.rmtree(out, ignore_errors=True)
            raise
        bad = non_finite(synth.state_dict()) + [
            f"metric {k}"
            for k, v in result.metrics.items()
            if isinstance(v, float) and not math.isfinite(v)
        ]
        if bad:
            diverged(result.steps, bad, result.accountant)

        if counts["values"] is None:
            if spend is not None and counts["mechanism"] != "uniform":
                spend.ensure_planned(to_release)
                spend.releasing_other()  # booked before it is drawn
            props, _, _ = release_proportions(
                train_set.class_counts(),
                counts["mechanism"],
                counts["epsilon"],
                counts["delta"],
                seed,
            )
            counts["values"] = props.tolist()
        writer.save_weights(synth.state_dict())
        card.status = "complete"
        card.privacy.update(_privacy_block(spec, result, counts, total_delta, n, synth.mechanism))
        card.train.update(
            steps=result.steps,
            metrics=result.metrics,
            wall_seconds=round(card.train.get("wall_seconds", 0.0) + time.time() - t0, 2),
        )
        card.progress = None
        if spend is not None:
            spend.finish(result.accountant.history if result.accountant else None)
            led = spend.ledger
            card.privacy["ledger"] = {
                "location": led.shown,
                "dataset_key": dataset.source_fingerprint,
                "composition": COMPOSITION_RULE,
                "dataset_epsilon_spent": led.spent(dataset.source_fingerprint).epsilon,
            }
        if warm is not None:
            card.privacy["warmup"] = warm.card(spec.delta if spec else 0.0, accountant)
        writer.write()
        writer.remove((TRAIN_STATE, WARMUP_STATE))
        return Run.load(out, device="cpu")
    except BaseException as e:
        if spend is not None:
            spend.abort(
                "interrupted" if isinstance(e, KeyboardInterrupt) else "failed",
                note=f"{type(e).__name__}: {str(e)[:200]}",
            )
        raise


def non_finite(tree: Any, prefix: str = "") -> list[str]:
    """Names of floating-point tensors in a (nested) state that hold NaN or infinity."""
    if isinstance(tree, torch.Tensor):
        ok = not tree.is_floating_point() or bool(torch.isfinite(tree).all())
        return [] if ok else [prefix or "tensor"]
    if isinstance(tree, dict):
        return [b for k, v in tree.items() for b in non_finite(v, f"{prefix}.{k}".lstrip("."))]
    if isinstance(tree, (list, tuple)):
        return [b for i, v in enumerate(tree) for b in non_finite(v, f"{prefix}[{i}]")]
    return []


def _check_sizes(config: dict) -> None:
    """Sizes that would train on nothing (``--batch-size 0``) fail here, not as NaN weights."""
    flags = {"batch_size": "--batch-size", "epochs": "--epochs", "steps": "--set steps"}
    for key, flag in flags.items():
        value = config.get(key)
        if isinstance(value, (int, float)) and not value > 0:
            raise ConfigError(
                f"{flag} must be > 0, got {value}; pass a positive value or omit "
                "it for the method's default"
            )


def _source(data) -> str | None:
    """Where evaluation can reload the data: 'digits', an absolute path, or None (in-memory)."""
    if isinstance(data, ImageDataset):
        return None
    return "digits" if str(data) == "digits" else str(Path(data).resolve())


MECHANISMS = {
    "dp-sgd": "DP-SGD (Opacus): per-sample gradients clipped to C, Gaussian noise sigma * C "
    "added at every step, Poisson-subsampled batches",
    "gaussian": "the Gaussian mechanism (OpenDP), released once on the whole training set with "
    "sensitivity C; accounted as one step at sampling rate 1",
}


def _privacy_block(spec, result, counts, total_delta, n, mechanism) -> dict:
    if spec is None:
        return {
            "epsilon": INFINITY,
            "delta": 0.0,
            "unit": None,
            "guarantee": "none: trained without differential privacy (a non-private "
            "baseline); epsilon = infinity",
        }
    plan, acc = result.dp_plan, result.accountant
    sgd_eps = epsilon_from_history(acc.history, spec.delta, spec.accountant)
    total = sgd_eps + counts["epsilon"]
    lead = sum(int(h[2]) for h in spec.prior)  # warm-up release entries opening the history
    return {
        "epsilon": total,
        "delta": total_delta,
        "guarantee": f"({total:.3g}, {total_delta:.3g})-DP at sample level. {PROTECTED}",
        "not_protected": NOT_PROTECTED,
        "unit": "one training image with its label",
        "composition": (
            "dp_sgd epsilon (one Opacus accountant over the warm-up release and the "
            "DP-SGD steps, its history) + class_proportions epsilon (basic "
            "composition)"
            if lead
            else "dp_sgd epsilon + class_proportions epsilon (basic composition)"
        ),
        "mechanism": {"name": mechanism, "description": MECHANISMS.get(mechanism, mechanism)},
        "dp_sgd": {
            "epsilon": sgd_eps,
            "delta": spec.delta,
            "accountant": spec.accountant,
            "noise_multiplier": plan.noise_multiplier,
            "sample_rate": plan.sample_rate,
            "expected_batch_size": round(plan.expected_batch_size, 1),
            "steps": acc.steps - lead,
            "includes_warmup_release": bool(lead),
            "planned_steps": plan.steps,
            "max_grad_norm": spec.max_grad_norm,
            "target_epsilon": plan.target_epsilon,
            "poisson_sampling": True,
            "grad_sample_mode": spec.grad_sample_mode,
            "history": acc.to_json()["history"],
            "n_private": n,
            "computed_by": "opacus accountant from the steps that ran",
        },
    }


def _start_or_resume(out: Path, request: dict, parts, overwrite: bool) -> tuple[Card, dict | None]:
    if (out / CARD).exists() and not overwrite:  # with --overwrite: a new run below, the old
        card = read_card(out)  # one is removed when the new one first writes
        if card.get("status") == "diverged":
            raise CheckpointError(
                f"'{out}' holds a run that diverged (NaN/inf at step "
                f"{card.get('diverged', {}).get('step')}); change what caused "
                "it (e.g. a lower --set lr=...) and pass --overwrite (its "
                "spend stays in the ledger)"
            )
        if card.get("status") == "complete":
            raise CheckpointError(
                f"'{out}' already holds a finished run; choose another --out or "
                "pass --overwrite (its privacy spend stays in the ledger)"
            )
        else:
            if card.get("request") != request:
                changed = sorted(
                    k for k in request if (card.get("request") or {}).get(k) != request[k]
                )
                raise CheckpointError(
                    f"'{out}' holds an unfinished run started with other "
                    f"settings ({', '.join(changed)}); rerun it with the same "
                    "flags to resume, or pass --overwrite"
                )
            if (out / SPLIT).exists() and json.loads((out / SPLIT).read_text()) != parts.to_json():
                raise CheckpointError(
                    f"'{out}/{SPLIT}' does not match the data's split; rerun "
                    "with the original --data, or pass --overwrite"
                )
            state = out / TRAIN_STATE
            resume = load_train_state(state) if state.exists() else None
            if resume is None and card.get("progress"):
                warnings.warn(
                    f"'{out}' has no {TRAIN_STATE}: run {card['run_id']} restarts from "
                    "step 0; the spend of its earlier segment(s) stays booked in the "
                    "ledger and this restart books its own",
                    PrivacyWarning,
                    stacklevel=3,
                )
            return Card.from_json(card), resume
    elif not (out / CARD).exists() and out.exists() and any(out.iterdir()):
        raise CheckpointError(f"'{out}' exists and is not a run folder; choose an empty --out")
    return Card.new(request["method"]), None
