"""The warm-up's one private release: per-class "central images" (noisy class means), after
DP-FETA (Li et al., IEEE S&P 2025); the full description: docs/warmup.md, "--warmup central".

Each private image is area-averaged to ``size x size``, shifted to -0.5..0.5 and clipped to L2
norm ``clip``; its feature ``v = [a * x_low / clip, c]`` (``a^2 + c^2 = 1``, ``c`` =
``count_weight``) has ``||v|| <= 1`` and makes the release carry noisy class counts too. Per class
the sum of the ``v_i`` is taken: adding or removing one image changes one row by ``v_i``, so the
L2 sensitivity is 1. Released: sums + N(0, sigma^2) per entry (OpenDP, OS CSPRNG), ``queries``
times on Poisson samples at ``sample_rate`` (once on the whole set by default). Accounting: the
Opacus history entry ``(sigma, q, queries)`` that opens DP-SGD's accountant (``PrivacySpec.prior``);
everything computed from the noisy sums afterwards is post-processing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .accounting import calibrate_noise
from .mechanisms import gaussian_noise_release
from .release import Release, gaussian


@dataclass
class CentralRelease:
    """The released central images (post-processed noisy means) and how they were released."""

    images: np.ndarray  # K * queries x C x size x size, float pixels 0..1 (not clamped)
    labels: np.ndarray  # class of each central image
    counts: np.ndarray  # noisy class counts, same order
    sigma: float
    sample_rate: float
    queries: int
    size: int
    clip: float
    count_weight: float

    @property
    def release(self) -> Release:
        """The ``queries`` Gaussian draws as one `Release`, with the count its sums carry."""
        drawn = gaussian("warmup.central", self.sigma, 1.0, self.sample_rate, self.queries)
        count = float(np.sum(self.counts)) / (self.queries * self.sample_rate)
        return drawn.with_count(count, COUNT_HOW)

    @property
    def history(self) -> list[tuple[float, float, int]]:
        return self.release.history


COUNT_HOW = "the central release's noisy class counts, summed and divided by queries x sample rate"


def max_norm(channels: int, size: int) -> float:
    """The largest L2 norm of a ``channels x size x size`` image with pixels in -0.5..0.5."""
    return 0.5 * math.sqrt(channels * size * size)


def check_settings(
    size: int, sample_rate: float, queries: int, count_weight: float, clip: float | None
) -> None:
    if size < 1:
        raise ConfigError(f"warm-up size must be >= 1 pixel, got {size}; e.g. --warmup-set size=14")
    if not 0 < sample_rate <= 1:
        raise ConfigError(f"warm-up sample_rate must lie in (0, 1], got {sample_rate}")
    if queries < 1:
        raise ConfigError(f"warm-up queries must be >= 1, got {queries}")
    if not 0 < count_weight < 1:
        raise ConfigError(f"warm-up count_weight must lie in (0, 1), got {count_weight}")
    if clip is not None and not (clip > 0 and math.isfinite(clip)):
        raise ConfigError(f"warm-up clip must be a finite norm > 0, got {clip}")


def central_sigma(
    epsilon: float,
    delta: float,
    sample_rate: float = 1.0,
    queries: int = 1,
    accountant: str = "prv",
) -> float:
    """Sigma at which the release alone spends ``epsilon`` (Opacus' calibration)."""
    return calibrate_noise(epsilon, delta, sample_rate, queries, accountant)


def features(images: np.ndarray, size: int, clip: float, count_weight: float) -> torch.Tensor:
    """``v_i = [a * clip_norm(x_low) / clip, c]`` per image, each of L2 norm <= 1 (float64)."""
    x = torch.from_numpy(images).double() / 255.0 - 0.5
    low = F.adaptive_avg_pool2d(x, size).flatten(1)
    norms = low.norm(dim=1, keepdim=True).clamp_min(1e-12)
    low = low * (clip / norms).clamp(max=1.0) / clip  # ||low|| <= 1 after this
    a = math.sqrt(1.0 - count_weight**2)
    ones = torch.full((len(low), 1), count_weight, dtype=torch.float64)
    return torch.cat([a * low, ones], 1)


def release_central(
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    sigma: float,
    size: int,
    sample_rate: float = 1.0,
    queries: int = 1,
    count_weight: float = 0.3,
    clip: float | None = None,
) -> CentralRelease:
    """Noisy per-class means of ``images`` (uint8 N x C x H x W), see the module doc: the only
    private step is ``queries`` Gaussian releases of the class sums (sensitivity 1, noise std
    ``sigma``), each on a Poisson sample drawn from the OS entropy when ``sample_rate < 1``."""
    from .dpsgd import private_generator

    channels = images.shape[1]
    if size > min(images.shape[2:]):
        raise ConfigError(
            f"warm-up size {size} exceeds the {images.shape[2]}x{images.shape[3]} "
            "images; pick a size up to the image side, e.g. half of it"
        )
    clip = float(clip) if clip is not None else max_norm(channels, size)
    check_settings(size, sample_rate, queries, count_weight, clip)
    v = features(images, size, clip, count_weight)
    a = math.sqrt(1.0 - count_weight**2)
    labels = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    means, counts = [], []
    picker = private_generator("cpu")
    for _ in range(queries):
        rows = (
            torch.rand(len(v), generator=picker) < sample_rate
            if sample_rate < 1
            else torch.ones(len(v), dtype=torch.bool)
        )
        sums = torch.zeros(num_classes, v.shape[1], dtype=torch.float64)
        sums.index_add_(0, labels[rows], v[rows])
        noisy, _ = gaussian_noise_release(sums, sigma)  # the private step (its Release: .release)
        # Post-processing from here on.
        count = noisy[:, -1] / count_weight
        mean = noisy[:, :-1] / a * clip / count.clamp_min(1.0)[:, None]
        means.append(mean.view(num_classes, channels, size, size) + 0.5)
        counts.append(count.numpy())
    return CentralRelease(
        torch.cat(means).float().numpy(),
        np.tile(np.arange(num_classes), queries),
        np.concatenate(counts),
        float(sigma),
        float(sample_rate),
        int(queries),
        int(size),
        clip,
        float(count_weight),
    )
