"""`Run`: a finished run loaded from its folder, to sample from and to read back the data it
trained on. The folder's files, the card and their one writer live in `run_folder`."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import ImageDataset, Split
from .errors import CheckpointError, ConfigError
from .models.registry import create
from .nodp import is_private
from .run_folder import CARD, SPLIT, WEIGHTS, read_card, same_data
from .run_folder import GRID as GRID
from .run_folder import MODEL_CARD as MODEL_CARD
from .run_folder import QUICK_EVAL as QUICK_EVAL
from .run_folder import TRAIN_STATE as TRAIN_STATE
from .run_folder import Card as Card
from .run_folder import RunWriter as RunWriter
from .run_folder import data_check as data_check
from .run_folder import dataset_spend as dataset_spend
from .run_folder import load_train_state as load_train_state
from .run_folder import quick_eval as quick_eval
from .run_folder import save_train_state as save_train_state
from .run_folder import write_model_card as write_model_card


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
