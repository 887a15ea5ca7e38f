"""The fidelity feature space: where FD, KID and precision / recall / density / coverage are read.

A LeNet trained on real held-out images (`features`) only sees what separates the classes: on
colour data, blurred and saturated colour-noise blobs with no object in them can land among real
images there (CIFAR blobs once read precision 0.89 / recall 0.94; on the procedural colour set of
tests/evaluate/test_feature_space.py every blob reads as real). For colour images the space is
therefore the LeNet features next to two blocks that need no training and no downloaded weights:

- ``random_conv``: a fixed random-init wide conv net (seeded; random conv features are a known
  reasonable no-pretraining choice), mean- and max-pooled at two depths: edges, textures, colour
  contrasts at several scales;
- ``colour_edge``: per-channel and saturation histograms, a gradient-magnitude histogram of the
  luminance and a small oriented-derivative energy bank: how colourful, how smooth, how edged.

Each block is standardised on the real set the space is fitted on, then scaled by 1/sqrt(its
live width) so every block carries the same expected squared distance and none dominates the
k-NN balls of PRDC. Greyscale keeps the LeNet space (`default_space`): on digits the extra blocks
make a second real sample read less real (tests/evaluate/test_feature_space.py), with no colour
to see.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import ConfigError
from .classifier import LeNet, to_tensor
from .features import features

VERSION = "fidelity-space/1"
SPACES = ("lenet", "lenet+colour")


def random_conv_features(images: np.ndarray, seed: int = 0, width: int = 64) -> np.ndarray:
    """Mean- and max-pooled activations of a fixed random conv net (weights drawn from ``seed``).

    Two 3x3 conv layers (``width`` and 2 x ``width`` channels, ReLU, 2x2 average pool between):
    N x 6 x width float64. Deterministic for a seed and independent of the data."""
    c = images.shape[1]
    g = torch.Generator().manual_seed(seed)
    # He-scaled weights keep activations at unit scale through both layers
    w1 = torch.randn(width, c, 3, 3, generator=g) * (2.0 / (9 * c)) ** 0.5
    w2 = torch.randn(2 * width, width, 3, 3, generator=g) * (2.0 / (9 * width)) ** 0.5
    b1 = torch.randn(width, generator=g) * 0.1
    b2 = torch.randn(2 * width, generator=g) * 0.1
    out = []
    with torch.no_grad():
        for x in to_tensor(images).split(512):
            h1 = F.relu(F.conv2d(x, w1, b1, padding=1))
            h2 = F.relu(
                F.conv2d(F.avg_pool2d(h1, 2) if h1.shape[-1] >= 4 else h1, w2, b2, padding=1)
            )
            out.append(
                torch.cat([h1.mean((2, 3)), h1.amax((2, 3)), h2.mean((2, 3)), h2.amax((2, 3))], 1)
            )
    if not out:
        return np.zeros((0, 6 * width), np.float64)
    return torch.cat(out).double().numpy()


def colour_edge_features(images: np.ndarray, bins: int = 8) -> np.ndarray:
    """Colour and edge statistics of uint8 N x C x H x W images (N x D float64): per-channel
    intensity histograms, a saturation histogram (colour only), a log gradient-magnitude
    histogram of the luminance, and the mean energy of horizontal / vertical / diagonal
    first derivatives and of the Laplacian."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float() / 255.0
    n, c = x.shape[:2]
    if n == 0:
        return np.zeros((0, 0), np.float64)
    edges = torch.linspace(0, 1, bins + 1)[1:-1]
    blocks = [_hist(x[:, ch], edges, bins) for ch in range(c)]
    if c == 3:
        mx, mn = x.amax(1), x.amin(1)
        blocks.append(_hist((mx - mn) / (mx + 1e-3), edges, bins))
        lum = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    else:
        lum = x.mean(1)
    lum = lum[:, None]
    kernels = torch.tensor(
        [
            [[0, 0, 0], [-1, 0, 1], [0, 0, 0]],
            [[0, -1, 0], [0, 0, 0], [0, 1, 0]],
            [[-1, 0, 0], [0, 0, 0], [0, 0, 1]],
            [[0, 0, -1], [0, 0, 0], [1, 0, 0]],
            [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
        ],
        dtype=torch.float32,
    )[:, None]
    d = F.conv2d(F.pad(lum, (1, 1, 1, 1), mode="replicate"), kernels)
    mag = (d[:, 0] ** 2 + d[:, 1] ** 2).sqrt()
    # log scale: natural images' gradients span decades; blurred noise sits at the bottom
    log_edges = torch.linspace(-3.0, 0.0, bins + 1)[1:-1]
    blocks.append(_hist(torch.log10(mag + 1e-3), log_edges, bins))
    blocks.append(d.pow(2).mean((2, 3)).add(1e-6).log())
    if c == 3:  # colour contrast between neighbours: saturated smooth blobs have little
        dc = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean((2, 3))
        blocks.append(dc.add(1e-3).log())
    return torch.cat(blocks, 1).double().numpy()


def _hist(v: torch.Tensor, edges: torch.Tensor, bins: int) -> torch.Tensor:
    """Per-image histogram (fractions) of the values of ``v`` (N x H x W) over ``edges``."""
    idx = torch.bucketize(v.reshape(len(v), -1).contiguous(), edges)
    counts = torch.zeros(len(v), bins).scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float))
    return counts / idx.shape[1]


class FeatureSpace:
    """A fitted fidelity feature space: call it on uint8 images to get N x D float64 features.

    ``name`` is ``"lenet"`` (the trained LeNet's 128 features, unchanged) or ``"lenet+colour"``
    (LeNet, random conv and colour/edge blocks, each standardised on the real images given to
    `fit` and weighted equally)."""

    def __init__(self, extractor: LeNet, name: str = "lenet", seed: int = 0):
        if name not in SPACES:
            raise ConfigError(f"feature space {name!r}: choose one of {', '.join(SPACES)}")
        self.extractor, self.name, self.seed = extractor, name, seed
        self._stats: dict[str, tuple[np.ndarray, np.ndarray]] | None = None

    def blocks(self, images: np.ndarray) -> dict[str, np.ndarray]:
        out = {"lenet": features(self.extractor, images)}
        if self.name == "lenet+colour":
            out["random_conv"] = random_conv_features(images, self.seed)
            out["colour_edge"] = colour_edge_features(images)
        return out

    def fit(self, real_images: np.ndarray) -> "FeatureSpace":
        """Standardise every block on these real images (the set the others are compared to)."""
        self._stats = {}
        if self.name == "lenet":  # used as is: nothing to fit
            return self
        for k, f in self.blocks(real_images).items():
            sd = f.std(0)
            live = sd > 1e-8
            # a dimension constant on real images (a dead ReLU) is left unscaled, and the block's
            # weight counts its live dimensions only, so every block has unit mean squared norm
            scale = np.where(live, sd, 1.0) * np.sqrt(max(int(live.sum()), 1))
            self._stats[k] = (f.mean(0), scale)
        return self

    def __call__(self, images: np.ndarray) -> np.ndarray:
        blocks = self.blocks(images)
        if self.name == "lenet":  # the historical space, bit for bit
            return blocks["lenet"]
        if not self._stats:
            raise RuntimeError("FeatureSpace.fit(real_images) first")
        return np.concatenate(
            [(f - self._stats[k][0]) / self._stats[k][1] for k, f in blocks.items()], 1
        )

    def info(self) -> dict:
        blocks = {"lenet": "trained FD-LeNet, 128 features"}
        if self.name == "lenet+colour":
            blocks["random_conv"] = f"fixed random conv net (seed {self.seed}), pooled"
            blocks["colour_edge"] = "channel / saturation / gradient histograms, derivative energy"
        return {
            "name": self.name,
            "version": VERSION,
            "blocks": blocks,
            "standardised": self.name != "lenet",
        }


def default_space(channels: int) -> str:
    """``lenet+colour`` for colour images, ``lenet`` for greyscale."""
    return "lenet+colour" if channels == 3 else "lenet"


def fitted_space(
    extractor: LeNet, real_images: np.ndarray, name: str | None = None, seed: int = 0
) -> FeatureSpace:
    """The space for ``real_images``' channel count (or ``name``), fitted on them."""
    space = FeatureSpace(extractor, name or default_space(real_images.shape[1]), seed)
    return space.fit(real_images)
