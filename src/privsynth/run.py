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
import math
import os
import secrets
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import atomic_path, write_bytes, write_json
from .data import ImageDataset, Split
from .errors import CheckpointError, ConfigError, PrivsynthError
from .models.registry import create
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


def save_weights(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata=metadata)


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


class Run:
    """A trained (or training) run, loaded from its folder.

    >>> run = Run.load("runs/digits-dpgan")
    >>> images, labels = run.sample(100, labels=[3] * 100)
    """

    def __init__(self, path: Path, card: dict, synthesizer):
        self.path, self.card, self.synthesizer = Path(path), card, synthesizer

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str = "cpu") -> "Run":
        from safetensors.torch import load_file

        path = Path(path)
        card = read_card(path)
        if card.get("status") != "complete":
            raise CheckpointError(
                f"run '{path}' did not finish (status {card.get('status')!r}); "
                "rerun the same `privsynth train` command to resume it"
            )
        weights = path / WEIGHTS
        if not weights.exists():
            raise CheckpointError(f"{weights} is missing; the run folder is incomplete — retrain")
        try:
            data = card["data"]
            shape, classes = tuple(data["image_shape"]), len(data["classes"])
            config, private = card["config"], card["private"]
        except (KeyError, TypeError) as e:
            raise CheckpointError(
                f"{path / CARD} lacks {e}; the card was edited or cut short, restore it or retrain"
            ) from None
        synth = create(card["method"], shape, classes, config, private=private)
        try:
            state = load_file(str(weights), device=device)
        except Exception as e:  # safetensors raises its own error type on a damaged header
            raise CheckpointError(f"{weights} is corrupt ({e}); restore it or retrain") from None
        bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:  # NaN weights would sample black (or garbage) images without a word
            raise CheckpointError(
                f"{weights} holds NaN/infinite weights ({bad[0]}): the training "
                "diverged; retrain with a lower learning rate (--set lr=...)"
            )
        try:
            synth.load_state_dict(state)
        except (RuntimeError, KeyError) as e:
            first = str(e).strip().splitlines()[0]
            raise CheckpointError(
                f"{weights} does not fit the card's model ({first}); the weights "
                "and card.json come from different runs — restore or retrain"
            ) from None
        return cls(path, card, synth)

    # --- what the card says -----------------------------------------------------------------
    @property
    def method(self) -> str:
        return self.card["method"]

    @property
    def private(self) -> bool:
        return is_private(self.card)

    @property
    def epsilon(self) -> float:
        """The run's epsilon; ``math.inf`` without DP (no guarantee at all: every epsilon fails)."""
        return float(self.card["privacy"]["epsilon"]) if self.private else math.inf

    @property
    def delta(self) -> float:
        return float(self.card["privacy"]["delta"])

    @property
    def class_names(self) -> list[str]:
        return list(self.card["data"]["classes"])

    @property
    def split(self) -> Split:
        return Split.from_json(json.loads((self.path / SPLIT).read_text()))

    def load_data(
        self, data: ImageDataset | str | None = None
    ) -> tuple[ImageDataset, ImageDataset]:
        """The real (train, holdout) split this run used, checked against the card's data check.

        ``data`` overrides the recorded source (e.g. the run was trained from memory or moved).
        """
        from .data import DataSource, is_holdout_path, load_dataset, load_split

        info = self.card["data"]
        if data is None:
            if info.get("source") is None:
                raise CheckpointError(
                    f"run '{self.path}' was trained on in-memory data; pass the "
                    "same dataset (--data) to evaluate it"
                )
            data = info["source"]
        if not isinstance(data, (ImageDataset, DataSource)):
            # The format inputs the run was trained with (older cards: their class list).
            data = DataSource.from_options(
                str(data), info.get("format") or {"classes": info.get("classes")}
            )
        if not isinstance(data, ImageDataset):
            holdout = (self.card.get("train") or {}).get("holdout")
            if is_holdout_path(holdout):  # an official test split: data + test, split by origin
                data, _ = load_split(data, holdout, 0, info.get("image_size"))
            else:
                data = load_dataset(data, image_size=info.get("image_size"))
        if not same_data(info.get("check"), data):
            raise CheckpointError(
                f"data '{data.name}' is not the dataset run '{self.path}' was "
                "trained on (its pixels differ from the card's data check); pass the "
                "original --data"
            )
        parts = self.split
        return data.subset(parts.train), data.subset(parts.holdout)

    def class_proportions(self) -> np.ndarray:
        return np.asarray(self.card["privacy"]["class_proportions"]["values"], dtype=np.float64)

    # --- sampling -----------------------------------------------------------------------------
    def sample(self, n: int, labels: Any = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``n`` synthetic images (uint8 N x C x H x W) and their labels.

        ``labels``: None draws classes from the card's class proportions (uniform, or the DP
        release); an int or a list of ints (or class names) fixes them.
        """
        k = len(self.class_names)
        if labels is None:
            rng = np.random.default_rng(seed)
            labels = rng.choice(k, size=n, p=self.class_proportions())
        else:
            labels = self._label_ids(labels, n)
        return self.synthesizer.sample(n, labels, seed=seed), labels

    def _label_ids(self, labels: Any, n: int) -> np.ndarray:
        names = self.class_names
        if isinstance(labels, (int, np.integer, str)):
            labels = [labels] * n
        out = []
        for lab in labels:
            if isinstance(lab, str) and lab in names:
                out.append(names.index(lab))
            elif isinstance(lab, (int, np.integer)) and 0 <= int(lab) < len(names):
                out.append(int(lab))
            else:
                raise ConfigError(f"label {lab!r} is not a class of this run; classes: {names}")
        if len(out) != n:
            raise ConfigError(f"{len(out)} labels given for n={n} samples; give one label or n")
        return np.asarray(out, dtype=np.int64)


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


_OPTIONAL = (
    "request",
    "versions",
    "ledger",
    "federated",
    "progress",
    "diverged",
    "method_choice",
)


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
        save_weights(
            self.out / WEIGHTS, state, {"method": self.card.method, "run_id": self.card.run_id}
        )

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
