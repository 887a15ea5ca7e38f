"""Conditional DCGAN, trained privately the way "Private GANs, revisited" (Bie, Kamath, Zhang,
TMLR 2023) does: many discriminator steps per generator step and large expected batches.

Only the discriminator reads private images, so only it is trained with DP-SGD (Opacus). The
generator learns from the discriminator's outputs on *fake* images: post-processing of a DP
model, which spends no extra privacy. Unit of privacy: one training image together with its label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import to_unit_range
from ..errors import ConfigError
from ..privacy import dpsgd
from .base import Method, module_state, strip_prefix
from .engine import ema_copy, update_ema
from .generator import Generator, check_generator_weights, check_padding, group_norm, halvings


class Discriminator(nn.Module):
    """Conv stack with GroupNorm (DP-SGD needs per-sample gradients: no BatchNorm) and a
    projection head (Miyato & Koyama 2018): score = w . h + embed(y) . pool(h).

    The class embedding meets the globally pooled features (``c`` numbers), not the flattened map:
    a per-sample gradient of a ``K x c*s*s`` embedding would dominate the DP step's cost.
    """

    def __init__(self, channels: int, size: int, num_classes: int, width: int, aux: bool = False):
        super().__init__()
        # DCGAN-style: stride-2 from the first layer. A stride-1 stem at full resolution would
        # make the per-sample gradients of the next layer (im2col over 28x28) the step's main cost.
        k = halvings(size)
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = width
        for _ in range(k - 1):
            layers += [nn.Conv2d(c, 2 * c, 4, 2, 1), group_norm(2 * c), nn.LeakyReLU(0.2)]
            c *= 2
        layers += [nn.Conv2d(c, c, 3, 1, 1), group_norm(c), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.out = nn.Linear(c * (size >> k) ** 2, 1)
        self.embed = nn.Embedding(num_classes, c)
        # AC-GAN head (Odena et al. 2017): class logits from the pooled features. Built only when
        # used: Book-Keeping needs every trainable layer of the forward to receive a gradient.
        self.classify = nn.Linear(c, num_classes) if aux else None

    def forward(self, x: torch.Tensor, y: torch.Tensor, with_classes: bool = False):
        """Real/fake score per row; with ``with_classes`` also the auxiliary class logits."""
        h = self.features(x)
        pooled = h.mean((2, 3))
        score = self.out(h.flatten(1)).squeeze(1) + (self.embed(y) * pooled).sum(1)
        if with_classes:
            return score, self.classify(pooled)
        return score


@dataclass
class GANConfig:
    """Defaults: see docs/gan.md (the literature + tuning on public digits / MNIST test data)."""

    z_dim: int = 32
    width: int = 32  # discriminator channels after the first (stride-2) layer
    g_width: int = 32  # generator channels at full resolution
    g_padding: str = "zeros"  # or "reflect" (dpgan's colour default; models/defaults.py)
    batch_size: int = 64  # expected (Poisson) number of private images per D step
    epochs: float = 250.0  # expected passes over the private data; D steps = epochs / q
    n_d: int = 5  # discriminator steps per generator step
    lr_d: float = 2e-4
    lr_g: float = 2e-4
    beta1: float = 0.5  # Adam beta1 for both networks
    ema: float = 0.995  # generator EMA (post-processing, free); 0 disables
    loss: str = "bce"  # "bce" (non-saturating) or "hinge"
    # Weight of the auxiliary-classifier loss (AC-GAN): D also learns to name the class of *real*
    # images (inside the same clipped per-example gradient) and G to make fakes it names right.
    # 0 = plain projection discriminator. Why: the MNIST-10k study's DP-GAN drew digits of the
    # wrong class; the projection term alone attaches the class too slowly at CPU budgets.
    aux: float = 0.0
    # Snapshot mixture (post-processing, free): keep the EMA generator at `snapshots` points, the
    # last at the end and each earlier one `snapshot_gap` of the D steps before the next, and
    # draw each sample from one of the `sample_snapshots` latest (default: all kept). Why: a DP-GAN
    # drifts between modes late in training (docs/gan.md "fifth round"); 1 = the final EMA only.
    snapshots: int = 1
    snapshot_gap: float = 0.1
    sample_snapshots: int | None = None

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown GAN loss '{self.loss}'; choose one of {LOSSES}")
        for name in ("batch_size", "n_d", "z_dim", "width", "g_width"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.epochs > 0:
            raise ConfigError(f"epochs must be > 0, got {self.epochs}")
        check_padding(self.g_padding)
        if not self.aux >= 0:
            raise ConfigError(f"aux must be >= 0, got {self.aux}")
        if not 0 <= self.ema < 1:
            raise ConfigError(f"ema must lie in [0, 1), got {self.ema}")
        if int(self.snapshots) < 1 or (
            self.snapshots > 1 and not 0 < self.snapshot_gap * (self.snapshots - 1) < 1
        ):
            raise ConfigError(
                f"snapshots ({self.snapshots}) must be >= 1 and (snapshots - 1) x snapshot_gap "
                f"({self.snapshot_gap}) must lie in (0, 1): the earliest snapshot is that "
                "fraction of training before the end"
            )
        mix = self.sample_snapshots  # None (all kept) skips the type check of --set values
        if mix is not None and not (isinstance(mix, int) and 1 <= mix <= self.snapshots):
            raise ConfigError(
                f"sample_snapshots must lie in 1..snapshots ({self.snapshots}), "
                f"got {self.sample_snapshots}"
            )

    def d_steps(self, n_private: int) -> int:
        return max(1, math.ceil(self.epochs / dpsgd.sample_rate(n_private, self.batch_size)))


LOSSES = ("bce", "hinge")


def d_loss_fn(kind: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-row discriminator loss averaged over rows (target 1 = real, 0 = fake)."""
    if kind == "hinge":
        return F.relu(1 - (2 * target - 1) * logits).mean()
    return F.binary_cross_entropy_with_logits(logits, target)


def g_loss_fn(kind: str, logits: torch.Tensor) -> torch.Tensor:
    if kind == "hinge":
        return -logits.mean()
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))  # non-saturating


class GANSynthesizer(Method):
    """``dpgan`` (DP-SGD on the discriminator) and ``gan`` (the same model, no privacy)."""

    name, twin, config_class = "dpgan", "gan", GANConfig
    federable = True
    federated_momentum = 0.0  # momentum on the averaged D/G game diverges (docs/federated.md)
    backward_chunk = math.inf  # the loss adds its own fake rows: one forward per batch
    loss_name, step_name = "d_loss", "D-steps"

    def __init__(self, image_shape, num_classes, config=None, private=None, name=None):
        super().__init__(image_shape, num_classes, config, private, name)
        c, h, _ = self.image_shape
        cfg = self.config
        # g_width counts channels at full resolution; they double at each lower one.
        self.generator = Generator(
            c, h, num_classes, cfg.g_width << halvings(h), cfg.z_dim, cfg.g_padding
        )
        self.discriminator = Discriminator(c, h, num_classes, cfg.width, aux=cfg.aux > 0)
        self.g_ema = ema_copy(self.generator)
        # earlier EMA snapshots, oldest first (filled during training; see GANConfig.snapshots)
        self.g_snaps = nn.ModuleList(ema_copy(self.g_ema) for _ in range(cfg.snapshots - 1))
        self.snap_at: list[int] = []
        self.has_discriminator = False  # True once trained or loaded: white-box scores need it
        self.opt_g: torch.optim.Optimizer | None = None
        self.g_loss = float("nan")

    # --- DP-SGD hooks (models/engine.py runs the loop) --------------------------------------
    def total_steps(self, n_private: int) -> int:
        cfg = self.config
        total = cfg.d_steps(n_private)
        # the D-step counts after which the earlier snapshots are taken, oldest first
        back = range(cfg.snapshots - 1, 0, -1)
        self.snap_at = [max(1, round(total * (1 - cfg.snapshot_gap * b))) for b in back]
        return total

    def check_privacy(self, spec) -> None:
        if spec.grad_sample_mode == "ew":
            raise ConfigError(
                "grad-sample mode 'ew' (expanded weights) cannot take the "
                "discriminator's label input; use --grad-sample-mode hooks"
            )

    def private_module(self) -> nn.Module:
        """Only D reads private images; G learns from D's outputs on fakes (post-processing)."""
        return self.discriminator

    def public_modules(self) -> list[nn.Module]:
        return [self.generator]

    def private_optimizer(self, module: nn.Module) -> torch.optim.Optimizer:
        cfg = self.config
        # the generator's optimizer lives as long as the discriminator's (one training segment)
        self.opt_g = torch.optim.Adam(
            self.generator.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, 0.999)
        )
        return torch.optim.Adam(module.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, 0.999))

    def private_loss(self, D: nn.Module, xr: torch.Tensor, yr: torch.Tensor) -> torch.Tensor:
        """One forward over real and fake rows: each real row gets its own clipped gradient. Fake
        rows depend only on earlier (already private) steps, so the sensitivity to one real image
        stays C; dpsgd.public_rows says how the fake rows are clipped (privacy/dpsgd.py)."""
        device = xr.device
        fake_n = dpsgd.per_process(self.config.batch_size)  # this process' share of the fakes
        with torch.no_grad():
            yf = torch.randint(0, self.num_classes, (fake_n,), device=device)
            xf = self.generator(torch.randn(fake_n, self.config.z_dim, device=device), yf)
        aux = self.config.aux
        with dpsgd.public_rows(D, len(xr)):
            out = D(torch.cat([xr, xf]), torch.cat([yr, yf]), with_classes=aux > 0)
        target = torch.cat([torch.ones(len(xr), device=device), torch.zeros(fake_n, device=device)])
        if aux == 0:
            return d_loss_fn(self.config.loss, out, target)
        logits, classes = out
        # The class loss of the real rows only, divided by all rows like the mean loss.
        ce = F.cross_entropy(classes[: len(xr)], yr, reduction="sum") / len(logits)
        return d_loss_fn(self.config.loss, logits, target) + aux * ce

    def after_step(self, step: int, last: bool, D: nn.Module) -> dict[str, float]:
        """A generator step every ``n_d`` discriminator steps (and after the last), then EMA."""
        self.has_discriminator = True
        if (step + 1) % self.config.n_d == 0 or last:
            self.g_loss = self._g_step(D)
            update_ema(self.generator, self.g_ema, self.config.ema)
        for snap, at in zip(self.g_snaps, self.snap_at, strict=False):
            if step + 1 == at:
                snap.load_state_dict(self.g_ema.state_dict())
        return {"g_loss": self.g_loss}

    def _g_step(self, D: nn.Module) -> float:
        G, cfg = self.generator, self.config
        device = next(G.parameters()).device
        hooks = getattr(D, "disable_hooks", None)
        if hooks:  # no per-sample gradients for the discriminator during the generator's step
            D.disable_hooks()
        D.requires_grad_(False)
        n = dpsgd.per_process(cfg.batch_size)  # this process' share of the fakes
        y = torch.randint(0, self.num_classes, (n,), device=device)
        fakes = G(torch.randn(n, cfg.z_dim, device=device), y)
        if cfg.aux > 0:
            logits, classes = D(fakes, y, with_classes=True)
            loss = g_loss_fn(cfg.loss, logits) + cfg.aux * F.cross_entropy(classes, y)
        else:
            loss = g_loss_fn(cfg.loss, D(fakes, y))
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        D.requires_grad_(True)
        if hooks:
            D.enable_hooks()
        return loss.item()

    def train_state(self) -> dict:
        return {
            "generator": self.generator.state_dict(),
            "g_ema": self.g_ema.state_dict(),
            "g_snaps": self.g_snaps.state_dict(),
            "opt_g": self.opt_g.state_dict(),
        }

    def load_train_state(self, state: dict) -> None:
        check_generator_weights(state["generator"], "")
        self.generator.load_state_dict(state["generator"])
        self.g_ema.load_state_dict(state["g_ema"])
        self.g_snaps.load_state_dict(state.get("g_snaps", {}))
        self.opt_g.load_state_dict(state["opt_g"])

    # --- federation ---------------------------------------------------------------------------
    def federated_modules(self) -> dict[str, nn.Module]:
        return {"g": self.generator, "d": self.discriminator}

    def after_federation(self) -> None:
        for g in (self.g_ema, *self.g_snaps):
            g.load_state_dict(self.generator.state_dict())

    # --- sampling and weights ---------------------------------------------------------------
    def draw(self, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn(len(y), self.config.z_dim, generator=generator).to(y.device)
        kept = [*self.g_snaps, self.g_ema]
        mixed = kept[-(self.config.sample_snapshots or len(kept)) :]
        if len(mixed) == 1:
            return self.g_ema(z, y)
        pick = torch.randint(0, len(mixed), (len(y),), generator=generator).to(y.device)
        out = torch.empty(len(y), *self.image_shape, device=y.device)
        for i, g in enumerate(mixed):
            rows = pick == i
            if rows.any():
                out[rows] = g(z[rows], y[rows])
        return out

    def released_modules(self) -> dict[str, nn.Module]:
        snaps = {f"g_snap{i}": g for i, g in enumerate(self.g_snaps)}
        return {"g_ema": self.g_ema, **snaps}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The EMA generator (all sampling needs) and the discriminator (trained with the same
        DP-SGD guarantee; kept so evaluation can run white-box membership scores)."""
        out = super().state_dict()
        if self.has_discriminator:
            out.update(module_state({"discriminator": self.discriminator}))
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        check_generator_weights(state, "g_ema.")
        super().load_state_dict(state)
        d = strip_prefix(state, "discriminator")
        if d:
            self.discriminator.load_state_dict(d)
            self.has_discriminator = True

    @torch.no_grad()
    def membership_scores(self, images: np.ndarray, labels: np.ndarray) -> np.ndarray | None:
        """White-box membership score: the discriminator's logit for (image, label); higher =
        "looks like training data". None when the discriminator is not available."""
        if not self.has_discriminator:
            return None
        D = self.discriminator.eval()
        device = next(D.parameters()).device
        x = torch.from_numpy(to_unit_range(images))
        y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        scores = torch.cat(
            [
                D(xb.to(device), yb.to(device)).cpu()
                for xb, yb in zip(x.split(1024), y.split(1024), strict=True)
            ]
        )
        return scores.numpy().astype(np.float64)
