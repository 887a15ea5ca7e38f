"""Conditional VAE, trained privately with DP-SGD on encoder *and* decoder.

Both halves read private images (the decoder reconstructs them), so unlike the GAN's generator the
decoder is not post-processing: one Opacus-wrapped module holds both and every parameter gets
per-sample clipping and noise. GroupNorm throughout (BatchNorm mixes samples and breaks DP-SGD).
Released weights: the EMA decoder only; sampling draws z ~ N(0, I) and decodes. Unit of privacy:
one training image together with its label.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import ModelWithEMA
from .engine import ema_copy
from .generator import group_norm, halvings


class Encoder(nn.Module):
    def __init__(self, channels: int, size: int, num_classes: int, width: int, z_dim: int):
        super().__init__()
        k = halvings(size)
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, 1, 1), nn.SiLU()]
        c = width
        for _ in range(k):
            layers += [nn.Conv2d(c, 2 * c, 4, 2, 1), group_norm(2 * c), nn.SiLU()]
            c *= 2
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.embed = nn.Embedding(num_classes, 32)
        self.head = nn.Linear(c * (size >> k) ** 2 + 32, 2 * z_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(torch.cat([self.features(x), self.embed(y)], 1)).chunk(2, 1)
        return mu, logvar.clamp(-10, 10)


class Decoder(nn.Module):
    """z + class embedding -> linear -> k x (upsample conv, GroupNorm) -> pixel logits."""

    def __init__(self, channels: int, size: int, num_classes: int, width: int, z_dim: int):
        super().__init__()
        self.k = halvings(size)
        self.base, self.c0 = size >> self.k, width * 2**self.k
        self.embed = nn.Embedding(num_classes, z_dim)
        self.fc = nn.Sequential(nn.Linear(2 * z_dim, self.c0 * self.base**2), nn.SiLU())
        blocks: list[nn.Module] = []
        c = self.c0
        for _ in range(self.k):
            blocks += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1), group_norm(c // 2), nn.SiLU()]
            c //= 2
        self.blocks = nn.Sequential(*blocks, nn.Conv2d(c, channels, 3, 1, 1))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, self.embed(y)], 1)).view(-1, self.c0, self.base, self.base)
        return self.blocks(h)


class CVAE(nn.Module):
    """``forward(x, y)`` is the per-image negative ELBO per pixel (x in -1..1, Bernoulli pixels)."""

    def __init__(self, channels, size, num_classes, width, z_dim, beta):
        super().__init__()
        self.encoder = Encoder(channels, size, num_classes, width, z_dim)
        self.decoder = Decoder(channels, size, num_classes, width, z_dim)
        self.beta = beta

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.encoder(x, y)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        logits = self.decoder(z, y)
        target = (x + 1) / 2
        rec = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).sum(1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
        return (rec + self.beta * kl) / x.shape[1:].numel()  # also for an empty Poisson batch


@dataclass
class VAEConfig:
    z_dim: int = 16
    width: int = 32  # encoder/decoder channels at full resolution
    beta: float = 1.0  # KL weight
    batch_size: int = 256  # expected (Poisson) batch
    epochs: float = 60.0  # expected passes over the private data
    lr: float = 2e-3
    ema: float = 0.995  # EMA of the weights (post-processing, free); 0 disables
    temperature: float = 0.8  # z ~ N(0, t^2 I) when sampling (post-processing)


class VAESynthesizer(ModelWithEMA):
    """``dpvae`` (DP-SGD on encoder + decoder) and ``vae`` (the same model, no privacy)."""

    name, twin, config_class = "dpvae", "vae", VAEConfig
    federable = True

    def __init__(self, image_shape, num_classes, config=None, private=None, name=None):
        super().__init__(image_shape, num_classes, config, private, name)
        c, h, _ = self.image_shape
        cfg = self.config
        self.model = CVAE(c, h, num_classes, cfg.width, cfg.z_dim, cfg.beta)
        self.ema = ema_copy(self.model)

    # --- what is released: the EMA decoder (the encoder is not needed to sample) -------------
    def released_modules(self) -> dict[str, nn.Module]:
        return {"decoder": self.ema.decoder}

    def draw(self, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn(len(y), self.config.z_dim, generator=generator) * self.config.temperature
        return 2 * torch.sigmoid(self.ema.decoder(z.to(y.device), y)) - 1
