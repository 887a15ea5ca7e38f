"""``--warmup merf``: a warm-up set drawn from a one-shot DP-MERF release.

``--warmup central`` releases each class's mean of low-pass images: a mean embedding whose feature
map is the identity on a coarse grid. DP-MERF's random Fourier features (models/merf.py) carry much
more of a class's shape for the same sensitivity, and a generator fitted to them draws varied,
class-correct images. Those images are a better start for a DP-SGD model than a few augmented
central images: on MNIST-10k the DP-GAN's own DP-SGD phase attaches the class too slowly at CPU
budgets (docs/gan.md, "MNIST-10k tuning study").

What is released: exactly what ``privsynth train --method dpmerf`` releases (the per-class sum of
unit-norm random-feature vectors, L2 sensitivity 1, one Gaussian release with OpenDP noise), with
the method's recommended configuration for the data size. It is one full-batch entry
``(sigma, 1.0, 1)`` at the head of the DP-SGD accountant's history, like the central release.
Everything after the release (fitting the MERF generator, sampling it) is post-processing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..data import ImageDataset
from .base import TrainContext
from .defaults import recommended_config
from .merf import MERFSynthesizer, gaussian_noise_release

NORM = 1.0  # each image's feature vector has this L2 norm: the release's sensitivity


def merf_for(like: ImageDataset, steps: int | None = None) -> MERFSynthesizer:
    """The DP-MERF model the release is made for: its defaults for this many images (``steps``:
    the generator's ceiling, post-processing only; the release does not depend on it)."""
    cfg = recommended_config("dpmerf", len(like))
    if steps is not None:
        cfg["steps"] = steps
    return MERFSynthesizer(like.image_shape, like.num_classes, cfg)


def release_embedding(train_set: ImageDataset, sigma: float) -> torch.Tensor:
    """The one private step: the noisy feature-by-class sum ``S + N(0, sigma^2)``."""
    total = merf_for(train_set).embedding_sum(train_set, NORM)
    return gaussian_noise_release(total, sigma * NORM).float()


def merf_warmup_set(
    released: torch.Tensor,
    like: ImageDataset,
    n: int,
    ctx: TrainContext,
    steps: int | None = None,
) -> tuple[ImageDataset, dict]:
    """Post-processing: fit the MERF generator to ``released`` and draw ``n`` class-balanced
    images from it. Returns the set and the generator fit's metrics (steps, loss, seconds)."""
    merf = merf_for(like, steps)
    fit = merf.fit_released(
        released,
        None,
        None,
        TrainContext(privacy=None, seed=ctx.seed, device=ctx.device, progress=ctx.progress),
    )
    labels = np.arange(n) % like.num_classes
    images = merf.sample(n, labels=labels, seed=ctx.seed + 7919)
    data = ImageDataset(images, labels, list(like.class_names), name="warmup-merf")
    return data, dict(fit.metrics)


def phase_set(
    state: dict,
    sigma: float,
    config,
    train_set: ImageDataset,
    ctx: TrainContext,
    out: Path,
    before_release: Callable[[], None],
    after_release: Callable[[], None],
    save: Callable[[], None],
) -> ImageDataset:
    """The warm-up phase's set: released once (booked first), fitted and drawn once, all kept in
    the warm-up ``state`` (the fit takes minutes; a resumed run reuses its images), and shown in
    ``warmup.png``. ``config``: the run's `WarmupConfig` (images, merf_steps)."""
    merf = state.setdefault("merf", {"sigma": float(sigma)})
    if "released" not in merf:
        before_release()
        merf["released"] = release_embedding(train_set, sigma)
        after_release()
        save()
    if "images" not in merf:
        n = config.images or len(train_set)
        data, fit = merf_warmup_set(merf["released"], train_set, n, ctx, steps=config.merf_steps)
        merf.update(
            images=torch.from_numpy(data.images), labels=torch.from_numpy(data.labels), fit=fit
        )
        save()
    data = ImageDataset(
        merf["images"].numpy(),
        merf["labels"].numpy(),
        list(train_set.class_names),
        name="warmup-merf",
    )
    if not (Path(out) / "warmup.png").exists():
        from ..report import save_grid

        save_grid(
            Path(out) / "warmup.png", data.images, data.labels, data.num_classes, per_class=10
        )
    return data
