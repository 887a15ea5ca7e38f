"""DP-MERF (Harder, Adamczewski, Park, AISTATS 2021) with a multi-scale kernel: release each
class's random-feature mean embedding once with the Gaussian mechanism, then train a generator to
match it. The generator never sees private data: its training is post-processing, free.

The kernel sums Gaussian (RBF) kernels, as DP-Kernel does (Functional Renyi DP, NeurIPS 2023):
sharp ones on the full image for strokes, wide ones and ones on 2x / 4x average-pooled copies for
the shape, each with ``n_features`` random Fourier frequencies (Rahimi & Recht).

What is released, exactly: ``S = sum_i f(x_i) e_{y_i}^T`` (features x classes), with
``f(x) = C [sqrt(w_k / D) (cos(W_k x_k), sin(W_k x_k)) for each kernel k, sqrt(w_0)]`` and
``sum_k w_k + w_0 = 1``, so ``||f(x)|| = C``: adding or removing one image (with its label) moves
``S`` by at most C in L2 norm. The constant last feature carries the (noisy) class counts in the
same release, so each class's mean embedding is a ratio (no count release, no public N). Noise:
``N(0, (sigma C)^2)`` per entry from OpenDP's Gaussian mechanism (CSPRNG), sigma from Opacus at
q = 1 and one step; the card's epsilon is recomputed from ``[(sigma, 1.0, 1)]``. The released
weights hold the generator and each class's noisy mean embedding (`ReleasedEmbedding`).

Why one release and not fresh noise every step (DP-Kernel's recipe): at the same epsilon T
subsampled releases get about the same total noise as one (sigma 5.2 at q = 1/40, T = 3000 vs 3.8
once, on 8 000 images), but the per-step noise then swamps each gradient: 21% TSTR on MNIST-10k
at epsilon 1, far below one release. (DPImageBench's DP-Kernel adds its noise as a constant, so
none reaches the generator's gradient; we do not reproduce that.)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..data import ImageDataset, to_unit_range
from ..errors import ConfigError
from .base import FitResult, OneShotMethod, TrainContext, sensitivity
from .generator import Generator, check_generator_weights, check_padding
from .progress import progress_bar

IMPROVEMENT = 0.005  # relative drop of the running loss that resets the patience count
REDRAWS = 10  # sampling's rounds of redrawing images under the witness floor (then kept as is)


@dataclass
class MERFConfig:
    """DP-MERF as published: one RBF kernel on the full image (docs/zoo.md)."""

    n_features: int = 2000  # random frequencies per kernel (two features each)
    # kernels: "pool:length" pairs; pool = average-pooling factor, length = RBF length scale per
    # sqrt(pixel) of the pooled image on -1..1 pixels (a property of the image size, not the data)
    kernels: str = "1:0.35"
    count_weight: float = 0.1  # share of ||f||^2 on the constant feature (the noisy class counts)
    z_dim: int = 32
    g_width: int = 32
    g_padding: str = "zeros"  # or "reflect" (dpgan's colour default; models/defaults.py)
    steps: int = 4000  # most generator steps (free: post-processing)
    patience: int = 600  # stop once the running loss has not improved 0.5% for this long
    batch_size: int = 200  # generated images per generator step
    lr: float = 1e-3
    feature_seed: int = 1234  # the random frequencies are public (independent of the data)
    # Sampling redraws an image whose witness (its kernel similarity to its class's released mean
    # embedding) is below this fraction of the class's median; 0 keeps every draw (`witness`).
    witness_floor: float = 0.2
    # Stop the generator once its loss reaches the loss the private data itself would score, in
    # expectation, against the noisy release (`noise_floor`): below it, it fits the noise
    # (Morozov's discrepancy principle). Reads only the release and its public noise scale.
    stop_at_noise: bool = False
    # Sampling's contrast curve, tanh(c x) / tanh(c) on -1..1 pixels (0: off): pushes the
    # generator's soft mid-grey strokes toward ink or paper. Post-processing, like the floor.
    contrast: float = 0.0

    def __post_init__(self) -> None:
        for name in ("n_features", "steps", "z_dim", "g_width", "patience"):  # batch: trainer
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.count_weight < 1:
            raise ConfigError(f"count_weight must lie in (0, 1), got {self.count_weight}")
        if not 0 <= self.witness_floor < 1:
            raise ConfigError(
                f"witness_floor must lie in [0, 1) (0 keeps every draw), got {self.witness_floor}"
            )
        if not 0 <= self.contrast <= 20:
            raise ConfigError(f"contrast must lie in [0, 20] (0 keeps pixels), got {self.contrast}")
        parse_kernels(self.kernels)
        check_padding(self.g_padding)


@dataclass
class KernelConfig(MERFConfig):
    """``dpkernel``: DP-Kernel's sum of RBF kernels (sharp to wide) on the image and on 2x / 4x
    average-pooled copies, fewer frequencies per kernel (the noise grows with the feature count)."""

    n_features: int = 300
    kernels: str = "1:0.14,1:0.29,1:0.57,2:0.14,4:0.07"


def parse_kernels(text: str) -> list[tuple[int, float]]:
    try:
        out = [(int(p), float(s)) for p, s in (item.split(":") for item in text.split(","))]
    except ValueError:
        out = []
    if not out or any(p < 1 or not s > 0 for p, s in out):
        raise ConfigError(
            f"kernels '{text}': expected pool:length pairs such as "
            "'1:0.14,1:0.29,2:0.14' (pool >= 1, length > 0)"
        )
    return out


class KernelFeatures:
    """``f(x)``, the random-feature map of the multi-scale kernel, with ``||f(x)|| = norm``."""

    def __init__(self, image_shape: tuple[int, int, int], cfg: MERFConfig):
        c, h, _ = image_shape
        g = torch.Generator().manual_seed(cfg.feature_seed)
        self.pools: dict[int, torch.Tensor] = {}  # pool factor -> frequencies of its kernels
        for pool, length in parse_kernels(cfg.kernels):
            side = max(1, h // pool)
            dim = c * side * side
            w = torch.randn(dim, cfg.n_features, generator=g) / (length * math.sqrt(dim))
            self.pools[pool] = torch.cat([self.pools[pool], w], 1) if pool in self.pools else w
        self.n_kernels = len(parse_kernels(cfg.kernels))
        self.n_features, self.count_weight = cfg.n_features, cfg.count_weight
        self.dim = 2 * self.n_kernels * cfg.n_features + 1

    def to(self, device) -> "KernelFeatures":
        self.pools = {p: w.to(device) for p, w in self.pools.items()}
        return self

    def __call__(self, x: torch.Tensor, norm: float = 1.0) -> torch.Tensor:
        scale = norm * math.sqrt((1 - self.count_weight) / (self.n_kernels * self.n_features))
        parts = []
        for pool, w in self.pools.items():
            xp = F.avg_pool2d(x, pool) if pool > 1 else x
            proj = xp.flatten(1) @ w
            parts += [proj.cos() * scale, proj.sin() * scale]
        parts.append(x.new_full((len(x), 1), norm * math.sqrt(self.count_weight)))
        return torch.cat(parts, 1)

    def class_means(self, released: torch.Tensor, norm: float) -> torch.Tensor:
        """K x F per-class mean embeddings from the (noisy) feature-by-class sums ``S``.

        The count is the last row divided by the constant feature, not the row itself (that
        inflated the target by sqrt(D + 1) / C and rewarded collapsing each class to one image).
        """
        return (released / self.counts(released, norm).clamp_min(1.0)).T  # a class stays finite

    def counts(self, released: torch.Tensor, norm: float) -> torch.Tensor:
        """Each class's noisy image count, from the constant feature's row (post-processing)."""
        return released[-1] / (norm * math.sqrt(self.count_weight))


class ReleasedEmbedding(torch.nn.Module):
    """What sampling keeps of the release: each class's (noisy) mean embedding ``K x F`` at norm
    1 (constant feature dropped) and the median witness of the trained generator's own images per
    class. Both are post-processing of the one Gaussian release, so publishing them costs nothing.

    Why sampling needs it: a sharp RBF kernel gives no gradient to a generated image far from every
    real one (its features are orthogonal to the data's), so a few regions of z stay blown-out
    blobs that the loss never pulls back (MNIST-10k, eps 10: about 8 in 100). Their witness is about
    0 while real holdout images score 0.36x the class median or more at the 1st percentile
    (bench/merf_witness.py): `witness_floor` redraws them.
    """

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.register_buffer("means", torch.zeros(num_classes, dim))
        self.register_buffer("median", torch.zeros(num_classes))

    @property
    def ready(self) -> bool:  # False for weights saved before the embedding was released
        return bool((self.median > 0).all())


class MERFSynthesizer(OneShotMethod):
    """``dpmerf``: one Gaussian release of per-class mean embeddings + a generator trained for free.

    Without privacy (``--no-dp``) the embedding is the exact one: the non-private twin.
    """

    name, config_class = "dpmerf", MERFConfig

    def __init__(self, image_shape, num_classes, config=None, private=None, name=None):
        super().__init__(image_shape, num_classes, config, private, name)
        c, h, _ = self.image_shape
        cfg = self.config
        self.generator = Generator(c, h, num_classes, cfg.g_width, cfg.z_dim, cfg.g_padding)
        self.features = self.make_features(cfg)
        self.embedding = ReleasedEmbedding(num_classes, self.features.dim - 1)

    def make_features(self, cfg: MERFConfig):
        """``f``: the feature map whose class sums are released (DP-MEPF swaps it)."""
        return KernelFeatures(self.image_shape, cfg)

    # --- the one private step: OneShotMethod releases this statistic ------------------------
    def statistic(self, data: ImageDataset, sensitivity: float) -> torch.Tensor:
        """``S = sum_i f(x_i) e_{y_i}^T`` (float64, features x classes) at feature norm
        ``sensitivity``, no noise: what the Gaussian release perturbs (a federated owner
        computes it on its own images)."""
        x = torch.from_numpy(to_unit_range(data.images))
        y = torch.from_numpy(data.labels).long()
        total = torch.zeros(self.statistic_shape(), dtype=torch.float64)
        for xb, yb in zip(x.split(1024), y.split(1024), strict=True):
            total.index_add_(1, yb, self.features(xb, sensitivity).double().T)
        return total

    def statistic_shape(self) -> tuple[int, int]:
        return (self.features.dim, self.num_classes)

    # --- training the generator (post-processing) -------------------------------------------
    def fit_released(self, released: torch.Tensor, ctx: TrainContext) -> FitResult:
        """Train the generator on a released ``S`` (post-processing: no privacy cost)."""
        cfg, device = self.config, torch.device(ctx.device)
        torch.manual_seed(ctx.seed)
        resume = ctx.resume
        G = self.generator.to(device)
        opt = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
        best, since, start = math.inf, 0, 0
        if resume is not None and "generator" in resume:  # else killed before its first step
            check_generator_weights(resume["generator"], "")
            G.load_state_dict(resume["generator"])
            opt.load_state_dict(resume["opt"])
            start = int(resume["step"])
            best, since = float(resume.get("best", math.inf)), int(resume.get("since", 0))

        def snapshot(step: int) -> None:
            kept = {"step": step, "best": best, "since": since}
            ctx.checkpoint(
                step, {"generator": G.state_dict(), "opt": opt.state_dict(), **kept}, None
            )

        C = sensitivity(ctx.privacy)
        features = self.features.to(device)
        target = features.class_means(released.to(device), C)[:, :-1]
        floor = None
        if cfg.stop_at_noise and ctx.release_sigma:
            floor = self.noise_floor(released.to(device), ctx.release_sigma, C, cfg.batch_size)
        t0 = time.time()
        bar = progress_bar(cfg.steps, start, ctx, None, desc=f"{self.name} generator")
        smooth, step = math.nan, start
        y = torch.arange(cfg.batch_size, device=device) % self.num_classes
        per_class = torch.bincount(y, minlength=self.num_classes).clamp_min(1)[:, None]
        # The plain batch loss, biased: in expectation it pulls the generator's mean embedding
        # to target / (1 - 1/n) (n = 20 per class: 5% more concentrated than the data). Its
        # unbiased (U-statistic) twin was tried and not kept: on MNIST-10k without DP it raised
        # the Fréchet distance on both seeds (8.6 -> 22.1, 36.7 -> 43.8; docs/zoo.md).
        for step in range(start, cfg.steps):
            fake = G(torch.randn(cfg.batch_size, cfg.z_dim, device=device), y)
            f = features(fake, C)[:, :-1]
            gen_mean = torch.zeros_like(target).index_add(0, y, f) / per_class
            loss = (gen_mean - target).pow(2).sum() / C**2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            # The loss against the released embedding is public (post-processing), so stopping on
            # it costs nothing: stop once its running mean has not gone 0.5% below its best for
            # `patience` steps.
            smooth = loss.item() if math.isnan(smooth) else 0.98 * smooth + 0.02 * loss.item()
            better = smooth < best * (1 - IMPROVEMENT)  # best starts at inf: the first step counts
            best, since = (smooth, 0) if better else (best, since + 1)
            bar.update(step + 1, loss=smooth)
            if since >= cfg.patience or (floor is not None and smooth <= floor):
                break
            if (step + 1) % ctx.checkpoint_every == 0 and step + 1 < cfg.steps:
                snapshot(step + 1)
        bar.close()
        steps = step + 1
        rejected = self.keep_embedding(target / C, ctx.seed)
        snapshot(steps)
        return FitResult(
            steps,
            None,
            None,
            {
                "loss": smooth,
                "generator_steps": steps,
                "generator_seconds": round(time.time() - t0, 1),
                "witness_redrawn": rejected,
                **({"noise_floor": round(floor, 4)} if floor is not None else {}),
            },
            # the training-set size as the count feature has it: the noisy counts, not floored
            dp_count=float(features.counts(released.to(device), C).sum()) if ctx.privacy else None,
        )

    def noise_floor(self, released: torch.Tensor, sigma: float, C: float, batch: int) -> float:
        """The generator loss (units of C^2) that a generator drawing exactly the private data
        scores in expectation against the release: the noise in each class mean, sigma^2 per
        feature over its squared count, plus the sampling spread of a batch's class means. Only
        the release and its public noise scale enter (post-processing)."""
        counts = self.features.counts(released, C).clamp_min(1.0).double()
        target = (released[:-1].double() / counts).T / C  # K x D class means at norm 1
        dim = target.shape[1]
        noise = sigma**2 * dim / counts**2
        # a class's features have squared norm 1 - w0, so their total variance is that minus the
        # squared mean (estimated from the release, its noise part removed)
        mean_sq = (target.pow(2).sum(1) - noise).clamp(0.0, 1 - self.features.count_weight)
        per_batch = torch.bincount(torch.arange(batch) % self.num_classes, minlength=len(counts))
        spread = (1 - self.features.count_weight - mean_sq) / per_batch.clamp_min(1)
        return float((noise + spread).sum())

    @torch.no_grad()
    def keep_embedding(self, means: torch.Tensor, seed: int, per_class: int = 500) -> float:
        """Store the released class means and the generator's median witness per class (from
        ``per_class`` of its own images, a fixed seed); return the share the floor would redraw."""
        emb, k = self.embedding, self.num_classes
        emb.means.copy_(means)
        g = torch.Generator().manual_seed(seed)
        y = torch.arange(k * per_class) % k
        G = self.generator.eval()
        device = next(G.parameters()).device
        z = torch.randn(len(y), self.config.z_dim, generator=g).to(device)
        w = torch.cat(
            [
                self.witness(G(zb, yb), yb).cpu()
                for zb, yb in zip(z.split(1024), y.to(device).split(1024), strict=True)
            ]
        )
        G.train()
        emb.median.copy_(torch.stack([w[y == c].median() for c in range(k)]).clamp_min(1e-12))
        return round(float((w < self.config.witness_floor * emb.median[y]).float().mean()), 4)

    def witness(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``<f(x), mean embedding of class y>`` per image (features at norm 1): the kernel
        similarity of each image to its class's released data, about 0 far from all of it."""
        means = self.embedding.means.to(x.device)
        return (self.features.to(x.device)(x)[:, :-1] * means[y]).sum(1)

    # --- sampling and weights ---------------------------------------------------------------
    def draw(self, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        G, floor = self.generator.eval(), self.config.witness_floor
        z_dim = self.config.z_dim
        out = G(torch.randn(len(y), z_dim, generator=generator).to(y.device), y)
        if floor > 0 and self.embedding.ready:  # eval-mode BatchNorm: rows are independent
            bar = floor * self.embedding.median.to(y.device)[y]
            low = (self.witness(out, y) < bar).nonzero().squeeze(1)
            for _ in range(REDRAWS):  # each round scores only the rows it redrew
                if len(low) == 0:
                    break
                z = torch.randn(len(low), z_dim, generator=generator).to(y.device)
                out[low] = G(z, y[low])
                low = low[self.witness(out[low], y[low]) < bar[low]]
        G.train()
        c = self.config.contrast
        return torch.tanh(c * out) / math.tanh(c) if c > 0 else out

    def released_modules(self) -> dict[str, torch.nn.Module]:
        """The released weights: the generator and the released class-mean embedding (DP
        itself) with the generator's median witness, which sampling's `witness_floor` reads."""
        return {"generator": self.generator, "embedding": self.embedding}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        check_generator_weights(state, "generator.")
        if not any(k.startswith("embedding.") for k in state):  # saved before it was released:
            state = {
                **state,
                **{f"embedding.{k}": v for k, v in self.embedding.state_dict().items()},
            }
        super().load_state_dict(state)  # ...sampling then keeps every draw (median 0: not ready)


class KernelSynthesizer(MERFSynthesizer):
    """``dpkernel``: the same one Gaussian release and free generator training as ``dpmerf``, with
    DP-Kernel's multi-scale kernel (`KernelConfig`)."""

    name, config_class = "dpkernel", KernelConfig
