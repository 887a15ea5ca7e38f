"""DP-MERF (Harder, Adamczewski, Park, "DP-MERF: Differentially private mean embeddings with random
features", AISTATS 2021): release each class's random-feature mean embedding once with the Gaussian
mechanism, then train a generator to match it. The generator never sees private data, so its
training is post-processing and costs no privacy: as many steps as you like.

What is released, exactly: the matrix ``S = sum_i f(x_i) e_{y_i}^T`` (features x classes), where
``f(x) = C [cos(W x), sin(W x), 1] / sqrt(D + 1)`` scaled so ``||f(x)|| = C`` for every image.
Adding or removing one image (with its label) moves ``S`` by at most C in L2 norm: sensitivity C.
The last feature is a constant, so the same release carries noisy class counts and the per-class
mean embedding is estimated as a ratio (no separate count release, no public N needed).
Noise: ``N(0, (sigma C)^2)`` per entry, drawn by OpenDP's Gaussian mechanism (CSPRNG), with sigma
from Opacus' ``get_noise_multiplier`` at sampling
rate 1 and 1 step (one full-batch Gaussian release); epsilon on the card is recomputed by the same
Opacus accountant from the history ``[(sigma, 1.0, 1)]``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ..data import ImageDataset, from_unit_range, to_unit_range
from ..errors import ConfigError
from ..privacy.accounting import AccountantState, calibrate_noise
from ..privacy.dpsgd import DPPlan
from .base import FitResult, TrainContext, build_config
from .gan import Generator
from .progress import progress_bar


@dataclass
class MERFConfig:
    n_features: int = 2000     # random frequencies D (2 D + 1 features per class)
    length_scale: float = 0.35  # kernel length scale, in units of sqrt(pixels) on -1..1 images
    z_dim: int = 32
    g_width: int = 32
    steps: int = 3000          # generator steps (free: post-processing)
    batch_size: int = 500      # generated images per generator step
    lr: float = 1e-3
    feature_seed: int = 1234   # the random frequencies are public (independent of the data)


def random_frequencies(dim: int, cfg: MERFConfig) -> torch.Tensor:
    """Gaussian frequencies for an RBF kernel with length scale ``length_scale * sqrt(dim)``."""
    g = torch.Generator().manual_seed(cfg.feature_seed)
    return torch.randn(dim, cfg.n_features, generator=g) / (cfg.length_scale * math.sqrt(dim))


def features(x: torch.Tensor, freqs: torch.Tensor, norm: float = 1.0) -> torch.Tensor:
    """``f(x)`` with ``||f(x)|| = norm`` exactly: [cos, sin, 1] / sqrt(D + 1) * norm
    (each (cos, sin) pair has unit norm, so the squared norm before scaling is D + 1)."""
    proj = x.flatten(1) @ freqs
    ones = torch.ones(len(x), 1, dtype=proj.dtype, device=proj.device)
    f = torch.cat([proj.cos(), proj.sin(), ones], 1)
    return f * (norm / math.sqrt(proj.shape[1] + 1))


def gaussian_noise_release(values: torch.Tensor, scale: float) -> torch.Tensor:
    """``values + N(0, scale^2)`` per entry, the noise drawn by OpenDP's Gaussian mechanism from
    the OS CSPRNG (never from a seeded generator: a known seed would let anyone subtract it)."""
    import opendp.prelude as dp

    dp.enable_features("contrib")
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l2_distance(T=float)
    meas = dp.m.make_gaussian(*space, scale=float(scale))
    flat = values.double().flatten().tolist()
    return torch.tensor(meas(flat), dtype=torch.float64).view(values.shape)


def class_mean_embeddings(released: torch.Tensor, norm: float, n_features: int) -> torch.Tensor:
    """K x F per-class mean embeddings from the (noisy) feature-by-class sums ``S``.

    The last feature of ``f(x)`` is the constant ``norm / sqrt(D + 1)``, so the last row of ``S``
    is each class's (noisy) count times that constant: dividing by the constant, not by the row
    itself, gives the count. (Dividing by the row alone inflated every target by sqrt(D + 1) / C,
    44.7x at D = 2000, and rewarded a generator that collapses each class to one image.)
    The noisy count is floored at one image: a class that a large noise draw erased stays finite.
    """
    constant = norm / math.sqrt(n_features + 1)  # the last entry of every f(x)
    counts = (released[-1] / constant).clamp_min(1.0)
    return (released / counts).T


class MERFSynthesizer:
    """``dpmerf``: one Gaussian release of per-class mean embeddings + a generator trained for free.

    Without privacy (``--no-dp``) the embedding is the exact one: the non-private twin.
    """

    privacy_mechanism = "gaussian"  # one Gaussian release, not DP-SGD: the card names it

    def __init__(self, image_shape, num_classes, config=None, private=True, name="dpmerf"):
        self.name, self.private = name, private
        self.image_shape, self.num_classes = tuple(image_shape), num_classes
        self.config = build_config(MERFConfig, config)
        c, h, w = self.image_shape
        if h != w:
            raise ConfigError(f"images are {h}x{w}; DP-MERF's generator needs square images, "
                              "pass --image-size")
        cfg = self.config
        if cfg.n_features < 1 or cfg.steps < 1:
            raise ConfigError("n_features and steps must be >= 1; e.g. --set n_features=2000")
        self.generator = Generator(c, h, num_classes, cfg.g_width, cfg.z_dim)
        self.freqs = random_frequencies(c * h * w, cfg)

    def config_dict(self) -> dict:
        return asdict(self.config)

    # --- the one private step ----------------------------------------------------------------
    def release(self, data: ImageDataset, ctx: TrainContext) -> tuple[torch.Tensor, DPPlan | None,
                                                                     AccountantState | None]:
        """The noisy feature-by-class sum ``S`` (and the plan/accountant that priced it)."""
        x = torch.from_numpy(to_unit_range(data.images))
        y = torch.from_numpy(data.labels)
        spec = ctx.privacy
        C = spec.max_grad_norm if spec is not None else 1.0
        total = torch.zeros(2 * self.config.n_features + 1, self.num_classes, dtype=torch.float64)
        for xb, yb in zip(x.split(1024), y.split(1024), strict=True):
            f = features(xb, self.freqs, C).double()
            total.index_add_(1, yb, f.T)
        if spec is None:
            return total.float(), None, None
        n = len(data)
        delta = spec.resolved_delta(n)
        with warnings.catch_warnings():  # PRV at q = 1 evaluates log(1 - q) = -inf: harmless
            warnings.simplefilter("ignore", RuntimeWarning)
            sigma = (spec.noise_multiplier if spec.noise_multiplier is not None
                     else calibrate_noise(spec.epsilon, delta, 1.0, 1, spec.accountant))
        plan = DPPlan(sigma, n, 1.0, 1, delta, spec.epsilon, n)
        ctx.on_plan(plan)
        noisy = gaussian_noise_release(total, sigma * C)
        return noisy.float(), plan, AccountantState(spec.accountant, [(sigma, 1.0, 1)])

    # --- training the generator (post-processing) -------------------------------------------
    def fit(self, data: ImageDataset, ctx: TrainContext) -> FitResult:
        cfg = self.config
        torch.manual_seed(ctx.seed)
        resume = ctx.resume
        G = self.generator.to(ctx.device)
        opt = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
        if resume is not None:  # the release already happened: reuse it, never draw new noise
            released = resume["released"]
            acc = AccountantState.from_json(resume["accountant"]) if resume["accountant"] else None
            plan = DPPlan(**resume["plan"]) if resume.get("plan") else None
            G.load_state_dict(resume["generator"])
            opt.load_state_dict(resume["opt"])
            start = int(resume["step"])
        else:
            released, plan, acc = self.release(data, ctx)
            start = 0

        def snapshot(step: int) -> None:
            state = {"released": released, "generator": G.state_dict(), "opt": opt.state_dict(),
                     "step": step, "accountant": acc.to_json() if acc else None,
                     "plan": plan.to_json() if plan else None}
            ctx.checkpoint(step, state, acc)

        if resume is None:
            snapshot(0)  # book the spend the moment the embedding exists
        C = ctx.privacy.max_grad_norm if ctx.privacy is not None else 1.0
        target = class_mean_embeddings(released, C, cfg.n_features).to(ctx.device)
        freqs = self.freqs.to(ctx.device)
        bar = progress_bar(cfg.steps, start, ctx, None, desc=f"{self.name} generator")
        loss_value = float("nan")
        for step in range(start, cfg.steps):
            y = torch.arange(cfg.batch_size, device=ctx.device) % self.num_classes
            fake = G(torch.randn(cfg.batch_size, cfg.z_dim, device=ctx.device), y)
            f = features(fake, freqs, C)
            onehot = nn.functional.one_hot(y, self.num_classes).float()
            gen_mean = (onehot.T @ f) / onehot.sum(0)[:, None]
            loss = (gen_mean - target).pow(2).sum() / C ** 2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_value = loss.item()
            bar.update(step + 1, loss=loss_value)
            if (step + 1) % ctx.checkpoint_every == 0 and step + 1 < cfg.steps:
                snapshot(step + 1)
        bar.close()
        snapshot(cfg.steps)
        return FitResult(cfg.steps, plan, acc, {"loss": loss_value, "mechanism": "gaussian, once"})

    # --- sampling and weights ---------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, labels: np.ndarray | None = None,
               seed: int | None = None) -> np.ndarray:
        g = torch.Generator().manual_seed(0 if seed is None else seed)
        labels = (torch.randint(0, self.num_classes, (n,), generator=g) if labels is None
                  else torch.as_tensor(np.asarray(labels), dtype=torch.long))
        G = self.generator.eval()
        device = next(G.parameters()).device
        out = [np.zeros((0, *self.image_shape), np.uint8)]
        for y in labels.split(1024):
            z = torch.randn(len(y), self.config.z_dim, generator=g)
            out.append(from_unit_range(G(z.to(device), y.to(device)).cpu().numpy()))
        G.train()
        return np.concatenate(out)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The released weights: the generator (the noisy embedding stays in the run's state)."""
        return {f"generator.{k}": v.detach().cpu() for k, v in self.generator.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.load_state_dict({k[len("generator."):]: v for k, v in state.items()
                                        if k.startswith("generator.")})
