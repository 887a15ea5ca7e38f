"""`privsynth export RUN DIR`: the part of a run folder that is safe to publish.

A run folder is a working folder: split.json names the training rows, train_state.pt holds
optimiser state, the card records local paths and the un-noised training losses. The export keeps
only what the DP guarantee covers or what is public anyway:

    weights.safetensors   the released model (covered by the guarantee)
    card.json             the privacy card, without local paths and un-noised losses
    README.md             the model card (Hugging Face format), from that card
    samples.png           the sample grid (drawn from the released weights: post-processing)
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from .atomic import replace_dir, write_bytes, write_json
from .errors import CheckpointError, ConfigError
from .preflight import check_not_an_input, check_output_folder
from .run import CARD, GRID, MODEL_CARD, QUICK_EVAL, WEIGHTS, read_card

PUBLISHED = (WEIGHTS, CARD, MODEL_CARD, GRID)
# Card fields that are private or local: (path of keys, why) — the why is written into the card.
DROPPED = [
    (("request",), "the command's inputs, including local paths"),
    (("ledger",), "the local ledger's location"),
    (("progress",), "training progress"),
    (("data", "source"), "the local path of the private data"),
    (("data", "owner_data"), "the owners' local data paths"),
    (("train", "metrics"), "training losses, computed on private batches without noise"),
    (("train", "holdout"), "the holdout setting (a local path when a test split was given)"),
    (("federated", "per_round"), "per-round owner reports (not covered by the guarantee)"),
    (("privacy", "dataset_spend", "ledger"), "the local ledger's location"),
    (("privacy", "ledger", "location"), "the local ledger's location"),
]


def public_card(card: dict) -> tuple[dict, list[str]]:
    """A deep copy of ``card`` without the DROPPED fields, and the dotted names removed."""
    import copy

    card = copy.deepcopy(card)
    removed = []
    for keys, _ in DROPPED:
        parent = card
        for key in keys[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if isinstance(parent, dict) and keys[-1] in parent:
            del parent[keys[-1]]
            removed.append(".".join(keys))
    return card, removed


def export(
    run: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    license_id: str | None = None,
    overwrite: bool = False,
    non_private: bool = False,
) -> Path:
    """Write the publishable part of the finished run ``run`` into the folder ``out``.

    ``license_id``: a Hugging Face license identifier for the model card (default: 'other',
    unspecified — the data owner decides). A run without differential privacy is refused unless
    ``non_private`` (its weights can reveal training images). Built in a temporary sibling and
    renamed: ``out`` is never half-written; an existing non-empty ``out`` needs ``overwrite``."""
    from .report.card_text import model_card

    run, out = Path(run), check_output_folder(out, "DIR")
    card = read_card(run)
    if card.get("status") != "complete" or not (run / WEIGHTS).exists():
        raise CheckpointError(
            f"run '{run}' is not finished (status {card.get('status')!r}); "
            "finish it (rerun the same `privsynth train`) before exporting"
        )
    if not card.get("private") and not non_private:
        raise ConfigError(
            f"run '{run}' was trained without differential privacy: its weights "
            "can reveal training images. Export a DP run, or pass --non-private "
            "if the training data is public"
        )
    check_not_an_input(out, {"RUN": run}, "DIR")
    if run.resolve() in out.resolve().parents:
        raise ConfigError(f"DIR '{out}' lies inside the run folder; choose a folder outside it")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(
            f"'{out}' exists and is not empty; pass --overwrite to replace it or choose another DIR"
        )
    published, removed = public_card(card)
    if license_id:
        published["license"] = license_id
    published["export"] = {
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "removed_fields": removed,
        "why": {".".join(k): why for k, why in DROPPED if ".".join(k) in removed},
        "not_published": [
            "split.json (names the training rows)",
            "train_state.pt (optimiser state)",
            "quick_eval.json (its figures are in README.md)",
        ],
    }
    evaluation = _read_json(run / QUICK_EVAL)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        shutil.copy2(run / WEIGHTS, tmp / WEIGHTS)
        if (run / GRID).exists():
            shutil.copy2(run / GRID, tmp / GRID)
        write_json(tmp / CARD, published)
        files = [f for f in PUBLISHED if (tmp / f).exists() or f == MODEL_CARD]
        write_bytes(
            tmp / MODEL_CARD,
            model_card(published, evaluation, files, license_id=license_id).encode(),
        )
        replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


def _read_json(path: Path) -> dict | None:
    import json

    try:
        return json.loads(path.read_text()) if path.exists() else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
