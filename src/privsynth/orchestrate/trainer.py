"""``privsynth.train``: request -> data and model -> run folder and ledger spend -> size release
and privacy plan -> fit -> completed card, weights, sample grid and model card.

Every method goes through this one function, so every run gets the same card, ledger entry,
checkpointing and resume behaviour.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from ..atomic import replace_dir, write_json
from ..data import ImageDataset
from ..errors import CheckpointError, PrivsynthError, TrainingDiverged
from ..lock import hold_output
from ..models import TrainContext
from ..models.warmup import WARMUP_STATE, WarmUp
from ..preflight import check_device, check_not_an_input, check_output_folder
from ..privacy import AccountantState, Ledger, PrivacySpec
from ..privacy import size_release as size_mech
from ..privacy.accounting import epsilon_from_history
from ..privacy.checks import check_delta
from ..privacy.dpsgd import run_empty_batch_delta
from ..privacy.ledger import COMPOSITION_RULE
from ..privacy.ledger.spend import RunSpend
from ..request import RunRequest
from ..run import (
    CARD,
    GRID,
    QUICK_EVAL,
    SPLIT,
    TRAIN_STATE,
    Card,
    Run,
    RunWriter,
    same_data,
    save_train_state,
    write_model_card,
)
from .trainer_card import NOT_PROTECTED, privacy_section, run_releases
from .trainer_load import Loaded, load_inputs
from .trainer_plan import class_counts, publish_plan, release_class_counts
from .trainer_resume import (
    built_in_defaults,
    check_checkpoint_fits,
    request_to_repeat,
    start_or_resume,
)


def train(request: RunRequest) -> Run:
    """Run ``request`` (its fields: `privsynth.request`) into its run folder; returns the
    loaded `Run`. `privsynth.train(data, method, out, **options)` builds the request.

    A private run first releases its training-set size N_hat (privacy/size_release.py): the
    sample rate, the steps and the default delta are computed from it, never from N. The noise
    multiplier is calibrated with Opacus for the planned steps; the spend is reserved in the
    ledger before the first private step and settled at the end. A run folder holding an
    unfinished run of the same request resumes from its checkpoint. ``out`` stays locked for
    the whole call (`lock.hold_output`): a second run into it is refused while this one lives.
    """
    out, data = check_output_folder(request.output.out), request.data
    inputs = {"--data": getattr(data.source, "path", data.source), "--holdout": data.holdout}
    check_not_an_input(out, {**inputs, "--public-data": data.public_data})
    with hold_output(out):
        return _train(request.replace(out=out))


def _train(request: RunRequest) -> Run:
    t0 = time.time()
    check_device(request.training.device)
    request.check()
    loaded = load_inputs(request)
    session, resume, sigma_n = _open_session(request, loaded)
    try:
        spec, total_delta = publish_plan(request, loaded, session, resume, sigma_n)
        options, accountant = request.training, request.privacy.accountant
        ctx = TrainContext.of(
            options, spec, checkpoint=session.checkpoint, on_plan=session.on_plan, resume=resume
        )
        synth, warm, train_set = loaded.synth, loaded.warm, loaded.train_set
        result = _fit(session, synth, train_set, ctx, warm, accountant)
        session.stop_if_diverged(synth, result)
        release_class_counts(
            session.spend, session.counts, session.to_release, train_set, options.seed
        )
        wall = time.time() - t0
        session.complete(synth, result, total_delta, loaded.dataset, warm, accountant, wall)
        session.swap_in()
    except BaseException as e:
        if isinstance(e, PrivsynthError):  # refused before any step: no run folder is left
            session.discard_if_nothing_kept()  # (a size release it drew stays booked)
        if session.spend is not None:
            session.spend.abort(
                "interrupted" if isinstance(e, KeyboardInterrupt) else "failed",
                note=f"{type(e).__name__}: {str(e)[:200]}",
            )
        session.drop_staging()
        raise
    return _write_extras(request, loaded.dataset)


def _open_session(request: RunRequest, loaded: Loaded) -> tuple[Session, dict | None, float]:
    """The run folder (resumed if it holds an unfinished run of the same request), the checks
    that need no N_hat, then the ledger spend. Returns the session, the checkpoint to resume
    from (or None) and the size release's sigma (0 without DP)."""
    privacy, spec, synth, out = request.privacy, loaded.spec, loaded.synth, request.output.out
    repeat = request_to_repeat(request, loaded)
    card, resume = start_or_resume(
        out, repeat, loaded.parts, request.output.overwrite, built_in_defaults(loaded)
    )
    if card.data and not same_data(card.data.get("check"), loaded.dataset, loaded.train_set):
        raise CheckpointError(
            f"'{out}' holds an unfinished run on other data (its pixels differ from the "
            "card's data check); rerun it with the original --data, or pass --overwrite"
        )
    check_checkpoint_fits(resume, synth, out)
    session = Session(out, card, loaded.parts, request.output.overwrite, resume)
    card.request, card.private, card.config = repeat, spec is not None, synth.config_dict()
    if spec is None:
        return session, resume, 0.0
    n = len(loaded.train_set)  # refused here, before the ledger: what does not need N_hat
    sigma_n = size_mech.size_sigma(spec, privacy.size_share, privacy.size_sigma)
    size_mech.check_fits(spec, sigma_n, spec.resolved_delta(n))
    if privacy.delta is not None and privacy.delta * n >= 1 and not privacy.force:
        check_delta(privacy.delta, n, given=True, force=False)  # raises
    class_counts(
        card, loaded.counts_mechanism, privacy.counts_epsilon, spec.resolved_delta(n), spec
    )
    # a resumed run's accountant history is already booked
    booked = (resume or {}).get("accountant")
    session.spend = RunSpend(
        Ledger(privacy.ledger),
        loaded.dataset.content,
        loaded.dataset.name,
        run_id=card.run_id,
        method=synth.name,
        out=str(out.resolve()),
        kind="train",
        limit=privacy.budget,
        force=privacy.force,
        accountant=spec.accountant,
        chunk=request.training.checkpoint_every,
        prefix=AccountantState.from_json(booked).history if booked else [],
    )
    return session, resume, sigma_n


def _fit(session: Session, synth, train_set, ctx: TrainContext, warm, accountant: str):
    """The warm-up (if any), then the method's fit."""
    if warm is not None:
        _warm_up(session, synth, train_set, ctx, warm, accountant)
    return synth.fit(train_set, ctx)


def _warm_up(session: Session, synth, train_set, ctx, warm: WarmUp, accountant: str) -> None:
    spec, card = session.spec, session.card
    card.privacy["warmup"] = warm.card(spec.delta if spec else 0.0, accountant)
    if ctx.resume is not None:  # a DP checkpoint already holds the pretrained weights
        return
    session.writer.write()

    def released() -> None:
        session.checkpointed = True  # spend booked: the card stays whatever happens
        card.privacy["warmup"] = warm.card(spec.delta, accountant)
        session.writer.write()

    spend = session.spend
    warm.run(
        synth, train_set, ctx, session.out, spend.book_lead if spend else (lambda: None), released
    )


def _write_extras(request: RunRequest, dataset: ImageDataset) -> Run:
    """The sample grid (10 seeded draws per class) and the quick evaluation the request asks
    for, then README.md again so the model card cites them; returns the loaded `Run`."""
    out, seed = request.output.out, request.training.seed
    run = Run.load(out, device="cpu")
    if request.output.samples:
        from ..report import save_grid

        k = len(run.class_names)
        images, labels = run.sample(10 * k, labels=[i // 10 for i in range(10 * k)], seed=seed)
        save_grid(out / GRID, images, labels, k)
    if request.output.quick_eval:
        from ..evaluate.quick import quick_evaluate

        nets = request.output.quick_eval_classifiers
        write_json(out / QUICK_EVAL, quick_evaluate(run, dataset, classifiers=nets, seed=seed))
    write_model_card(out)
    return run


class Session:
    """One `train` call's run folder, card and ledger spend, and the hooks the method's fit
    calls (``checkpoint``, ``on_plan``): what the steps of `train` share."""

    def __init__(self, out: Path, card: Card, parts, overwrite: bool, resume: dict | None):
        self.final, self.card = out, card
        # --overwrite trains into a staging folder beside ``out`` and swaps it in only once the
        # new run is complete: a refused or failed replacement leaves the old run intact.
        self.replacing = overwrite and (out / CARD).exists()
        self.out = out.parent / f".{out.name}.overwrite" if self.replacing else out
        if self.replacing and self.out.exists():  # left by a replacement that was killed
            shutil.rmtree(self.out)
        self.created_out = not self.out.exists()
        self.writer = RunWriter(self.out, card, parts)
        self.fresh = resume is None and (self.replacing or not (out / CARD).exists())
        self.checkpointed = resume is not None  # something of this run must stay on disk
        self.spend: RunSpend | None = None
        self.spec: PrivacySpec | None = None
        self.counts: dict = {}  # the class-proportion release (card.privacy.class_proportions)
        self.to_release: tuple[float, float] = (0.0, 0.0)  # its spend, if not yet booked
        self.forced = False  # --force let delta >= 1/n through
        self.size_released: list = []  # the size release, when an earlier segment drew it

    def swap_in(self) -> None:
        """The completed replacement takes ``out``'s place (the old run's spend stays booked)."""
        if self.replacing:
            replace_dir(self.out, self.final)
            self.out, self.replacing = self.final, False

    def drop_staging(self) -> None:
        if self.replacing:
            shutil.rmtree(self.out, ignore_errors=True)

    def discard_if_nothing_kept(self) -> None:
        if self.fresh and not self.checkpointed:
            for name in (CARD, SPLIT, WARMUP_STATE):
                (self.out / name).unlink(missing_ok=True)
            if self.created_out or self.replacing:
                shutil.rmtree(self.out, ignore_errors=True)

    def diverged(self, step: int, bad: list[str], acc: AccountantState | None) -> None:
        """Stop for good: book exactly what ran, mark the card, keep no weights."""
        if self.spend is not None:
            self.spend.finish(acc.history if acc else None, status="diverged")
        self.checkpointed = True  # the card stays: it says what happened
        self.card.status = "diverged"
        self.card.diverged = {"step": step, "non_finite": bad[:10]}
        if acc is not None and self.spec is not None:  # for `info` and the model card
            self.card.diverged["epsilon_spent"] = acc.epsilon(self.spec.delta)
        self.writer.write()
        self.writer.remove((TRAIN_STATE, WARMUP_STATE))
        raise TrainingDiverged(
            f"training diverged at step {step}: {', '.join(bad[:3])} became NaN or "
            "infinite; lower the learning rate (--set lr=...) or fix --batch-size/--epochs, "
            "then rerun with --overwrite (the spend of the steps that ran stays in the "
            "ledger)"
        )

    def checkpoint(self, step: int, state: dict, acc: AccountantState | None) -> None:
        bad = non_finite(state)
        if bad:
            self.diverged(step, bad, acc)
        # The run's id travels with its checkpoint: a resume books onto that run only.
        save_train_state(self.out / TRAIN_STATE, {**state, "run_id": self.card.run_id})
        self.checkpointed = True
        if self.spend is not None:  # the previous booking covers every step up to this one
            self.spend.checkpoint(acc.history if acc else [])
        sgd_eps = 0.0
        if acc and self.spec:  # with what earlier segments of the run ran past their checkpoint
            whole = [*self.spend.carried, *acc.history]  # a private run always has a spend
            sgd_eps = epsilon_from_history(whole, self.spec.delta, self.spec.accountant)
        self.card.progress = {"steps_done": step, "epsilon_spent": sgd_eps}
        self.writer.write()

    def on_plan(self, plan) -> None:
        # The exact spend of the whole plan (a fixed --noise-multiplier too), for the card;
        # the ledger reserves what this segment will run, in the same transaction as the
        # budget check.
        spec, counts = self.spec, self.counts
        whole = [*spec.prior, (plan.noise_multiplier, plan.sample_rate, plan.steps)]
        planned = epsilon_from_history(whole, plan.delta, spec.accountant) + counts["epsilon"]
        self.spend.extra_delta = run_empty_batch_delta(plan)  # 0 in one process
        self.spend.plan(
            plan.noise_multiplier, plan.sample_rate, plan.steps, plan.delta, self.to_release
        )
        shown = {k: v for k, v in plan.to_json().items() if k != "n_private"}
        if plan.sample_rate >= 1:  # one release on the whole set: its "batch" is N itself
            shown.pop("batch_size", None)
        self.card.privacy["dp_sgd_plan"] = {**shown, "planned_epsilon": planned}
        self.mark_forced()
        self.writer.write()

    def stop_if_diverged(self, synth, result) -> None:
        bad = non_finite(synth.state_dict()) + [
            f"metric {k}"
            for k, v in result.metrics.items()
            if isinstance(v, float) and not math.isfinite(v)
        ]
        if bad:
            self.diverged(result.steps, bad, result.accountant)

    def complete(self, synth, result, total_delta, dataset, warm, accountant, wall) -> None:
        """Weights, the final card (guarantee, ledger totals) and no checkpoint left."""
        card, spec, spend, counts = self.card, self.spec, self.spend, self.counts
        self.writer.save_weights(synth.state_dict())
        card.status = "complete"
        releases = run_releases(card.privacy, warm, result, counts)
        carried, outside = (spend.carried, spend.outside()) if spend is not None else ((), None)
        card.privacy.update(
            privacy_section(
                releases,
                spec,
                result,
                total_delta,
                synth.mechanism,
                carried,
                outside,
                not_protected=NOT_PROTECTED + synth.not_protected,
            )
        )
        card.train.update(
            steps=result.steps,
            metrics=result.metrics,
            wall_seconds=round(card.train.get("wall_seconds", 0.0) + wall, 2),
        )
        card.progress = None
        if spend is not None:
            spend.finish(result.accountant.history if result.accountant else None)
            led = spend.ledger
            card.privacy["ledger"] = {
                "location": led.shown,
                "dataset_key": led.key(dataset.content),
                "composition": COMPOSITION_RULE,
                "dataset_epsilon_spent": led.spent(dataset.content).epsilon,
            }
        if warm is not None:
            card.privacy["warmup"] = warm.card(spec.delta if spec else 0.0, accountant)
        size = card.privacy.get("size_release")
        if spec is not None and size is not None:  # its epsilon alone at the run's delta
            size["epsilon_alone"] = epsilon_from_history(
                size["history"], spec.delta, spec.accountant
            )
        self.mark_forced()
        self.writer.write()
        self.writer.remove((TRAIN_STATE, WARMUP_STATE))

    def mark_forced(self) -> None:
        """``forced: true`` on the card when --force let the run past a budget or the delta
        check (never silent)."""
        if self.forced or (self.spend is not None and self.spend.forced):
            self.card.privacy["forced"] = True


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
