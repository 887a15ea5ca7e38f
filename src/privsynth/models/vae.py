"""Conditional VAE, trained privately with DP-SGD on encoder *and* decoder.

Both halves read private images (the decoder reconstructs them), so unlike the GAN's generator the
decoder is not post-processing: one Opacus-wrapped module holds both and every parameter gets
per-sample clipping and noise. GroupNorm throughout (BatchNorm mixes samples and breaks DP-SGD).
Released weights: the EMA decoder only; sampling draws z ~ N(0, I) and decodes. Unit of privacy:
one training image together with its label.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import ImageDataset
from ..errors import ConfigError
from .base import FitResult, TrainContext, build_config
from .generator import halvings
from .sgd_loop import ema_copy, fit_dpsgd


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, c), c)


class Encoder(nn.Module):
    def __init__(self, channels: int, size: int, num_classes: int, width: int, z_dim: int):
        super().__init__()
        k = halvings(size)
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, 1, 1), nn.SiLU()]
        c = width
        for _ in range(k):
            layers += [nn.Conv2d(c, 2 * c, 4, 2, 1), _norm(2 * c), nn.SiLU()]
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
        self.base, self.c0 = size >> self.k, width * 2 ** self.k
        self.embed = nn.Embedding(num_classes, z_dim)
        self.fc = nn.Sequential(nn.Linear(2 * z_dim, self.c0 * self.base ** 2), nn.SiLU())
        blocks: list[nn.Module] = []
        c = self.c0
        for _ in range(self.k):
            blocks += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1), _norm(c // 2), nn.SiLU()]
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
    width: int = 32            # encoder/decoder channels at full resolution
    beta: float = 1.0          # KL weight
    batch_size: int = 256      # expected (Poisson) batch
    epochs: float = 60.0       # expected passes over the private data
    lr: float = 2e-3
    ema: float = 0.995         # EMA of the weights (post-processing, free); 0 disables
    temperature: float = 0.8   # z ~ N(0, t^2 I) when sampling (post-processing)


class VAESynthesizer:
    """``dpvae`` (DP-SGD on encoder + decoder) and ``vae`` (the same model, no privacy)."""

    def __init__(self, image_shape, num_classes, config=None, private=True, name="dpvae"):
        self.name, self.private = name, private
        self.image_shape, self.num_classes = tuple(image_shape), num_classes
        self.config = build_config(VAEConfig, config)
        c, h, w = self.image_shape
        if h != w:
            raise ConfigError(f"images are {h}x{w}; the VAE needs square images, pass --image-size")
        cfg = self.config
        self.model = CVAE(c, h, num_classes, cfg.width, cfg.z_dim, cfg.beta)
        self.ema = ema_copy(self.model)

    def config_dict(self) -> dict:
        return asdict(self.config)

    def fit(self, data: ImageDataset, ctx: TrainContext) -> FitResult:
        cfg = self.config
        return fit_dpsgd(self.model, self.ema, lambda m, x, y: m(x, y).mean(), data, ctx,
                         batch_size=cfg.batch_size, epochs=cfg.epochs, lr=cfg.lr,
                         ema_decay=cfg.ema, name=self.name)

    @torch.no_grad()
    def sample(self, n: int, labels: np.ndarray | None = None,
               seed: int | None = None) -> np.ndarray:
        g = torch.Generator().manual_seed(0 if seed is None else seed)
        labels = (torch.randint(0, self.num_classes, (n,), generator=g) if labels is None
                  else torch.as_tensor(np.asarray(labels), dtype=torch.long))
        dec = self.ema.decoder
        device = next(dec.parameters()).device
        out = [np.zeros((0, *self.image_shape), np.uint8)]
        for y in labels.split(1024):
            z = torch.randn(len(y), self.config.z_dim, generator=g) * self.config.temperature
            probs = torch.sigmoid(dec(z.to(device), y.to(device))).cpu().numpy()
            out.append(np.clip(np.rint(probs * 255), 0, 255).astype(np.uint8))
        return np.concatenate(out)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The released weights: the EMA decoder (the encoder is not needed to sample)."""
        return {f"decoder.{k}": v.detach().cpu() for k, v in self.ema.decoder.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.ema.decoder.load_state_dict({k[len("decoder."):]: v for k, v in state.items()
                                          if k.startswith("decoder.")})
