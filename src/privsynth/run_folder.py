"""The run folder: everything one training run leaves behind, loadable without pickle.

    runs/digits-dpgan/
      card.json            the privacy card: method, epsilon/delta and how they were computed,
                           a keyed data check, split, full config, package versions
      weights.safetensors  what sampling needs (e.g. the GAN's EMA generator)
      README.md            the model card (Hugging Face format): method, guarantee, what is not
                           protected, evaluation, how to sample — rewritten with every card.json
      split.json           which dataset rows were trained on (private!) and which held out
      train_state.pt       only while training: resumable state, tensors only (weights_only load)

A run folder is *not* the release: split.json names the training rows. `privsynth export RUN DIR`
(`privsynth.export.export`) copies only what is safe to publish.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import secrets
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_path, write_bytes, write_json
from .data import Split
from .errors import CheckpointError, PrivsynthError
from .nodp import is_private

CARD, WEIGHTS, MODEL_CARD = "card.json", "weights.safetensors", "README.md"
GRID, QUICK_EVAL = "samples.png", "quick_eval.json"
SPLIT, TRAIN_STATE = "split.json", "train_state.pt"
FORMAT = "privsynth-run/1"


def data_check(dataset, train_set, salt: str | None = None) -> dict:
    """What lets a resume or an evaluation confirm it has the data the run trained on, without a
    plain hash of it (that would let anyone holding a candidate dataset test it): HMAC-SHA256 of
    the pixel fingerprints under a random per-run salt. Kept in the run folder's card only;
    `privsynth export` drops it."""
    salt = salt or secrets.token_hex(16)

    def keyed(ds) -> str:
        return hmac.new(bytes.fromhex(salt), ds.fingerprint.encode(), hashlib.sha256).hexdigest()

    return {"salt": salt, "data": keyed(dataset), "train": keyed(train_set)}


def same_data(check: dict | None, dataset, train_set=None) -> bool:
    """Whether ``dataset`` (and ``train_set``) are what ``check`` (`data_check`) was made of."""
    if not check:
        return False
    again = data_check(dataset, train_set if train_set is not None else dataset, check["salt"])
    return again["data"] == check["data"] and (
        train_set is None or again["train"] == check["train"]
    )


def read_card(path: str | os.PathLike[str]) -> dict:
    card_path = Path(path) / CARD
    if not card_path.exists():
        raise CheckpointError(
            f"'{path}' is not a run folder (no {CARD}); pass the --out folder "
            "of a `privsynth train` run"
        )
    try:
        card = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(
            f"{card_path} is corrupt ({e}); retrain or restore the file"
        ) from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        fmt = card.get("format") if isinstance(card, dict) else None
        raise CheckpointError(
            f"{card_path}: unknown format {fmt!r}, expected {FORMAT}; pass a "
            "run folder written by `privsynth train`, or retrain"
        )
    missing = [k for k in _CARD_KEYS if k not in card]
    if missing:
        raise CheckpointError(
            f"{card_path} lacks {missing}; the card was edited or cut short, restore it or retrain"
        )
    # Readers index these sections by key: a string or list there would fail deep inside them.
    wrong = [
        f"{k} is {'null' if card[k] is None else type(card[k]).__name__}"
        for k in _CARD_SECTIONS
        if k in card and not isinstance(card[k], dict) and not (card[k] is None and k in _NULLABLE)
    ]
    if wrong:
        raise CheckpointError(
            f"{card_path}: {', '.join(wrong)}, expected a JSON object; the card was edited, "
            "restore it or retrain"
        )
    if card["privacy"].get("epsilon") == "infinity":  # cards written before "private" alone
        card["privacy"]["epsilon"] = None
    return card


_CARD_KEYS = ("run_id", "status", "method", "privacy")
_CARD_SECTIONS = ("privacy", "data", "train", "config", "request", "federated", "progress")
_NULLABLE = ("config", "request", "federated", "progress")  # Card's optional sections


def save_train_state(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_train_state(path: Path) -> dict[str, Any]:
    # weights_only=True: tensors, numbers, strings and containers only — no code runs on load.
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated, or holding objects weights_only refuses
        raise CheckpointError(
            f"{path} cannot be loaded ({type(e).__name__}); delete it to restart "
            "training from step 0 (the ledger keeps the spend of the steps "
            "that ran, composed with the restart's in the run's entry), or pass --overwrite"
        ) from None


@dataclass
class Card:
    """card.json, typed at the top level (its sections stay JSON objects: readers index them by
    key). The one place that names the card's fields; `RunWriter` writes it."""

    run_id: str
    method: str
    status: str = "running"  # running | complete | diverged
    private: bool | None = None
    privacy: dict = field(default_factory=dict)
    config: dict | None = None
    data: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    format: str = FORMAT
    # Written only when set:
    request: dict | None = None  # the command a resume must repeat (central runs)
    versions: dict | None = None
    ledger: str | None = None  # where the dataset's total spend is read back
    federated: dict | None = None  # rounds, owners, traffic (federated runs)
    progress: dict | None = None  # while training: steps done, epsilon spent so far
    diverged: dict | None = None
    method_choice: dict | None = None  # --method auto: what it chose and why (models/auto.py)
    extra: dict = field(default_factory=dict)  # keys this version does not know, kept as read

    @classmethod
    def new(cls, method: str, **fields_: Any) -> "Card":
        return cls(run_id=uuid.uuid4().hex[:12], method=method, **fields_)

    @classmethod
    def from_json(cls, data: dict) -> "Card":
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(
            **{k: v for k, v in data.items() if k in known},
            extra={k: v for k, v in data.items() if k not in known},
        )

    def to_json(self) -> dict:
        out = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name != "extra" and not (f.name in _OPTIONAL and getattr(self, f.name) is None)
        }
        return {**self.extra, **out}


_OPTIONAL = ("request", "versions", "ledger", "federated", "progress", "diverged", "method_choice")


class RunWriter:
    """The one writer of a run folder's card.json (+ README.md), split.json and weights, for
    central (``privsynth.train``) and federated (the ServerApp, ``privsynth.federate``) runs."""

    def __init__(self, out: str | os.PathLike[str], card: Card, split: Split | None = None):
        self.out, self.card, self.split = Path(out), card, split

    def write(self) -> None:
        """The card now (and split.json, the first time): each file atomic."""
        if self.split is not None and not (self.out / SPLIT).exists():
            write_json(self.out / SPLIT, self.split.to_json())
        write_card(self.out, self.card.to_json())

    def save_weights(self, state: dict[str, torch.Tensor]) -> None:
        from safetensors.torch import save_file

        metadata = {"method": self.card.method, "run_id": self.card.run_id}
        with atomic_path(self.out / WEIGHTS) as tmp:
            save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata=metadata)

    def remove(self, names: tuple[str, ...]) -> None:
        for name in names:
            (self.out / name).unlink(missing_ok=True)


def write_card(path: Path, card: dict) -> None:
    """card.json plus the model card README.md, each written atomically. Both carry the data
    owner's one-sentence summary and the dataset's total spend in the ledger at this moment."""
    from .report.card_text import plain_language

    privacy = dict(card.get("privacy") or {})
    privacy["plain_language"] = plain_language(card)
    spend = dataset_spend(card)
    if spend is not None:
        privacy["dataset_spend"] = spend
    card = {**card, "privacy": privacy}
    write_json(path / CARD, card)
    write_model_card(path, card)


def write_model_card(path: str | os.PathLike[str], card: dict | None = None) -> None:
    """(Re)write README.md from card.json and quick_eval.json (after `train --evaluate`)."""
    from .report.card_text import model_card

    path = Path(path)
    card = read_card(path) if card is None else card
    files = [f for f in (WEIGHTS, CARD, GRID) if (path / f).exists() or f == CARD]
    write_bytes(path / MODEL_CARD, model_card(card, quick_eval(path), files).encode())


def quick_eval(path: Path) -> dict | None:
    """The run folder's quick_eval.json, or None when it is missing or unreadable."""
    try:
        return json.loads((path / QUICK_EVAL).read_text()) if (path / QUICK_EVAL).exists() else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def dataset_spend(card: dict) -> dict | None:
    """The total (epsilon, delta) the ledger holds now for this run's dataset (basic composition,
    keyed by the ledger's dataset key in the run folder's card), or None when the card names no
    ledger (non-private or federated runs) or it cannot be read."""
    booked = (card.get("privacy") or {}).get("ledger") or {}  # a finished run's ledger block
    ref = card.get("ledger") or booked.get("location")
    key = (card.get("data") or {}).get("dataset_key") or booked.get("dataset_key")
    if not is_private(card) or not ref or not key:
        return None
    from .privacy import Ledger

    try:
        location = _reopenable(str(ref))
        if location is None:
            return None
        ledger = Ledger(location)
        if not ledger.store.exists():
            return None
        spent = ledger.spent(key)
    except (PrivsynthError, OSError):
        return None
    return {
        "epsilon": float(spent.epsilon),
        "delta": float(spent.delta),
        "composition": "basic composition: epsilons add, deltas add",
        "ledger": str(ref),
        "as_of": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _reopenable(shown: str) -> str | None:
    """Cards name the ledger with a URL's password redacted (***): reopen it through
    ``$PRIVSYNTH_LEDGER`` / the default when that is the same ledger, else give up."""
    from .privacy.ledger import resolve_location
    from .privacy.ledger.store import redact

    if "***@" not in shown:
        return shown
    current = resolve_location(None)
    return current if redact(current) == shown else None
