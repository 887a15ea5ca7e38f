"""``privsynth.train``: data -> split -> privacy plan -> ledger check -> fit -> run folder.

Every method goes through this one function, so every run gets the same card, ledger entry,
checkpointing and resume behaviour.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import torch

from .atomic import write_json
from .data import ImageDataset, load_dataset, split
from .errors import CheckpointError, ConfigError, PrivsynthError
from .models import TrainContext
from .models.registry import create, is_private
from .privacy import AccountantState, Ledger, PrivacySpec, default_ledger_path
from .privacy.accounting import epsilon_from_history
from .privacy.mechanisms import count_spend, release_proportions
from .run import (
    CARD,
    FORMAT,
    INFINITY,
    SPLIT,
    TRAIN_STATE,
    WEIGHTS,
    Run,
    load_train_state,
    read_card,
    save_train_state,
    save_weights,
    write_card,
)

PROTECTED = ("Sample-level (example-level) differential privacy: adding or removing any one "
             "training image together with its label changes the distribution of everything "
             "released (weights, samples) by at most (epsilon, delta).")
NOT_PROTECTED = ("Not covered: hyper-parameter tuning or repeated runs on the same private data "
                 "(see the privacy ledger for composed spends), the holdout split (used only for "
                 "evaluation, never for training), the run folder's split.json and train_state.pt, "
                 "training losses (progress bar, card train.metrics: computed on private batches "
                 "without noise), and properties shared by many images (DP protects individuals, "
                 "not population statistics).")


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("privsynth", "torch", "opacus", "numpy", "scikit-learn", "safetensors"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def train(data: str | Path | ImageDataset = "digits", method: str = "dpgan",
          out: str | Path = "runs/run",
          *, epsilon: float | None = 10.0, delta: float | None = None,
          noise_multiplier: float | None = None, max_grad_norm: float = 1.0,
          accountant: str = "prv", grad_sample_mode: str = "bk", no_dp: bool = False,
          config: dict[str, Any] | None = None, holdout: float = 0.2, split_seed: int = 0,
          seed: int = 0, image_size: int | None = None, ledger: str | Path | None = None,
          budget: float | None = None, force: bool = False, overwrite: bool = False,
          class_proportions: str = "uniform", counts_epsilon: float = 0.1,
          device: str = "cpu", progress: bool = True, checkpoint_every: int = 500) -> Run:
    """Train ``method`` on ``data`` and write the run folder ``out``; returns the loaded `Run`.

    Private methods take ``epsilon`` (total, including any class-proportion release) and
    ``delta`` (default 1/(10 N), N = training images); the noise multiplier is calibrated with
    Opacus for the planned steps. ``no_dp=True`` (or a non-private method such as ``gan``)
    trains the same model without privacy: the card then says epsilon = infinity.
    If ``out`` holds an unfinished run of the same command, training resumes from its checkpoint.
    """
    t0 = time.time()
    out = Path(out)
    private = is_private(method) and not no_dp
    dataset = data if isinstance(data, ImageDataset) else load_dataset(data, image_size=image_size)
    parts = split(dataset, holdout, split_seed)
    train_set = dataset.subset(parts.train, name=dataset.name)
    n = len(train_set)

    spec = None
    if private:
        if noise_multiplier is not None:
            epsilon = None  # a fixed sigma decides epsilon; it is computed from what runs
        spec = PrivacySpec(epsilon=epsilon, delta=delta, noise_multiplier=noise_multiplier,
                           max_grad_norm=max_grad_norm, accountant=accountant,
                           grad_sample_mode=grad_sample_mode)
    torch.manual_seed(seed)  # reproducible initial weights
    synth = create(method, dataset.image_shape, dataset.num_classes, config, private=private)
    full_config = synth.config_dict()
    # Resuming needs the same command: a changed split would train on former holdout images, a
    # changed privacy flag would silently mix two plans in one card.
    mech = class_proportions if private else "uniform"
    request = json.loads(json.dumps({
        "method": method, "private": private, "config": full_config,
        "privacy": spec.to_json() if spec else None, "class_proportions": mech,
        "counts_epsilon": counts_epsilon if mech != "uniform" else None,
        "holdout": holdout, "split_seed": split_seed, "seed": seed,
        "fingerprint": dataset.fingerprint}))

    card, resume = _start_or_resume(out, request, parts, overwrite)
    # --overwrite removes the old run only once the new one has something to write, so a
    # refused replacement (budget, unreachable epsilon) leaves the old run intact.
    replace = [overwrite and (out / CARD).exists()]
    replacing, created_out = replace[0], not out.exists()
    fresh = resume is None and (replacing or not (out / CARD).exists())
    run_id = card["run_id"]
    ledger_obj = Ledger(ledger if ledger else default_ledger_path(out))

    total_delta = spec.resolved_delta(n) if spec else 0.0
    # Class proportions are released once, after training (sampling is their only use); their
    # (epsilon, delta) is fixed now and taken out of the DP-SGD share of the target.
    c_eps, c_delta = count_spend(mech, counts_epsilon, total_delta / 2)
    if spec is not None:
        if spec.epsilon is not None:
            if c_eps >= spec.epsilon:
                raise ConfigError(f"--counts-epsilon {counts_epsilon} leaves nothing of --epsilon "
                                  f"{spec.epsilon} for training; use a smaller --counts-epsilon")
            spec.epsilon = spec.epsilon - c_eps
            # Fail fast, before any work: a calibrated run spends at most its target.
            ledger_obj.check(dataset.fingerprint, dataset.name, run_id, spec.epsilon + c_eps,
                             budget, force)
        spec.delta = total_delta - c_delta
    counts = card["privacy"].get("class_proportions") or {
        "mechanism": mech, "epsilon": c_eps, "delta": c_delta, "values": None}

    card.update(request=request, private=private, config=full_config, versions=versions(),
                data={"name": dataset.name, "fingerprint": dataset.fingerprint,
                      "train_fingerprint": train_set.fingerprint,
                      "n_total": len(dataset), "n_train": n, "n_holdout": len(parts.holdout),
                      "image_shape": list(dataset.image_shape), "classes": dataset.class_names,
                      "split_seed": split_seed, "source": _source(data), "image_size": image_size},
                train={**card.get("train", {}), "seed": seed, "device": device,
                       "holdout": holdout})
    card["privacy"]["class_proportions"] = counts
    checkpointed = [resume is not None]

    def begin() -> None:
        """Write split.json and the card the first time there is something to keep."""
        if replace[0]:
            shutil.rmtree(out)  # the ledger keeps the old run's spend
            replace[0] = False
        if not (out / SPLIT).exists():
            write_json(out / SPLIT, parts.to_json())
        write_card(out, card)

    def book(acc: AccountantState | None) -> dict:
        """Epsilon so far from the accountant's history (+ the counts once released); written to
        the ledger, which holds one entry per run, set (never added to) at every checkpoint."""
        sgd_eps = acc.epsilon(spec.delta) if (acc and spec) else 0.0
        released = counts["values"] is not None
        total = sgd_eps + (counts["epsilon"] if released else 0.0)
        if private:
            ledger_obj.record(dataset.fingerprint, dataset.name, run_id, epsilon=total,
                              delta=(spec.delta if sgd_eps else 0.0)
                              + (counts["delta"] if released else 0.0),
                              method=method, out=str(out.resolve()), status=card["status"])
        return {"sgd_epsilon": sgd_eps, "total_epsilon": total}

    def checkpoint(step: int, state: dict, acc: AccountantState | None) -> None:
        save_train_state(out / TRAIN_STATE, state)
        checkpointed[0] = True
        spent = book(acc)
        card["progress"] = {"steps_done": step, "epsilon_spent": spent["total_epsilon"]}
        begin()

    def on_plan(plan) -> None:
        # The exact spend of the whole plan (a fixed --noise-multiplier too) against the budget.
        planned = epsilon_from_history([(plan.noise_multiplier, plan.sample_rate, plan.steps)],
                                       plan.delta, spec.accountant) + counts["epsilon"]
        ledger_obj.check(dataset.fingerprint, dataset.name, run_id, planned, budget, force)
        card["privacy"]["dp_sgd_plan"] = {**plan.to_json(), "planned_epsilon": planned}
        begin()

    ctx = TrainContext(privacy=spec, seed=seed, device=device, progress=progress,
                       checkpoint_every=checkpoint_every, checkpoint=checkpoint, on_plan=on_plan,
                       resume=resume)
    try:
        result = synth.fit(train_set, ctx)
    except PrivsynthError:
        # Refused before anything was kept (e.g. epsilon unreachable, budget): leave nothing.
        if fresh and not checkpointed[0] and not replace[0]:
            for name in (CARD, SPLIT):
                (out / name).unlink(missing_ok=True)
            if created_out or replacing:
                shutil.rmtree(out, ignore_errors=True)
        raise

    if counts["values"] is None:
        props, _, _ = release_proportions(train_set.class_counts(), mech, counts["epsilon"],
                                          counts["delta"], seed)
        counts["values"] = props.tolist()
    save_weights(out / WEIGHTS, synth.state_dict(), {"method": method, "run_id": run_id})
    card["status"] = "complete"
    card["privacy"].update(_privacy_block(spec, result, counts, total_delta, n))
    card["train"].update(steps=result.steps, metrics=result.metrics,
                         wall_seconds=round(card["train"].get("wall_seconds", 0.0)
                                            + time.time() - t0, 2))
    card.pop("progress", None)
    book(result.accountant)
    begin()
    (out / TRAIN_STATE).unlink(missing_ok=True)
    return Run.load(out, device="cpu")


def _source(data) -> str | None:
    """Where evaluation can reload the data: 'digits', an absolute path, or None (in-memory)."""
    if isinstance(data, ImageDataset):
        return None
    return "digits" if str(data) == "digits" else str(Path(data).resolve())


def _privacy_block(spec, result, counts, total_delta, n) -> dict:
    if spec is None:
        return {"epsilon": INFINITY, "delta": 0.0, "unit": None,
                "guarantee": "none: trained without differential privacy (a non-private "
                             "baseline); epsilon = infinity"}
    plan, acc = result.dp_plan, result.accountant
    sgd_eps = epsilon_from_history(acc.history, spec.delta, spec.accountant)
    total = sgd_eps + counts["epsilon"]
    return {
        "epsilon": total, "delta": total_delta,
        "guarantee": f"({total:.3g}, {total_delta:.3g})-DP at sample level. {PROTECTED}",
        "not_protected": NOT_PROTECTED,
        "unit": "one training image with its label",
        "composition": "dp_sgd epsilon + class_proportions epsilon (basic composition)",
        "dp_sgd": {"epsilon": sgd_eps, "delta": spec.delta, "accountant": spec.accountant,
                   "noise_multiplier": plan.noise_multiplier, "sample_rate": plan.sample_rate,
                   "expected_batch_size": round(plan.expected_batch_size, 1), "steps": acc.steps,
                   "planned_steps": plan.steps, "max_grad_norm": spec.max_grad_norm,
                   "target_epsilon": plan.target_epsilon, "poisson_sampling": True,
                   "grad_sample_mode": spec.grad_sample_mode, "history": acc.to_json()["history"],
                   "n_private": n, "computed_by": "opacus accountant from the steps that ran"},
    }


def _start_or_resume(out: Path, request: dict, parts, overwrite: bool
                     ) -> tuple[dict, dict | None]:
    if (out / CARD).exists() and not overwrite:  # with --overwrite: a new run below, the old
        card = read_card(out)                     # one is removed when the new one first writes
        if card.get("status") == "complete":
            raise CheckpointError(f"'{out}' already holds a finished run; choose another --out or "
                                  "pass --overwrite (its privacy spend stays in the ledger)")
        else:
            if card.get("request") != request:
                changed = sorted(k for k in request if (card.get("request") or {}).get(k)
                                 != request[k])
                raise CheckpointError(f"'{out}' holds an unfinished run started with other "
                                      f"settings ({', '.join(changed)}); rerun it with the same "
                                      "flags to resume, or pass --overwrite")
            if (out / SPLIT).exists() and json.loads((out / SPLIT).read_text()) != parts.to_json():
                raise CheckpointError(f"'{out}/{SPLIT}' does not match the data's split; rerun "
                                      "with the original --data, or pass --overwrite")
            state = out / TRAIN_STATE
            resume = load_train_state(state) if state.exists() else None
            return card, resume
    elif not (out / CARD).exists() and out.exists() and any(out.iterdir()):
        raise CheckpointError(f"'{out}' exists and is not a run folder; choose an empty --out")
    card = {"format": FORMAT, "run_id": uuid.uuid4().hex[:12], "status": "running",
            "method": request["method"], "privacy": {},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    return card, None
