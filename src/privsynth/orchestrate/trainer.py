"""``privsynth.train``: request -> data and model -> run folder and ledger spend -> size release
and privacy plan -> fit -> completed card, weights, sample grid and model card.

Every method goes through this one function, so every run gets the same card, ledger entry,
checkpointing and resume behaviour.
"""

from __future__ import annotations

import functools
import json
import math
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..atomic import replace_dir, write_json
from ..data import ImageDataset, Split, is_holdout_path, load_split
from ..errors import CheckpointError, ConfigError, PrivsynthError, TrainingDiverged
from ..lock import hold_output
from ..models import TrainContext
from ..models.defaults import recommended_config, recommended_warmup
from ..models.registry import create
from ..models.warmup import WARMUP_STATE, WarmUp
from ..preflight import check_device, check_memory, check_not_an_input, check_output_folder
from ..privacy import AccountantState, Ledger, PrivacySpec
from ..privacy import size_release as size_mech
from ..privacy.accounting import epsilon_from_history
from ..privacy.checks import PrivacyWarning, check_delta, default_epsilon
from ..privacy.dpsgd import run_empty_batch_delta, sample_rate
from ..privacy.ledger import COMPOSITION_RULE
from ..privacy.ledger.spend import RunSpend
from ..privacy.mechanisms import count_spend, proportions, release_counts, release_proportions
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
    load_train_state,
    read_card,
    same_data,
    save_train_state,
    write_model_card,
)
from .trainer_auto import auto_start, settle_auto
from .trainer_card import data_block, privacy_section, run_releases, versions


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
    loaded = _load(request)
    session, resume, sigma_n = _open_session(request, loaded)
    try:
        spec, total_delta = _publish_plan(request, loaded, session, resume, sigma_n)
        options, accountant = request.training, request.privacy.accountant
        ctx = TrainContext(
            privacy=spec,
            seed=options.seed,
            device=options.device,
            progress=options.progress,
            checkpoint_every=options.checkpoint_every,
            checkpoint=session.checkpoint,
            on_plan=session.on_plan,
            resume=resume,
        )
        synth, warm, train_set = loaded.synth, loaded.warm, loaded.train_set
        result = _fit(session, synth, train_set, ctx, warm, accountant)
        session.stop_if_diverged(synth, result)
        _release_class_counts(
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


@dataclass
class _Loaded:
    """What `train` reads and builds before it opens the run folder or the ledger."""

    dataset: ImageDataset
    parts: Split
    train_set: ImageDataset
    holdout: float | str  # as recorded: a test split's path made absolute
    spec: PrivacySpec | None  # None: no DP
    synth: Any
    warm: WarmUp | None
    counts_mechanism: str  # of the class-proportion release; "uniform" (none) without DP
    choice: Any = None  # --method auto's provisional `Choice` (settled from N_hat), else None


def _load(request: RunRequest) -> _Loaded:
    """Data, split, privacy spec, model and warm-up; a refusal here costs nothing."""
    data, privacy, options, method = request.data, request.privacy, request.training, request.method
    private, holdout = request.private, data.holdout
    if is_holdout_path(holdout):  # an official test split: recorded absolute, like --data
        holdout = str(Path(holdout).expanduser().resolve())
    dataset, parts = load_split(data.source, holdout, data.split_seed, data.image_size)
    train_set = dataset.subset(parts.train, name=dataset.name)
    n = len(train_set)
    spec = None
    if private:
        spec = PrivacySpec(
            epsilon=default_epsilon(privacy.epsilon, privacy.noise_multiplier),
            delta=privacy.delta,
            noise_multiplier=privacy.noise_multiplier,
            max_grad_norm=privacy.max_grad_norm,
            accountant=privacy.accountant,
            grad_sample_mode=privacy.grad_sample_mode,
        )
    # auto: provisional until N_hat exists (or the choice a resumed run recorded)
    out, overwrite = request.output.out, request.output.overwrite
    limit, device = options.time_limit, options.device
    choice, n_defaults = auto_start(method, out, overwrite, dataset, n, spec, limit, device)
    _check_memory(dataset, n)
    synth, warm = _build(request, choice or method, n_defaults, spec, dataset)
    batch = synth.config_dict().get("batch_size")
    if private and synth.mechanism == "dp-sgd" and isinstance(batch, int) and batch > n:
        # before the size release (which would be spent for nothing): the owner's message
        raise ConfigError(f"batch size {batch} exceeds the {n} training images; lower --batch-size")
    mech = privacy.class_proportions if private else "uniform"
    return _Loaded(dataset, parts, train_set, holdout, spec, synth, warm, mech, choice)


def _build(request: RunRequest, method, n_defaults: int, spec, dataset):
    """The method (a name, or auto's `Choice`) and its warm-up. One place decides the defaults
    (models/defaults.py, by training-set size and the target epsilon; auto's settings over
    them); flags override. ``n_defaults``: the size the defaults read (N_hat for auto)."""
    options, public_data = request.training, request.data.public_data
    overrides = {}
    if not isinstance(method, str):
        method, overrides = method.method, method.config_overrides
    target = spec.epsilon if spec else None
    config = {**recommended_config(method, n_defaults, target), **overrides}
    config.update(options.config or {})
    torch.manual_seed(options.seed)  # reproducible initial weights
    private = spec is not None
    synth = create(method, dataset.image_shape, dataset.num_classes, config, private=private)
    _check_sizes(synth.config_dict())
    warmup, warmup_config = options.warmup, options.warmup_config
    # No kind named: the method's recommended warm-up (the user's options over it), only for a
    # private run calibrated from epsilon (the release takes a share of it; a fixed
    # --noise-multiplier has none to share) without public data (the user's own warm-up).
    # Where the method recommends none, options alone stay an error (WarmUp.build says so).
    if warmup is None:
        warmup = "none"
        if public_data is None and spec is not None and spec.noise_multiplier is None:
            warmup, recommended = recommended_warmup(method, n_defaults, spec.epsilon)
            if warmup != "none":
                warmup_config = {**recommended, **(warmup_config or {})}
    warm = WarmUp.build(warmup, public_data, warmup_config, dataset, private, synth)
    return synth, warm


def _open_session(request: RunRequest, loaded: _Loaded) -> tuple[_Session, dict | None, float]:
    """The run folder (resumed if it holds an unfinished run of the same request), the checks
    that need no N_hat, then the ledger spend. Returns the session, the checkpoint to resume
    from (or None) and the size release's sigma (0 without DP)."""
    privacy, spec, synth, out = request.privacy, loaded.spec, loaded.synth, request.output.out
    repeat = _request(request, loaded)
    card, resume = _start_or_resume(out, repeat, loaded.parts, request.output.overwrite)
    if card.data and not same_data(card.data.get("check"), loaded.dataset, loaded.train_set):
        raise CheckpointError(
            f"'{out}' holds an unfinished run on other data (its pixels differ from the "
            "card's data check); rerun it with the original --data, or pass --overwrite"
        )
    _check_checkpoint_fits(resume, synth, out)
    session = _Session(out, card, loaded.parts, request.output.overwrite, resume)
    card.request, card.private, card.config = repeat, spec is not None, synth.config_dict()
    if spec is None:
        return session, resume, 0.0
    n = len(loaded.train_set)  # refused here, before the ledger: what does not need N_hat
    sigma_n = size_mech.size_sigma(spec, privacy.size_share, privacy.size_sigma)
    size_mech.check_fits(spec, sigma_n, spec.resolved_delta(n))
    if privacy.delta is not None and privacy.delta * n >= 1 and not privacy.force:
        check_delta(privacy.delta, n, given=True, force=False)  # raises
    _class_counts(
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


def _publish_plan(request: RunRequest, loaded: _Loaded, session: _Session, resume, sigma_n):
    """The card's data and privacy blocks before the first step: N_hat first (every published
    value that needs N reads it), then the class-count share, the DP-SGD spec and the warm-up
    prior. Returns DP-SGD's spec (None without DP) and the run's total delta."""
    privacy, card, spec, n = request.privacy, session.card, loaded.spec, len(loaded.train_set)
    data, dataset, holdout = request.data, loaded.dataset, loaded.holdout
    card.versions = versions()
    card.data = data_block(data.source, dataset, loaded.train_set, data.split_seed, data.image_size)
    options = request.training
    card.train = {**card.train, "seed": options.seed, "device": options.device, "holdout": holdout}
    if spec is not None:
        spec = _size_release(spec, session, n, sigma_n, privacy, resume, loaded.synth)
        if loaded.choice is not None:  # the final choice reads N_hat, never N
            build = functools.partial(_build, request, spec=spec, dataset=dataset)
            loaded.synth, loaded.warm = settle_auto(
                session, loaded.choice, spec, options.time_limit, build
            )
    total_delta = spec.resolved_delta(n) if spec else 0.0
    given, force = privacy.delta is not None, privacy.force
    notes = check_delta(total_delta, n, given=given, force=force, shown_n=spec.size) if spec else []
    # --force is never silent: what it let through is on the card (and warned on stderr).
    session.forced = bool(spec) and force and total_delta * n >= 1
    if session.forced:  # shown as forced in the ledger too, not only on the card
        session.spend.forced_check = f"delta {total_delta:g} >= 1/n = 1/{n}"
    mech = loaded.counts_mechanism
    counts, (c_eps, c_delta) = _class_counts(card, mech, privacy.counts_epsilon, total_delta, spec)
    session.counts = counts
    if spec is not None:  # DP-SGD's share of the target: the class counts' taken out
        if spec.epsilon is not None:
            spec = spec.replace(epsilon=spec.epsilon - c_eps)
            if resume is None:  # a fresh calibrated run reserves its whole target: fail fast
                session.spend.reserve_target(spec.epsilon + c_eps, total_delta)
        spec = spec.replace(delta=total_delta - c_delta)
        # the run's one DP delta, also for a segment that only finishes (history booked before)
        session.spend.sgd_delta = spec.delta
    if loaded.warm is not None:  # the release's sigma joins the accountant before DP-SGD's
        spec = _warmup_prior(spec, loaded.warm, session)
    session.spec = spec
    if session.spend is not None:  # where this dataset's total is read back (cards, `info`)
        card.ledger = session.spend.ledger.shown
        # keyed by the ledger's secret: a plain hash would let anyone test a candidate set
        card.data["dataset_key"] = session.spend.ledger.key(dataset.content)
    card.privacy["class_proportions"] = counts
    if notes:
        card.privacy["warnings"] = notes
    session.to_release = (
        (counts["epsilon"], counts["delta"]) if counts["values"] is None else (0.0, 0.0)
    )
    return spec, total_delta


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


def _request(request: RunRequest, loaded: _Loaded) -> dict:
    """What a resume must repeat: a changed split would train on former holdout images, a
    changed privacy flag would silently mix two plans in one card. (JSON round trip: the card's
    stored request compares equal.)"""
    synth, spec, warm, privacy = loaded.synth, loaded.spec, loaded.warm, request.privacy
    mech = loaded.counts_mechanism
    repeat = {
        "method": synth.name,
        "private": synth.private,
        "config": synth.config_dict(),
        "privacy": spec.to_json() if spec else None,
        "class_proportions": mech,
        "counts_epsilon": privacy.counts_epsilon if mech != "uniform" else None,
        "holdout": loaded.holdout,
        "split_seed": request.data.split_seed,
        "seed": request.training.seed,
        **({"warmup": warm.request()} if warm else {}),
    }
    if spec is not None:  # a resume must repeat the size release too
        repeat["size_release"] = {"share": privacy.size_share, "sigma": privacy.size_sigma}
    return json.loads(json.dumps(repeat))


def _class_counts(card: Card, mech, counts_epsilon, total_delta, spec) -> tuple[dict, tuple]:
    """The class-proportion release: done once, after training (sampling is its only use); its
    (epsilon, delta) is fixed now and taken out of the DP-SGD share of the target. Returns the
    card's entry (a resumed run keeps what its card already holds) and that (epsilon, delta)."""
    c_eps, c_delta = count_spend(mech, counts_epsilon, total_delta / 2)
    if spec is not None and spec.epsilon is not None and c_eps >= spec.epsilon:
        raise ConfigError(
            f"--counts-epsilon {counts_epsilon} leaves nothing of --epsilon "
            f"{spec.epsilon} for training; use a smaller --counts-epsilon"
        )
    fresh = {"mechanism": mech, "epsilon": c_eps, "delta": c_delta, "values": None}
    return card.privacy.get("class_proportions") or fresh, (c_eps, c_delta)


def _size_release(spec, session: _Session, n: int, sigma: float, privacy, resume, synth):
    """Release N_hat (privacy/size_release.py) before anything else, or reuse the one an earlier
    segment of this run drew (kept on the card): never drawn twice. Ledger: the run's target is
    reserved first (at a provisional delta from the exact N when the user gave none: the
    ledger is the owner's), then the release is booked as the lead of the run's accountant
    history before it is drawn; the exact plan re-reserves later. Returns ``spec`` with the
    size and the release's history entry (the head of ``prior``)."""
    card, spend = session.card, session.spend
    kept = card.privacy.get("size_release")
    if kept is not None:
        sigma = float(kept["sigma"])
    lead = [size_mech.entry(sigma)]
    provisional = spec.resolved_delta(n)
    session.size_released = list(lead) if kept is not None else []
    spend.set_lead(lead, provisional, session.size_released)
    if kept is not None:
        return spec.replace(size=size_mech.agree(int(kept["dp_count"])), prior=lead)
    if resume is None:  # fail fast: a run refused by a budget draws nothing
        spend.reserve_target(_provisional_target(spec, lead, synth, n, provisional), provisional)
    spend.book_lead()
    drawn, release = size_mech.release_size(n, sigma)
    n_hat = size_mech.agree(drawn)
    release = release.with_count(n_hat, release.how)  # process 0's, in a process group
    # the share says what fixed sigma_n only where its calibration did (not the MAX_SIGMA cap)
    calibrated = privacy.size_sigma is None and spec.epsilon is not None
    share = privacy.size_share if calibrated and sigma < size_mech.MAX_SIGMA else None
    shown_delta = spec.replace(size=n_hat).resolved_delta(n)  # never the exact N's 1/(10 N)
    card.privacy["size_release"] = size_mech.card_entry(
        release, share, shown_delta, spec.accountant
    )
    # The card keeps N_hat for a resumed segment (a killed run keeps its folder; a refusal
    # before the first step removes it, `discard_if_nothing_kept`). A run replacing a finished
    # one (--overwrite) writes into its staging folder: the old run stays as it was.
    session.writer.write()
    return spec.replace(size=n_hat, prior=lead)


def _provisional_target(spec, lead, synth, n: int, delta: float) -> float:
    """What a run reserves before its size release: its target epsilon, or with a fixed noise
    multiplier its plan's epsilon at the exact N (the ledger is the owner's own record; the
    plan from N_hat re-reserves once it exists)."""
    if spec.epsilon is not None:
        return spec.epsilon
    batch = synth.config_dict().get("batch_size")
    if synth.mechanism == "dp-sgd" and batch:
        steps = [(spec.noise_multiplier, sample_rate(n, batch), synth.total_steps(n))]
    else:  # one release on the whole set
        steps = [(spec.noise_multiplier, 1.0, 1)]
    return epsilon_from_history([*lead, *steps], delta, spec.accountant)


def _warmup_prior(spec, warm: WarmUp, session: _Session):
    """Fix the warm-up release's sigma; it opens the accountant's history (the spec's prior)."""
    prior, released = warm.prepare(spec, session.out, resuming=not session.fresh)
    if prior:  # after the size release, which opens the history
        spec = spec.replace(prior=[*spec.prior, *prior])
    if session.spend is not None and spec.prior:
        # what earlier segments released: the size release, then (if any) the warm-up's
        done = [*session.size_released, *released] if released else session.size_released
        session.spend.set_lead(spec.prior, spec.delta, done)
    return spec


def _fit(session: _Session, synth, train_set, ctx: TrainContext, warm, accountant: str):
    """The warm-up (if any), then the method's fit."""
    if warm is not None:
        _warm_up(session, synth, train_set, ctx, warm, accountant)
    return synth.fit(train_set, ctx)


def _warm_up(session: _Session, synth, train_set, ctx, warm: WarmUp, accountant: str) -> None:
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


def _release_class_counts(spend, counts: dict, to_release, train_set, seed: int) -> None:
    """The class proportions sampling uses, released once (booked before they are drawn)."""
    if counts["values"] is not None:
        return
    if spend is not None and counts["mechanism"] != "uniform":
        spend.ensure_planned(to_release)
        spend.releasing_other()
    if counts["mechanism"] == "uniform":
        props, _, _ = release_proportions(train_set.class_counts(), "uniform", 0.0, 0.0, seed)
        counts["values"] = props.tolist()
        return
    noisy, release = release_counts(
        train_set.class_counts(), counts["mechanism"], counts["epsilon"], counts["delta"]
    )
    counts["values"] = proportions(noisy).tolist()
    # The training-set size as this release has it (the card publishes no exact count).
    counts["dp_count"] = release.dp_count


class _Session:
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
            privacy_section(releases, spec, result, total_delta, synth.mechanism, carried, outside)
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


def _check_memory(dataset: ImageDataset, n_train: int) -> None:
    """Refuse, before any model is built, requests that cannot fit: the images held as uint8
    and as the float copy training reads (``--image-size 4096``), and more classes than training
    images (``--classes 100000`` once grew until the kernel killed it: every class-conditional
    layer scales with the class count)."""
    c, h, w = dataset.image_shape
    k = dataset.num_classes
    if k > n_train:
        raise ConfigError(
            f"{k} classes for {n_train} training images: at least {k - n_train} classes "
            "would have no image, and class-conditional layers grow with the class count; "
            "pass the real class list with --classes"
        )
    check_memory(
        5 * dataset.images.nbytes,
        f"training on {len(dataset)} images of {c}x{h}x{w}",
        "use a smaller --image-size (or fewer images)",
    )


def _check_checkpoint_fits(resume: dict | None, synth, out: Path) -> None:
    """A checkpoint whose tensors do not fit the model (edited, or copied from another run)
    stops here, before the ledger is touched, not inside the first resumed step."""
    saved = (resume or {}).get("private")
    if not isinstance(saved, dict):
        return
    expected = {k: tuple(v.shape) for k, v in synth.private_module().state_dict().items()}
    found = {k: tuple(v.shape) for k, v in saved.items() if isinstance(v, torch.Tensor)}
    wrong = sorted(k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k))
    if wrong:
        k = wrong[0]
        raise CheckpointError(
            f"{out / TRAIN_STATE} does not fit this run's model ({len(wrong)} tensor(s) differ, "
            f"e.g. {k}: {found.get(k)} saved, {expected.get(k)} expected); delete it to restart "
            "from step 0 (the ledger keeps the spend of the steps that ran), or pass --overwrite"
        )


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


def _start_or_resume(out: Path, request: dict, parts, overwrite: bool) -> tuple[Card, dict | None]:
    """A new card, or the card and checkpoint of the unfinished run of the same ``request`` in
    ``out`` (with --overwrite always a new run: the old one is removed at its first write)."""
    if not (out / CARD).exists() or overwrite:
        if not (out / CARD).exists() and out.exists() and any(out.iterdir()):
            raise CheckpointError(f"'{out}' exists and is not a run folder; choose an empty --out")
        return Card.new(request["method"]), None
    card = read_card(out)
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
    if card.get("request") != request:
        changed = sorted(k for k in request if (card.get("request") or {}).get(k) != request[k])
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
    if resume is not None and resume.get("run_id", card["run_id"]) != card["run_id"]:
        raise CheckpointError(
            f"'{state}' belongs to run {resume['run_id']}, not to this folder's run "
            f"{card['run_id']}: resuming would book its steps on the wrong run; put "
            "the run's own train_state.pt back, or pass --overwrite"
        )
    if resume is None and card.get("progress"):
        warnings.warn(
            f"'{out}' has no {TRAIN_STATE}: run {card['run_id']} restarts from "
            "step 0; the spend of its earlier segment(s) stays booked in the "
            "ledger: the run's accountant composes it with the restart's steps",
            PrivacyWarning,
            stacklevel=3,
        )
    return Card.from_json(card), resume
