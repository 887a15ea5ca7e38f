"""A small conditional image generator, cheap enough to train for thousands of steps on a CPU.

z and the one-hot label enter together through two fully connected layers; the map is then grown
by bilinear upsampling + 3x3 convolutions (no transposed convolutions: no checkerboard artefacts,
and about a third of the cost of a DCGAN generator of the same width at 28x28).

The 3x3 convolutions pad with zeros or by reflection (``padding``). A zero border gives the edge
pixels fewer real inputs than the rest; on colour data DP-trained generators turned that into a
bright frame round every image, so dpgan pads by reflection on colour data (models/defaults.py).

Sampling runs in eval mode, so BatchNorm uses running statistics there. At initialisation those
are (mean 0, var 1) while the real pre-activations are tiny, which makes an untrained generator
map every z to nearly the same image. `Generator.calibrate` (called on construction and after
loading weights that lack statistics) runs a few forward passes in train mode so the running
statistics describe the activations they normalise: samples then differ across z from step 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, ConfigError

HIDDEN = 256  # units of the two fully connected layers
PADDINGS = ("reflect", "zeros")  # how the 3x3 convolutions pad the map (module docstring)


def halvings(size: int) -> int:
    """How many stride-2 stages take ``size`` down to a 3..7 pixel base (8->4, 28->7, 32->4)."""
    k = 0
    while size % 2 == 0 and size > 7:
        size //= 2
        k += 1
    if size > 7 or k == 0:
        raise ConfigError(
            f"image size {size << k} is not base x 2^k with base 3..7 "
            "(e.g. 8, 28, 32, 64); pass --image-size to resize"
        )
    return k


def check_padding(padding: str) -> None:
    if padding not in PADDINGS:
        raise ConfigError(f"unknown generator padding '{padding}'; choose one of {PADDINGS}")


def group_norm(c: int) -> nn.GroupNorm:
    """GroupNorm for DP-SGD networks (BatchNorm mixes samples and breaks per-sample clipping)."""
    return nn.GroupNorm(min(8, c), c)


def check_generator_weights(state: dict, prefix: str) -> None:
    """Weights of the generator before this one (``blocks.*`` / ``embed.*`` keys) get a one-line
    error instead of a key mismatch: that generator sampled one image per class; retrain."""
    if any(k.startswith((f"{prefix}blocks.", f"{prefix}embed.")) for k in state):
        raise CheckpointError(
            "these weights come from an older privsynth generator (one image "
            "per class when sampled); retrain the run with this version"
        )


class Generator(nn.Module):
    """(z, label) -> image in -1..1. ``width`` = channels at the base resolution, halved per
    upsampling (at least 8). Shared by dpgan, dpmerf and dpkernel."""

    def __init__(
        self,
        channels: int,
        size: int,
        num_classes: int,
        width: int = 32,
        z_dim: int = 32,
        padding: str = "zeros",
    ):
        super().__init__()
        check_padding(padding)
        k, hidden = halvings(size), HIDDEN
        self.base = size >> k
        self.num_classes, self.z_dim, self.width = num_classes, z_dim, width
        self.fc = nn.Sequential(
            nn.Linear(z_dim + num_classes, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, width * self.base**2),
            nn.BatchNorm1d(width * self.base**2),
            nn.ReLU(),
        )
        layers: list[nn.Module] = []
        c = width
        for _ in range(k):
            out = max(8, c // 2)
            layers += [
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(c, out, 3, padding=1, padding_mode=padding),
                nn.BatchNorm2d(out),
                nn.ReLU(),
            ]
            c = out
        layers += [nn.Conv2d(c, channels, 3, padding=1, padding_mode=padding), nn.Tanh()]
        self.conv = nn.Sequential(*layers)
        self.calibrate()

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(y, self.num_classes).to(z.dtype)
        h = self.fc(torch.cat([z, onehot], 1))
        return self.conv(h.view(-1, self.width, self.base, self.base))

    @torch.no_grad()
    def calibrate(self, batches: int = 4, n: int = 256) -> None:
        """Fill BatchNorm's running statistics from a few train-mode passes (no weights change)."""
        was_training = self.training
        device = next(self.parameters()).device
        g = torch.Generator(device=device).manual_seed(0)
        self.train()
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the calibration passes
        for _ in range(batches):
            y = torch.randint(0, self.num_classes, (n,), generator=g, device=device)
            self(torch.randn(n, self.z_dim, generator=g, device=device), y)
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = 0.1
        self.train(was_training)
