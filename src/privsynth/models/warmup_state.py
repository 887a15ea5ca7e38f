"""The warm-up's resume state: ``warmup_state.pt`` in the run folder.

It keeps the release (never drawn twice), the MERF warm-up set (its generator trains for minutes)
and the pretraining checkpoints (phase, step, the method's full training state). A killed run
resumes the phase it was in, or restores the pretrained weights if pretraining had finished, and
the DP phase's own checkpoint (``train_state.pt``) takes over once it exists. Tensors and plain
values only, so ``weights_only`` loads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..privacy.central import CentralRelease
from .warmup_merf import MerfRelease

WARMUP_STATE = "warmup_state.pt"
# CentralRelease's numbers, in its field order after the three arrays, and their types
NUMBERS = {
    "sigma": float,
    "sample_rate": float,
    "queries": int,
    "size": int,
    "clip": float,
    "count_weight": float,
}


def load_state(out: Path) -> dict:
    from ..run import load_train_state

    path = Path(out) / WARMUP_STATE
    return load_train_state(path) if path.exists() else {}


def save_state(out: Path, state: dict) -> None:
    from ..run import save_train_state

    save_train_state(Path(out) / WARMUP_STATE, state)


def release_to_state(r: CentralRelease | MerfRelease) -> dict:
    if isinstance(r, MerfRelease):
        return {"kind": "merf", "released": r.released, "sigma": r.sigma}
    return {
        "images": torch.from_numpy(r.images),
        "labels": torch.from_numpy(r.labels),
        "counts": torch.from_numpy(np.asarray(r.counts, np.float64)),
        **{k: getattr(r, k) for k in NUMBERS},
    }


def release_from_state(d: dict) -> CentralRelease | MerfRelease:
    if d.get("kind") == "merf":
        return MerfRelease(d["released"], float(d["sigma"]))
    arrays = (d[k].numpy() for k in ("images", "labels", "counts"))
    return CentralRelease(*arrays, **{k: cast(d[k]) for k, cast in NUMBERS.items()})
