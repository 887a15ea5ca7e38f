"""The FD-LeNet feature space: a LeNet trained on real *reference* (held-out) images only.

Trained once per dataset and cached (on this machine) by the reference set's fingerprint, so every
model evaluated on the same data is measured with the same yardstick. Weights are safetensors (no
pickle); the write is atomic, so two evaluations racing on one cache never see half a file.
This is not Inception: its distances are called "FD-LeNet", never "FID".
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..data import ImageDataset
from .classifier import (
    IMAGES_SEEN,
    LeNet,
    Schedule,
    accuracy,
    embed,
    fixed_epochs,
    fixed_schedule,
    train_fixed,
)

VERSION = "lenet-features/2"


def default_cache_dir() -> Path:
    """``$PRIVSYNTH_CACHE`` or ``~/.cache/privsynth``."""
    env = os.environ.get("PRIVSYNTH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "privsynth"


def feature_model(
    reference: ImageDataset,
    cache_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    progress: bool = False,
    passes: int = IMAGES_SEEN,
) -> tuple[LeNet, dict]:
    """The feature LeNet for ``reference`` (trained now, or loaded from the cache) and its info.

    Trained on 90% of the reference images with the evaluation classifiers' fixed schedule
    (about ``passes`` images seen, last epoch); the other 10% only measure how well the feature
    space separates the classes (``val_accuracy``), nothing is selected on them."""
    from safetensors.torch import load_file, save_file

    perm = np.random.default_rng(seed).permutation(len(reference))
    n_val = len(reference) // 10 if len(reference) >= 20 else 0
    val, fit = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    # the grey sets' peak 0.05 and length also on colour: the tests' blurred colour noise reads
    # far from real in this space with them, and not at the TSTR LeNet's colour peak or 3x its
    # length (tests/evaluate/test_feature_space.py); those serve classification accuracy
    grey = fixed_schedule(len(fit), reference.image_shape, passes)
    schedule = replace(grey, lr=Schedule.lr, epochs=fixed_epochs(len(fit), passes))
    epochs = schedule.epochs
    key = hashlib.sha256(f"{VERSION}|{reference.fingerprint}|{epochs}|{seed}".encode()).hexdigest()
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    weights, meta_path = cache / f"lenet-{key[:24]}.safetensors", cache / f"lenet-{key[:24]}.json"
    c, h, _ = reference.image_shape
    model = LeNet(c, h, reference.num_classes)
    if weights.exists() and meta_path.exists():
        model.load_state_dict(load_file(str(weights)))
        return model.eval(), {**json.loads(meta_path.read_text()), "cached": True}
    model = train_fixed(
        reference.images[fit],
        reference.labels[fit],
        reference.num_classes,
        "lenet",
        schedule,
        seed,
        progress,
        desc="FD-LeNet features",
    )
    info = {
        "version": VERSION,
        "n_reference": len(reference),
        "epochs": epochs,
        "schedule": schedule.describe(),
        "val_accuracy": (
            accuracy(model, reference.images[val], reference.labels[val]) if n_val else math.nan
        ),
        "seed": seed,
    }  # no cache path: its name is derived from the reference images' fingerprint
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_path(weights) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    with atomic_path(meta_path) as tmp:
        tmp.write_text(json.dumps(info, indent=2))
    return model.eval(), {**info, "cached": False}


features = embed  # N x 128 float64 features of uint8 images
