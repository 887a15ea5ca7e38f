"""Whether `privsynth.train` may resume the run folder it is given: the request a resume must
repeat, the card and checkpoint it resumes from, and a checkpoint that fits the model."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..privacy.checks import PrivacyWarning
from ..request import RunRequest
from ..run import CARD, SPLIT, TRAIN_STATE, Card, load_train_state, read_card
from .trainer_load import Loaded


def request_to_repeat(request: RunRequest, loaded: Loaded) -> dict:
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


def built_in_defaults(loaded: Loaded) -> dict:
    """The config classes' built-in values, shaped like the request (``config``, the warm-up's
    ``config``), for `start_or_resume` to fill into an older card's request. A method
    registered without a config dataclass (a user's own) has none to fill."""

    def built_in(cls) -> dict | None:
        return dataclasses.asdict(cls()) if dataclasses.is_dataclass(cls) else None

    defaults = {"config": built_in(getattr(loaded.synth, "config_class", None))}
    if loaded.warm is not None:
        defaults["warmup"] = {"config": built_in(type(loaded.warm.config))}
    return json.loads(json.dumps(defaults))


def _with_defaults(stored: dict, defaults: dict) -> dict:
    """``stored`` with every option it lacks set to its built-in value. An option added in a
    later release defaults to what earlier releases ran (e.g. ``g_padding="zeros"``), so a run
    started before the upgrade resumes instead of reading as started with other settings."""
    out = dict(stored)
    for key, value in defaults.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**value, **out[key]} if key == "config" else _with_defaults(out[key], value)
    return out


def start_or_resume(
    out: Path, request: dict, parts, overwrite: bool, defaults: dict | None = None
) -> tuple[Card, dict | None]:
    """A new card, or the card and checkpoint of the unfinished run of the same ``request`` in
    ``out`` (with --overwrite always a new run: the old one is removed at its first write).
    ``defaults`` (`built_in_defaults`) fills options an older card's request does not name."""
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
    stored = _with_defaults(card.get("request") or {}, defaults or {})
    if stored != request:
        changed = sorted(k for k in request if stored.get(k) != request[k])
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


def check_checkpoint_fits(resume: dict | None, synth, out: Path) -> None:
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
