"""The size release and the class-count share of a private run: what `privsynth.train`
publishes on the card before the first step (N_hat first), and the class proportions it releases
after training."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..models.warmup import WarmUp
from ..privacy import size_release as size_mech
from ..privacy.accounting import epsilon_from_history
from ..privacy.checks import check_delta
from ..privacy.dpsgd import sample_rate
from ..privacy.mechanisms import count_spend, proportions, release_counts, release_proportions
from ..request import RunRequest
from ..run import Card
from .trainer_auto import settle_auto
from .trainer_card import data_block, versions
from .trainer_load import Loaded, build_method

if TYPE_CHECKING:
    from .trainer import Session


def publish_plan(request: RunRequest, loaded: Loaded, session: Session, resume, sigma_n):
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
            build = functools.partial(build_method, request, spec=spec, dataset=dataset)
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
    counts, (c_eps, c_delta) = class_counts(card, mech, privacy.counts_epsilon, total_delta, spec)
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


def class_counts(card: Card, mech, counts_epsilon, total_delta, spec) -> tuple[dict, tuple]:
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


def _size_release(spec, session: Session, n: int, sigma: float, privacy, resume, synth):
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


def _warmup_prior(spec, warm: WarmUp, session: Session):
    """Fix the warm-up release's sigma; it opens the accountant's history (the spec's prior)."""
    prior, released = warm.prepare(spec, session.out, resuming=not session.fresh)
    if prior:  # after the size release, which opens the history
        spec = spec.replace(prior=[*spec.prior, *prior])
    if session.spend is not None and spec.prior:
        # what earlier segments released: the size release, then (if any) the warm-up's
        done = [*session.size_released, *released] if released else session.size_released
        session.spend.set_lead(spec.prior, spec.delta, done)
    return spec


def release_class_counts(spend, counts: dict, to_release, train_set, seed: int) -> None:
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
