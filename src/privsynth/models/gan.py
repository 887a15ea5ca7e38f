"""Conditional DCGAN, trained privately the way "Private GANs, revisited" (Bie, Kamath, Zhang,
TMLR 2023) does: many discriminator steps per generator step and large expected batches.

Only the discriminator reads private images, so only it is trained with DP-SGD (Opacus). The
generator learns from the discriminator's outputs on *fake* images: post-processing of a DP
model, which spends no extra privacy. Unit of privacy: one training image together with its label.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..data import ImageDataset, from_unit_range, to_unit_range
from ..errors import ConfigError
from ..privacy import dpsgd
from ..privacy.accounting import AccountantState
from .base import FitResult, TrainContext, build_config, infinite
from .generator import Generator, check_generator_weights, halvings
from .progress import progress_bar


class Discriminator(nn.Module):
    """Conv stack with GroupNorm (DP-SGD needs per-sample gradients: no BatchNorm) and a
    projection head (Miyato & Koyama 2018): score = w . h + embed(y) . pool(h).

    The class embedding meets the globally pooled features (``c`` numbers), not the flattened map:
    a per-sample gradient of a ``K x c*s*s`` embedding would dominate the DP step's cost.
    """

    def __init__(self, channels: int, size: int, num_classes: int, width: int):
        super().__init__()
        # DCGAN-style: stride-2 from the first layer. A stride-1 stem at full resolution would
        # make the per-sample gradients of the next layer (im2col over 28x28) the step's main cost.
        k = halvings(size)
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = width
        for _ in range(k - 1):
            layers += [nn.Conv2d(c, 2 * c, 4, 2, 1), nn.GroupNorm(min(8, 2 * c), 2 * c),
                       nn.LeakyReLU(0.2)]
            c *= 2
        layers += [nn.Conv2d(c, c, 3, 1, 1), nn.GroupNorm(min(8, c), c), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.out = nn.Linear(c * (size >> k) ** 2, 1)
        self.embed = nn.Embedding(num_classes, c)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        pooled = h.mean((2, 3))
        return self.out(h.flatten(1)).squeeze(1) + (self.embed(y) * pooled).sum(1)


@dataclass
class GANConfig:
    """Defaults: see docs/gan.md (the literature + tuning on public digits / MNIST test data)."""

    z_dim: int = 32
    width: int = 32            # discriminator channels after the first (stride-2) layer
    g_width: int = 32          # generator channels at full resolution
    batch_size: int = 64       # expected (Poisson) number of private images per D step
    epochs: float = 250.0      # expected passes over the private data; D steps = epochs / q
    n_d: int = 5               # discriminator steps per generator step
    lr_d: float = 2e-4
    lr_g: float = 2e-4
    beta1: float = 0.5         # Adam beta1 for both networks
    ema: float = 0.995         # generator EMA (post-processing, free); 0 disables
    loss: str = "bce"          # "bce" (non-saturating) or "hinge"

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown GAN loss '{self.loss}'; choose one of {LOSSES}")
        for name in ("batch_size", "n_d", "z_dim", "width", "g_width"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.epochs > 0:
            raise ConfigError(f"epochs must be > 0, got {self.epochs}")
        if not 0 <= self.ema < 1:
            raise ConfigError(f"ema must lie in [0, 1), got {self.ema}")

    def d_steps(self, n_private: int) -> int:
        q = dpsgd.sample_rate(n_private, self.batch_size)
        return max(1, math.ceil(self.epochs / q))


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


class GANSynthesizer:
    """``dpgan`` (DP-SGD on the discriminator) and ``gan`` (the same model, no privacy)."""

    def __init__(self, image_shape, num_classes, config=None, private=True, name="dpgan"):
        self.name, self.private = name, private
        self.image_shape, self.num_classes = tuple(image_shape), num_classes
        self.config = build_config(GANConfig, config)
        c, h, w = self.image_shape
        if h != w:
            raise ConfigError(f"images are {h}x{w}; the GAN needs square images, pass --image-size")
        cfg = self.config
        # g_width counts channels at full resolution; they double at each lower one.
        self.generator = Generator(c, h, num_classes, cfg.g_width << halvings(h), cfg.z_dim)
        self.discriminator = Discriminator(c, h, num_classes, cfg.width)
        self.g_ema = copy.deepcopy(self.generator).eval().requires_grad_(False)
        self.has_discriminator = False  # True once trained or loaded: white-box scores need it

    def config_dict(self) -> dict:
        return asdict(self.config)

    # --- training ---------------------------------------------------------------------------
    def fit(self, data: ImageDataset, ctx: TrainContext) -> FitResult:
        cfg, device = self.config, torch.device(ctx.device)
        torch.manual_seed(ctx.seed)
        gen = torch.Generator().manual_seed(ctx.seed)
        x = torch.from_numpy(to_unit_range(data.images))
        y = torch.from_numpy(data.labels)
        dataset = dpsgd.TensorBatches(x, y)
        n = len(dataset)
        if cfg.batch_size > n:
            raise ConfigError(f"batch size {cfg.batch_size} exceeds the {n} training images; "
                              "lower --batch-size")
        total = cfg.d_steps(n)
        G, D = self.generator.to(device), self.discriminator.to(device)
        G_ema = self.g_ema.to(device)
        opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, 0.999))
        opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, 0.999))
        start = 0
        resume = ctx.resume
        if resume is not None:
            check_generator_weights(resume["generator"], "")
            G.load_state_dict(resume["generator"])
            G_ema.load_state_dict(resume["g_ema"])
            D.load_state_dict(resume["discriminator"])
            opt_g.load_state_dict(resume["opt_g"])
            opt_d.load_state_dict(resume["opt_d"])
            start = int(resume["step"])
            # Continue the seeded streams (latents, the non-private loader) where they stopped.
            # A private run's batches and noise never come from these: make_private draws them
            # from fresh OS-entropy generators, so nothing is replayed after a resume.
            if "rng" in resume:
                torch.set_rng_state(resume["rng"]["torch"])
                gen.set_state(resume["rng"]["loader"])
                if "cuda" in resume["rng"] and device.type == "cuda":
                    torch.cuda.set_rng_state(resume["rng"]["cuda"], device)
        plan, engine, acc_state = None, None, None
        if ctx.privacy is not None:
            if ctx.privacy.grad_sample_mode == "ew":
                raise ConfigError("grad-sample mode 'ew' (expanded weights) cannot take the "
                                  "discriminator's label input; use --grad-sample-mode hooks")
            plan = dpsgd.plan(ctx.privacy, n, cfg.batch_size, total)
            ctx.on_plan(plan)
            acc_state = AccountantState.from_json(resume["accountant"]) if resume else None
            D_train, opt_d, loader, engine = dpsgd.make_private(D, opt_d, dataset, plan,
                                                                ctx.privacy, acc_state,
                                                                generator=gen)
        else:
            D_train = D
            loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                                generator=gen, collate_fn=dpsgd.TensorBatches.collate)
        dpsgd.share_across_processes(G)  # [speed, issue 14] multi-process runs; else a no-op
        batches = infinite(loader)

        def snapshot(step: int) -> None:
            acc = dpsgd.accountant_state(engine, ctx.privacy.accountant) if engine else None
            state = {"generator": G.state_dict(), "g_ema": G_ema.state_dict(),
                     "discriminator": D.state_dict(), "opt_g": opt_g.state_dict(),
                     "opt_d": opt_d.state_dict(), "step": step,
                     "rng": {"torch": torch.get_rng_state(), "loader": gen.get_state(),
                             **({"cuda": torch.cuda.get_rng_state(device)}
                                if device.type == "cuda" else {})},
                     "accountant": acc.to_json() if acc else None}
            ctx.checkpoint(step, state, acc)

        bar = progress_bar(total, start, ctx, plan, desc=f"{self.name} D-steps")
        d_loss = g_loss = float("nan")
        for step in range(start, total):
            xr, yr = next(batches)
            xr, yr = xr.to(device), yr.to(device)
            d_loss = self._d_step(G, D_train, opt_d, xr, yr, cfg.batch_size, device)
            if (step + 1) % cfg.n_d == 0 or step + 1 == total:
                g_loss = self._g_step(G, D_train, opt_g, cfg.batch_size, device)
                self._update_ema(G, G_ema, cfg.ema)
            bar.update(step + 1, d_loss=d_loss, g_loss=g_loss)
            if (step + 1) % ctx.checkpoint_every == 0 and step + 1 < total:
                snapshot(step + 1)
        bar.close()
        self.has_discriminator = True
        snapshot(total)
        acc = dpsgd.accountant_state(engine, ctx.privacy.accountant) if engine else None
        if engine is not None:
            D_train._close()  # remove Opacus hooks; self.discriminator is the bare module
        return FitResult(total, plan, acc, {"d_loss": d_loss, "g_loss": g_loss})

    def _d_step(self, G, D, opt_d, xr, yr, fake_n, device) -> float:
        fake_n = dpsgd.per_process(fake_n)  # [speed, issue 14] this process' share of the fakes
        with torch.no_grad():
            yf = torch.randint(0, self.num_classes, (fake_n,), device=device)
            xf = G(torch.randn(fake_n, self.config.z_dim, device=device), yf)
        # One forward over real and fake: each row gets its own clipped gradient. Fake rows depend
        # only on earlier (already private) steps, so the sensitivity to one real image stays C.
        # [speed, issue 14] dpsgd.public_rows: how the fake rows are clipped (privacy/dpsgd.py).
        with dpsgd.public_rows(D, len(xr)):
            logits = D(torch.cat([xr, xf]), torch.cat([yr, yf]))
        target = torch.cat([torch.ones(len(xr), device=device), torch.zeros(fake_n, device=device)])
        loss = d_loss_fn(self.config.loss, logits, target)
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
        return loss.item()

    def _g_step(self, G, D, opt_g, n, device) -> float:
        hooks = getattr(D, "disable_hooks", None)
        if hooks:  # no per-sample gradients for the discriminator during the generator's step
            D.disable_hooks()
        D.requires_grad_(False)
        n = dpsgd.per_process(n)  # [speed, issue 14] this process' share of the fakes
        y = torch.randint(0, self.num_classes, (n,), device=device)
        logits = D(G(torch.randn(n, self.config.z_dim, device=device), y), y)
        loss = g_loss_fn(self.config.loss, logits)
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        D.requires_grad_(True)
        if hooks:
            D.enable_hooks()
        return loss.item()

    @staticmethod
    @torch.no_grad()
    def _update_ema(G, G_ema, decay: float) -> None:
        if decay <= 0:
            G_ema.load_state_dict(G.state_dict())
            return
        ema_state, state = G_ema.state_dict().values(), G.state_dict().values()
        for p_ema, p in zip(ema_state, state, strict=True):
            if p.dtype.is_floating_point:
                p_ema.mul_(decay).add_(p, alpha=1 - decay)
            else:
                p_ema.copy_(p)

    # --- sampling and weights ---------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, labels: np.ndarray | None = None,
               seed: int | None = None) -> np.ndarray:
        g = torch.Generator().manual_seed(0 if seed is None else seed)
        labels = (torch.randint(0, self.num_classes, (n,), generator=g) if labels is None
                  else torch.as_tensor(np.asarray(labels), dtype=torch.long))
        device = next(self.g_ema.parameters()).device
        out = []
        for i in range(0, n, 1024):
            y = labels[i:i + 1024]
            z = torch.randn(len(y), self.config.z_dim, generator=g)
            out.append(self.g_ema(z.to(device), y.to(device)).cpu().numpy())
        return (from_unit_range(np.concatenate(out)) if out
                else np.zeros((0, *self.image_shape), np.uint8))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The EMA generator (all sampling needs) and the discriminator (trained with the same
        DP-SGD guarantee; kept so evaluation can run white-box membership scores)."""
        out = {f"g_ema.{k}": v.detach().cpu() for k, v in self.g_ema.state_dict().items()}
        if self.has_discriminator:
            out.update({f"discriminator.{k}": v.detach().cpu()
                        for k, v in self.discriminator.state_dict().items()})
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        check_generator_weights(state, "g_ema.")
        self.g_ema.load_state_dict({k[len("g_ema."):]: v for k, v in state.items()
                                    if k.startswith("g_ema.")})
        d = {k[len("discriminator."):]: v for k, v in state.items()
             if k.startswith("discriminator.")}
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
        scores = torch.cat([D(xb.to(device), yb.to(device)).cpu()
                            for xb, yb in zip(x.split(1024), y.split(1024), strict=True)])
        return scores.numpy().astype(np.float64)
