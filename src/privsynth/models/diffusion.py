"""Small conditional diffusion model trained the DPDM way (Dockhorn, Cao, Vahdat, Kreis,
"Differentially Private Diffusion Models", TMLR 2023).

- Denoiser: EDM preconditioning (Karras et al. 2022) around a small U-Net (GroupNorm, no attention)
  sized for 8x8 to 32x32 images: one resolution level per halving, at most three.
- DP-SGD on the whole network with *noise multiplicity*: each private image is noised at K
  levels in one forward pass, its K per-row gradients averaged before clipping
  (``engine.merge_grad_samples``): a lower-variance gradient at no privacy cost.
- Noise levels ln(sigma) ~ N(p_mean, p_std^2), the EDM/DPDM MNIST setting (nv-tlabs/DPDM
  configs/mnist_28/train_eps_*.yaml); classifier-free guidance (labels dropped with probability
  ``p_uncond`` in training); sampling by deterministic DDIM (Euler steps of the probability-flow
  ODE on the EDM sigma schedule), with few steps so it runs on CPU.
Released weights: the EMA denoiser. Unit of privacy: one training image with its label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .base import ModelWithEMA
from .engine import ema_copy
from .generator import group_norm, halvings

SIGMA_DATA = 0.5


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int):
        super().__init__()
        self.norm1, self.conv1 = group_norm(cin), nn.Conv2d(cin, cout, 3, 1, 1)
        self.emb = nn.Linear(emb, cout)
        self.norm2, self.conv2 = group_norm(cout), nn.Conv2d(cout, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(e)[:, :, None, None]
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


class UNet(nn.Module):
    """``F(x, c_noise, y)``: levels with one ResBlock each, stride-2 down, nearest-neighbour up."""

    def __init__(self, channels: int, size: int, num_classes: int, width: int):
        super().__init__()
        levels = min(halvings(size), 2) + 1
        chans = [width * m for m in (1, 2, 2)[:levels]]
        e = 4 * width
        self.width = width
        self.time = nn.Sequential(nn.Linear(width, e), nn.SiLU(), nn.Linear(e, e))
        self.label = nn.Embedding(num_classes + 1, e)  # index num_classes = "no label" (CFG)
        self.inp = nn.Conv2d(channels, chans[0], 3, 1, 1)
        self.down = nn.ModuleList(
            ResBlock(a, b, e) for a, b in zip([chans[0]] + chans[:-1], chans, strict=True)
        )
        self.pool = nn.ModuleList(nn.Conv2d(c, c, 3, 2, 1) for c in chans[:-1])
        self.mid = ResBlock(chans[-1], chans[-1], e)
        self.up = nn.ModuleList(
            ResBlock(2 * c, c_out, e)
            for c, c_out in zip(chans[::-1], chans[::-1][1:] + [chans[0]], strict=True)
        )
        self.out = nn.Sequential(
            group_norm(chans[0]), nn.SiLU(), nn.Conv2d(chans[0], channels, 3, 1, 1)
        )

    def embed_noise(self, c_noise: torch.Tensor) -> torch.Tensor:
        half = self.width // 2
        freqs = torch.exp(-math.log(1e4) * torch.arange(half, device=c_noise.device) / half)
        ang = c_noise[:, None] * freqs[None] * 100
        return torch.cat([ang.cos(), ang.sin()], 1)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        e = self.time(self.embed_noise(c_noise)) + self.label(y)
        h, skips = self.inp(x), []
        for i, block in enumerate(self.down):
            h = block(h, e)
            skips.append(h)
            if i < len(self.pool):
                h = self.pool[i](h)
        h = self.mid(h, e)
        for block in self.up:
            skip = skips.pop()
            if h.shape[-1] != skip.shape[-1]:
                h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = block(torch.cat([h, skip], 1), e)
        return self.out(h)


class Denoiser(nn.Module):
    """EDM preconditioning: ``D(x; sigma, y) = c_skip x + c_out F(c_in x; ln(sigma)/4, y)``.

    ``forward(x, y)`` is the training loss *per row*, with each image expanded into
    ``multiplicity`` noised copies laid out image-major (rows i*K .. i*K+K-1 are image i).
    """

    def __init__(self, channels, size, num_classes, width, multiplicity, p_mean, p_std, p_uncond):
        super().__init__()
        self.net = UNet(channels, size, num_classes, width)
        self.num_classes, self.k = num_classes, multiplicity
        self.p_mean, self.p_std, self.p_uncond = p_mean, p_std, p_uncond

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        s = sigma.view(-1, 1, 1, 1)
        c_in = 1 / (s**2 + SIGMA_DATA**2).sqrt()
        c_skip = SIGMA_DATA**2 / (s**2 + SIGMA_DATA**2)
        c_out = s * SIGMA_DATA / (s**2 + SIGMA_DATA**2).sqrt()
        return c_skip * x + c_out * self.net(c_in * x, sigma.log() / 4, y)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, y = x.repeat_interleave(self.k, 0), y.repeat_interleave(self.k, 0)
        sigma = (torch.randn(len(x), device=x.device) * self.p_std + self.p_mean).exp()
        drop = torch.rand(len(y), device=y.device) < self.p_uncond
        y = torch.where(drop, torch.full_like(y, self.num_classes), y)
        noised = x + torch.randn_like(x) * sigma.view(-1, 1, 1, 1)
        weight = (sigma**2 + SIGMA_DATA**2) / (sigma * SIGMA_DATA) ** 2
        err = (self.denoise(noised, sigma, y) - x).pow(2).flatten(1).mean(1)
        return weight * err


@dataclass
class DiffusionConfig:
    width: int = 32  # U-Net channels at full resolution (x1, x2, x2 per level)
    multiplicity: int = 4  # K noise levels per private image inside one per-sample gradient
    p_mean: float = -1.2  # ln(sigma) ~ N(p_mean, p_std^2) in training (DPDM's MNIST setting)
    p_std: float = 1.2
    p_uncond: float = 0.1  # label dropout for classifier-free guidance
    batch_size: int = 256  # expected (Poisson) batch of private images
    epochs: float = 30.0  # expected passes over the private data
    lr: float = 1e-3
    ema: float = 0.999  # EMA of the weights (with warm-up; post-processing, free)
    sample_steps: int = 20  # DDIM (deterministic Euler) steps at sampling
    guidance: float = 1.0  # classifier-free guidance weight w at sampling (0 = none)
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0


class DiffusionSynthesizer(ModelWithEMA):
    """``dpdiffusion`` (DPDM: DP-SGD + noise multiplicity) and ``diffusion`` (no privacy)."""

    name, twin, config_class = "dpdiffusion", "diffusion", DiffusionConfig
    federable = True
    sample_batch = 512

    def __init__(self, image_shape, num_classes, config=None, private=None, name=None):
        super().__init__(image_shape, num_classes, config, private, name)
        c, h, _ = self.image_shape
        cfg = self.config
        if cfg.multiplicity < 1 or cfg.sample_steps < 1:
            raise ConfigError("multiplicity and sample_steps must be >= 1")
        self.multiplicity = cfg.multiplicity
        self.model = Denoiser(
            c, h, num_classes, cfg.width, cfg.multiplicity, cfg.p_mean, cfg.p_std, cfg.p_uncond
        )
        self.ema = ema_copy(self.model)

    # --- DP-SGD hooks: the whole denoiser reads private images --------------------------------
    def check_privacy(self, spec) -> None:
        if self.multiplicity > 1 and spec.grad_sample_mode == "ew":
            raise ConfigError(
                "noise multiplicity needs per-layer grad samples; use "
                "--grad-sample-mode hooks or functorch (or --set multiplicity=1)"
            )

    # --- sampling -----------------------------------------------------------------------------
    def sigmas(self) -> torch.Tensor:
        cfg = self.config
        i = torch.arange(cfg.sample_steps, dtype=torch.float64) / max(1, cfg.sample_steps - 1)
        lo, hi = cfg.sigma_min ** (1 / cfg.rho), cfg.sigma_max ** (1 / cfg.rho)
        s = (hi + i * (lo - hi)) ** cfg.rho
        return torch.cat([s, torch.zeros(1, dtype=torch.float64)]).float()

    def _guided(self, x: torch.Tensor, sigma: float, y: torch.Tensor) -> torch.Tensor:
        s = torch.full((len(x),), sigma, device=x.device)
        w = self.config.guidance
        if w == 0:
            return self.ema.denoise(x, s, y)
        both = self.ema.denoise(
            torch.cat([x, x]),
            torch.cat([s, s]),
            torch.cat([y, torch.full_like(y, self.num_classes)]),
        )
        cond, uncond = both.chunk(2)
        return (1 + w) * cond - w * uncond

    def draw(self, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        sig = self.sigmas().tolist()
        x = (torch.randn(len(y), *self.image_shape, generator=generator) * sig[0]).to(y.device)
        # DDIM = Euler on the probability-flow ODE
        for s, s_next in zip(sig[:-1], sig[1:], strict=True):
            d = (x - self._guided(x, s, y)) / s
            x = x + (s_next - s) * d
        return x.clamp(-1, 1)

    def released_modules(self) -> dict[str, nn.Module]:
        """The released weights: the EMA denoiser."""
        return {"ema": self.ema}
