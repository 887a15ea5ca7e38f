"""The warm-up sets, and the options that shape them: what data warms up a DP-SGD method.

- ``--public-data PATH``: images the user declares public (no privacy claimed for them, none
  spent), in the private data's shape and label set, refused when they copy private images.
- ``--warmup central``: post-processing of DP central images (`privacy.central.release_central`,
  DP-FETA's "easy stage", what FETA pretrains on: a few noisy central images shown many times
  under RandAugment). Each released low-resolution mean is upsampled to full size, clipped to the
  pixel range, and drawn ``images / K`` times per class under a random affine map (rotation,
  shear, scale, shift) and a brightness/contrast jitter, from a generator seeded by ``--seed``.
- ``--warmup merf``: the draws of a generator trained against a DP-MERF release
  (`models.warmup_merf`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data import ImageDataset, load_dataset, resize
from ..data.overlap import THUMB_RMS, copies
from ..errors import ConfigError, DataError
from ..privacy.central import CentralRelease, check_settings


@dataclass
class WarmupConfig:
    """``--warmup-share``, ``--warmup-epochs`` and ``--warmup-set KEY=VALUE``."""

    share: float = 0.3  # the release alone spends share * epsilon (see docs/warmup.md)
    sigma: float | None = None  # fix the release's noise multiplier instead (needed with a
    #                                fixed --noise-multiplier and no --epsilon)
    size: int | None = None  # release resolution (low-pass); default half the image size
    clip: float | None = None  # L2 clip of a centred low-res image; default its largest norm
    count_weight: float = 0.3  # weight of the count entry in each image's unit vector
    sample_rate: float = 1.0  # Poisson rate per query (FETA: 0.1); 1 = the whole set
    queries: int = 1  # releases (central images per class)
    epochs: float | None = None  # pretraining passes per phase; default the method's epochs
    images: int | None = None  # size of the central / merf warm-up set; default the private set's
    augment: bool = True  # random affine + brightness/contrast on the central images

    def __post_init__(self) -> None:
        if not 0 < self.share < 1:
            raise ConfigError(f"--warmup-share must lie in (0, 1), got {self.share}")
        if self.sigma is not None and not (self.sigma > 0 and math.isfinite(self.sigma)):
            raise ConfigError(f"warm-up sigma must be a finite number > 0, got {self.sigma}")
        if self.epochs is not None and not self.epochs > 0:
            raise ConfigError(f"--warmup-epochs must be > 0, got {self.epochs}")
        if self.images is not None and self.images < 1:
            raise ConfigError(f"warm-up images must be >= 1, got {self.images}")
        check_settings(self.size or 1, self.sample_rate, self.queries, self.count_weight, self.clip)


def warmup_config(overrides: dict[str, Any] | None) -> WarmupConfig:
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    names = {f.name for f in fields(WarmupConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"unknown warm-up option(s) {unknown}; valid: {sorted(names)}")
    return WarmupConfig(**overrides)


def load_public(public_data, dataset: ImageDataset) -> tuple[ImageDataset, str | None]:
    """The user's public images in the private data's shape and label set, and their source."""
    c, h, _ = dataset.image_shape
    source = None
    if isinstance(public_data, ImageDataset):
        public = public_data
    else:
        source = "digits" if str(public_data) == "digits" else str(Path(public_data).resolve())
        try:
            public = load_dataset(public_data, image_size=h)
        except DataError as e:
            if "class list is a public input" not in str(e):
                raise
            # IDX/NPZ without a class list: the private data's (public) list, same label set.
            public = load_dataset(public_data, image_size=h, classes=list(dataset.class_names))
    if public.image_shape[1:] != (h, h):
        public = resize(public, h)
    if public.image_shape[0] != c:
        raise DataError(
            f"--public-data has {public.image_shape[0]}-channel images, the private "
            f"data {c}; convert the public images to the same colour mode"
        )
    if public.num_classes != dataset.num_classes:
        raise DataError(
            f"--public-data has {public.num_classes} classes, the private data "
            f"{dataset.num_classes}; conditional pretraining needs the same label "
            "set (relabel the public images or leave out --public-data)"
        )
    exact, near = copies(public, dataset)
    if exact or near:
        raise DataError(
            f"--public-data holds copies of the private data ({exact} identical records, "
            f"{near} images within RMS {THUMB_RMS:g} grey levels of a private image as 8x8 "
            "thumbnails); remove them or pass images that are really public (training on "
            "private images without DP voids the guarantee)"
        )
    return public, source


def full_size(release: CentralRelease, h: int, w: int) -> torch.Tensor:
    """The central images upsampled to ``h x w``, pixels 0..1."""
    x = torch.from_numpy(release.images).float()
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)


def central_warmup_set(
    release: CentralRelease, like: ImageDataset, cfg: WarmupConfig, seed: int
) -> ImageDataset:
    """Post-processing of the release: ``images`` augmented full-size copies of the central
    images, classes balanced, seeded by ``seed`` (public randomness)."""
    _, h, w = like.image_shape
    k = like.num_classes
    n = cfg.images or len(like)
    g = torch.Generator().manual_seed(seed + 7919)
    labels = torch.arange(n) % k
    # One of the central images of each image's class (queries > 1 gives several per class).
    per_class = [np.flatnonzero(release.labels == j) for j in range(k)]
    pick = torch.tensor(
        [per_class[j][i % len(per_class[j])] for i, j in enumerate(labels.tolist())]
    )
    x = full_size(release, h, w)[pick]
    if cfg.augment:
        x = augment(x, g)
    images = (x * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    return ImageDataset(images, labels.numpy(), list(like.class_names), name="warmup-central")


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Mild random affine maps and brightness/contrast jitter (FETA uses RandAugment at
    magnitude 3); pixels 0..1 in and out."""
    n = len(x)

    def uniform(a: float) -> torch.Tensor:
        return (torch.rand(n, generator=g) * 2 - 1) * a

    angle, shear = uniform(math.radians(12)), uniform(0.15)
    scale, shift = 1 + uniform(0.1), torch.stack([uniform(0.1), uniform(0.1)], 1)
    cos, sin = angle.cos() / scale, angle.sin() / scale
    theta = torch.stack(
        [torch.stack([cos, -sin + shear, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)],
        1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # Sample in "ink" space around the corner colour so the border fills like the background.
    background = x[:, :, :1, :1]
    out = F.grid_sample(x - background, grid, align_corners=False) + background
    contrast, brightness = 1 + uniform(0.2), uniform(0.08)
    return (out * contrast[:, None, None, None] + brightness[:, None, None, None]).clamp(0, 1)


def save_warmup_grid(out: Path, warmup_set: ImageDataset, central: CentralRelease | None) -> None:
    """``warmup.png``: per class (row), warm-up images, after the ``central`` images they were
    made from at full size (all DP output, covered by the run's guarantee)."""
    from ..report import save_grid

    images, labels, k = warmup_set.images, warmup_set.labels, warmup_set.num_classes
    if central is not None:
        x = full_size(central, *warmup_set.image_shape[1:])
        per = max(1, central.queries)
        shown = [np.flatnonzero(labels == j)[: 10 - min(per, 9)] for j in range(k)]
        images = np.concatenate(
            [(x * 255).round().to(torch.uint8).numpy(), *(images[i] for i in shown)]
        )
        labels = np.concatenate([central.labels, *(labels[i] for i in shown)])
        order = np.argsort(labels, kind="stable")
        images, labels = images[order], labels[order]
    save_grid(Path(out) / "warmup.png", images, labels, k, per_class=10)
