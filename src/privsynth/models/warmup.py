"""Pretraining before DP fine-tuning, for every DP-SGD method: ``--warmup central`` (a warm-up on
DP central images, DP-FETA's "easy stage"), ``--warmup merf`` (on the draws of a generator trained
against a DP-MERF release, `models.warmup_merf`) and ``--public-data PATH`` (images the user
declares public).

One generic path: each phase is the method's *own non-private fit* (``synth.fit`` with
``privacy=None``) on a warm-up set, for ``epochs`` passes over it; DP-SGD then starts from those
weights (a fresh optimizer, the same modules). Phases run in order: public data, then central
images (or MERF draws). Nothing here reads the private images except the one accounted release
(`privacy.central.release_central` or `warmup_merf.release_merf`); the warm-up set is built
from its output (post-processing) and the public images (no privacy claimed for them, none
spent).

Warm-up set from central images (what FETA pretrains on: a few noisy central images shown many
times under RandAugment): each released low-resolution mean is upsampled to full size, clipped
to the pixel range, and drawn ``images / K`` times per class under a random affine map (rotation,
shear, scale, shift) and a brightness/contrast jitter, from a generator seeded by ``--seed``.

Resume: ``warmup_state.pt`` in the run folder keeps the release (never drawn twice) and the
pretraining checkpoints (phase, step, the method's full training state). A killed run resumes the
phase it was in, or restores the pretrained weights if pretraining had finished, and the DP phase's
own checkpoint (``train_state.pt``) takes over once it exists.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..data import ImageDataset
from ..errors import ConfigError, DataError, TrainingDiverged
from ..privacy.central import CentralRelease, central_sigma, check_settings, release_central
from ..privacy.release import Release, gaussian
from . import warmup_merf
from .base import TrainContext

WARMUPS = ("none", "central", "merf")
RELEASES = ("central", "merf")  # the kinds that spend part of epsilon on a release
WARMUP_STATE = "warmup_state.pt"
DEFAULT_SHARE = 0.3
COMPOSED = (  # how either release (central, merf) is accounted, as the card says it
    "first entry of the DP-SGD accountant's history: one Opacus accountant composes the release "
    "and DP-SGD exactly"
)


@dataclass
class WarmupConfig:
    """``--warmup-share``, ``--warmup-epochs`` and ``--warmup-set KEY=VALUE``."""

    share: float = DEFAULT_SHARE  # the release alone spends share * epsilon (see docs/warmup.md)
    sigma: float | None = None  # fix the release's noise multiplier instead (needed with a
    #                                fixed --noise-multiplier and no --epsilon)
    size: int | None = None  # release resolution (low-pass); default half the image size
    clip: float | None = None  # L2 clip of a centred low-res image; default its largest norm
    count_weight: float = 0.3  # weight of the count entry in each image's unit vector
    sample_rate: float = 1.0  # Poisson rate per query (FETA: 0.1); 1 = the whole set
    queries: int = 1  # releases (central images per class)
    epochs: float | None = None  # pretraining passes per phase; default the method's epochs
    images: int | None = None  # size of the central / merf warm-up set; default the private set's
    augment: bool = True  # random affine + brightness/contrast on the central images

    def __post_init__(self) -> None:
        if not 0 < self.share < 1:
            raise ConfigError(f"--warmup-share must lie in (0, 1), got {self.share}")
        if self.sigma is not None and not (self.sigma > 0 and math.isfinite(self.sigma)):
            raise ConfigError(f"warm-up sigma must be a finite number > 0, got {self.sigma}")
        if self.epochs is not None and not self.epochs > 0:
            raise ConfigError(f"--warmup-epochs must be > 0, got {self.epochs}")
        if self.images is not None and self.images < 1:
            raise ConfigError(f"warm-up images must be >= 1, got {self.images}")
        check_settings(self.size or 1, self.sample_rate, self.queries, self.count_weight, self.clip)


def warmup_config(overrides: dict[str, Any] | None) -> WarmupConfig:
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    names = {f.name for f in fields(WarmupConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"unknown warm-up option(s) {unknown}; valid: {sorted(names)}")
    return WarmupConfig(**overrides)


class WarmUp:
    """The pretraining phases of one run (built by `privsynth.train`; None when there are none)."""

    def __init__(
        self,
        kind: str,
        public: ImageDataset | None,
        config: WarmupConfig,
        public_source: str | None,
    ):
        self.kind, self.public, self.config = kind, public, config
        self.public_source = public_source
        self.sigma: float | None = None
        self.release: CentralRelease | warmup_merf.MerfRelease | None = None
        self.state: dict = {}

    @classmethod
    def build(
        cls,
        kind: str,
        public_data,
        config: dict | None,
        dataset: ImageDataset,
        private: bool,
        synth,
    ) -> "WarmUp | None":
        if kind not in WARMUPS:
            raise ConfigError(f"unknown --warmup '{kind}'; choose one of {WARMUPS}")
        if kind == "none" and public_data is None:
            if config:
                raise ConfigError(
                    "--warmup-share/--warmup-epochs/--warmup-set need a warm-up, and this "
                    "run has none by default; add --warmup central or --public-data PATH"
                )
            return None
        cfg = warmup_config(config)
        side = min(dataset.image_shape[1:])
        if cfg.size is not None and cfg.size > side:
            raise ConfigError(
                f"--warmup-set size={cfg.size} exceeds the {side}-pixel images; "
                "pick a size up to the image side, e.g. half of it"
            )
        if synth.kind != "dp-sgd":
            raise ConfigError(
                f"--warmup/--public-data pretrain a DP-SGD method; '{synth.name}' "
                "trains no network on private data (use dpgan, dpvae or "
                "dpdiffusion)"
            )
        if kind in RELEASES and not private:
            raise ConfigError(
                f"--warmup {kind} is a DP release for a private run; without DP "
                "there is no budget to split (drop --warmup, or use --public-data)"
            )
        if kind == "merf":
            central_only = {
                f.name
                for f in fields(WarmupConfig)
                if f.name in ("size", "clip", "count_weight", "sample_rate", "queries", "augment")
                and getattr(cfg, f.name) != f.default
            }
            if central_only:
                raise ConfigError(
                    f"warm-up option(s) {sorted(central_only)} shape the central release; "
                    "--warmup merf takes share, sigma, epochs and images only (add "
                    "--warmup central to use them)"
                )
        public, source = None, None
        if public_data is not None:
            public, source = load_public(public_data, dataset)
        return cls(kind, public, cfg, source)

    # --- what the run's request, card and accountant see -------------------------------------
    def request(self) -> dict:
        return {
            "kind": self.kind,
            "config": asdict(self.config),
            "public": self.public.fingerprint if self.public is not None else None,
        }

    def release_size(self, image_shape: tuple[int, int, int]) -> int:
        return self.config.size or max(1, image_shape[1] // 2)

    def prepare(
        self, spec, out: Path, resuming: bool
    ) -> tuple[list[tuple[float, float, int]], list[tuple[float, float, int]]]:
        """Fix the release's sigma. Returns ``(prior, released)``: its accountant entry, for
        the spec's ``prior`` (before DP-SGD's noise is calibrated), and the history entries an
        earlier segment already released, which the ledger must not book again. ``resuming``:
        ``out`` holds this unfinished run, whose warm-up state (an earlier segment's release and
        pretraining) is reused."""
        self.state = load_state(out) if resuming else {}
        if self.state.get("release") is not None:
            self.release = release_from_state(self.state["release"])
        if self.kind not in RELEASES:
            return [], []
        cfg = self.config
        if self.release is not None:
            self.sigma = self.release.sigma
        elif cfg.sigma is not None:
            self.sigma = cfg.sigma
        elif spec.epsilon is None:
            raise ConfigError(
                f"--warmup {self.kind} with a fixed --noise-multiplier needs the "
                "release's own sigma: --warmup-set sigma=S (or give --epsilon)"
            )
        else:
            at = self.planned(sigma=1.0)  # its sampling, for the calibration
            self.sigma = central_sigma(
                cfg.share * spec.epsilon, spec.delta, at.q, at.steps, spec.accountant
            )
        prior = self.planned().history
        return prior, (list(prior) if self.release is not None else [])

    def planned(self, sigma: float | None = None) -> Release:
        """The release at ``sigma`` (default: the fixed one), drawn or not: the MERF release is
        one query on every image, the central one ``queries`` at the configured sample rate."""
        cfg, central = self.config, self.kind == "central"
        q, queries = (float(cfg.sample_rate), int(cfg.queries)) if central else (1.0, 1)
        return gaussian(f"warmup.{self.kind}", sigma or self.sigma, 1.0, q, queries)

    def card(self, delta: float, accountant: str) -> dict:
        from ..privacy.accounting import epsilon_from_history

        out: dict[str, Any] = {
            "phases": self.phases_named(),
            "epochs": self.config.epochs or "the method's epochs",
        }
        if self.public is not None:
            out["public_data"] = {
                # the dataset's name as the user gave it: what the model card and `info` name
                # (`source` is a local path, which `privsynth export` leaves out)
                "name": self.public.name,
                "source": self.public_source,
                "fingerprint": self.public.fingerprint,
                "n_images": len(self.public),
                "spent_epsilon": 0.0,
                "note": "declared public by the user: pretrained on without privacy and without "
                "spending budget; not protected by this run's guarantee",
            }
        if self.kind == "central":
            cfg, r, hist = self.config, self.release, self.planned().history
            out["central"] = {
                "mechanism": "Gaussian mechanism (OpenDP noise) on per-class sums of clipped "
                "low-resolution images, L2 sensitivity 1; DP-FETA's central images",
                "noise_multiplier": self.sigma,
                "sample_rate": cfg.sample_rate,
                "queries": cfg.queries,
                "share": cfg.share if cfg.sigma is None else None,
                "epsilon_alone": epsilon_from_history(hist, delta, accountant),
                "history": [list(h) for h in hist],
                "size": r.size if r else cfg.size,
                "clip": r.clip if r else cfg.clip,
                "count_weight": cfg.count_weight,
                "released": r is not None,
                "composed": COMPOSED,
            }
        if self.kind == "merf":
            hist = self.planned().history
            out["merf"] = {
                "mechanism": "Gaussian mechanism (OpenDP noise) on per-class sums of norm-1 "
                "random Fourier features (dpmerf's release), L2 sensitivity 1; the warm-up set "
                "is drawn from a dpmerf generator trained on it (post-processing)",
                "noise_multiplier": self.sigma,
                "share": self.config.share if self.config.sigma is None else None,
                "epsilon_alone": epsilon_from_history(hist, delta, accountant),
                "history": [list(h) for h in hist],
                "generator": self.state.get("merf_metrics"),
                "released": self.release is not None,
                "composed": COMPOSED,
            }
        return out

    def phases_named(self) -> list[str]:
        return [
            p
            for p, on in (
                ("public", self.public is not None),
                ("central", self.kind == "central"),
                ("merf", self.kind == "merf"),
            )
            if on
        ]

    # --- the phases ---------------------------------------------------------------------------
    def run(
        self,
        synth,
        train_set: ImageDataset,
        ctx: TrainContext,
        out: Path,
        before_release: Callable[[], None],
        after_release: Callable[[], None],
    ) -> None:
        """Release (if needed) and pretrain ``synth`` phase by phase, resuming what a killed
        segment left. ``before_release`` books the release in the ledger before it is drawn;
        ``after_release`` writes the card (and clears a replaced run) before the state is kept."""
        state = self.state
        if self.kind == "merf" and self.release is None:
            before_release()
            self.release = warmup_merf.release_merf(train_set, self.sigma)
            after_release()
            state["release"] = warmup_merf.release_to_state(self.release)
            save_state(out, state)
        if self.kind == "central" and self.release is None:
            before_release()
            cfg = self.config
            self.release = release_central(
                train_set.images,
                train_set.labels,
                train_set.num_classes,
                sigma=self.sigma,
                size=self.release_size(train_set.image_shape),
                sample_rate=cfg.sample_rate,
                queries=cfg.queries,
                count_weight=cfg.count_weight,
                clip=cfg.clip,
            )
            after_release()
            state["release"] = release_to_state(self.release)
            save_state(out, state)
        released = None
        if self.kind == "central" and self.release is not None:
            released = central_warmup_set(self.release, train_set, self.config, ctx.seed)
            if not (out / "warmup.png").exists():
                save_warmup_grid(out, self.release, released)
        if self.kind == "merf":
            released = self._merf_set(train_set, ctx, out)

        def data(phase: str) -> ImageDataset:
            return self.public if phase == "public" else released

        done = list(state.get("done", []))
        if state.get("phase") in done:  # a finished phase's weights: restore them (zero steps)
            self._pretrain(
                synth, state["phase"], data(state["phase"]), ctx, out, state["checkpoint"]
            )
        for phase in self.phases_named():
            if phase in done:
                continue
            resume = state.get("checkpoint") if state.get("phase") == phase else None
            self._pretrain(synth, phase, data(phase), ctx, out, resume)
            done.append(phase)
            state["done"] = done
            save_state(out, state)

    def _merf_set(self, train_set: ImageDataset, ctx: TrainContext, out: Path) -> ImageDataset:
        """The MERF warm-up set: drawn once (its generator trains for minutes), kept in the
        state so a resumed run reuses it."""
        state = self.state
        if "merf_images" not in state:
            drawn, metrics = warmup_merf.merf_warmup_set(
                self.release, train_set, self.config.images, ctx
            )
            state.update(
                merf_images=torch.from_numpy(drawn.images),
                merf_labels=torch.from_numpy(drawn.labels.astype(np.int64)),
                merf_metrics=metrics,
            )
            save_state(out, state)
        drawn = ImageDataset(
            state["merf_images"].numpy(),
            state["merf_labels"].numpy(),
            list(train_set.class_names),
            name="warmup-merf",
        )
        if not (out / "warmup.png").exists():
            from ..report import save_grid

            save_grid(out / "warmup.png", drawn.images, drawn.labels, drawn.num_classes, 10)
        return drawn

    def _pretrain(
        self,
        synth,
        phase: str,
        data: ImageDataset,
        ctx: TrainContext,
        out: Path,
        resume: dict | None,
    ) -> None:
        state = self.state

        def checkpoint(step: int, train_state: dict, acc) -> None:
            state.update(phase=phase, checkpoint=train_state)
            save_state(out, state)

        pre = TrainContext(
            privacy=None,
            seed=ctx.seed,
            device=ctx.device,
            progress=ctx.progress,
            checkpoint_every=ctx.checkpoint_every,
            checkpoint=checkpoint,
            resume=resume,
        )
        epochs = self.config.epochs or synth.config.epochs
        batch = getattr(synth.config, "batch_size", 1)
        if batch > len(data):
            raise ConfigError(
                f"the {phase} warm-up set has {len(data)} images, fewer than the "
                f"batch size {batch}; lower --batch-size or raise --warmup-set "
                "images=N"
            )
        with overridden(synth.config, epochs=epochs):
            synth.fit(data, pre)
        bad = [
            k
            for k, v in synth.state_dict().items()
            if v.is_floating_point() and not bool(torch.isfinite(v).all())
        ]
        if bad:
            raise TrainingDiverged(
                f"warm-up pretraining ({phase}) diverged: {', '.join(bad[:3])} "
                "became NaN or infinite; lower --warmup-epochs or the learning "
                "rate, then rerun with --overwrite"
            )


def load_public(public_data, dataset: ImageDataset) -> tuple[ImageDataset, str | None]:
    """The user's public images in the private data's shape and label set."""
    from ..data import load_dataset

    c, h, _ = dataset.image_shape
    if isinstance(public_data, ImageDataset):
        public = public_data
    else:
        try:
            public = load_dataset(public_data, image_size=h)
        except DataError as e:
            if "class list is a public input" not in str(e):
                raise
            # IDX/NPZ without a class list: the private data's (public) list, same label set.
            public = load_dataset(public_data, image_size=h, classes=list(dataset.class_names))
    source = (
        None
        if isinstance(public_data, ImageDataset)
        else ("digits" if str(public_data) == "digits" else str(Path(public_data).resolve()))
    )
    if public.image_shape[1:] != (h, h):
        from ..data import resize

        public = resize(public, h)
    if public.image_shape[0] != c:
        raise DataError(
            f"--public-data has {public.image_shape[0]}-channel images, the private "
            f"data {c}; convert the public images to the same colour mode"
        )
    if public.num_classes != dataset.num_classes:
        raise DataError(
            f"--public-data has {public.num_classes} classes, the private data "
            f"{dataset.num_classes}; conditional pretraining needs the same label "
            "set (relabel the public images or leave out --public-data)"
        )
    from ..data.overlap import THUMB_RMS, copies

    exact, near = copies(public, dataset)
    if exact or near:
        raise DataError(
            f"--public-data holds copies of the private data ({exact} identical records, "
            f"{near} images within RMS {THUMB_RMS:g} grey levels of a private image as 8x8 "
            "thumbnails); remove them or pass images that are really public (training on "
            "private images without DP voids the guarantee)"
        )
    return public, source


def central_warmup_set(
    release: CentralRelease, like: ImageDataset, cfg: WarmupConfig, seed: int
) -> ImageDataset:
    """Post-processing of the release: ``images`` augmented full-size copies of the central
    images, classes balanced, seeded by ``seed`` (public randomness)."""
    c, h, w = like.image_shape
    k = like.num_classes
    n = cfg.images or len(like)
    base = torch.from_numpy(release.images).float()
    base = F.interpolate(base, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)
    g = torch.Generator().manual_seed(seed + 7919)
    labels = torch.arange(n) % k
    # One of the central images of each image's class (queries > 1 gives several per class).
    per_class = [np.flatnonzero(release.labels == j) for j in range(k)]
    pick = torch.tensor(
        [per_class[j][i % len(per_class[j])] for i, j in enumerate(labels.tolist())]
    )
    x = base[pick]
    if cfg.augment:
        x = augment(x, g)
    images = (x * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    return ImageDataset(images, labels.numpy(), list(like.class_names), name="warmup-central")


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Mild random affine maps and brightness/contrast jitter (FETA uses RandAugment at
    magnitude 3); pixels 0..1 in and out."""
    n = len(x)

    def uniform(a: float) -> torch.Tensor:
        return (torch.rand(n, generator=g) * 2 - 1) * a

    angle, shear = uniform(math.radians(12)), uniform(0.15)
    scale, shift = 1 + uniform(0.1), torch.stack([uniform(0.1), uniform(0.1)], 1)
    cos, sin = angle.cos() / scale, angle.sin() / scale
    theta = torch.stack(
        [torch.stack([cos, -sin + shear, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)],
        1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # Sample in "ink" space around the corner colour so the border fills like the background.
    background = x[:, :, :1, :1]
    out = F.grid_sample(x - background, grid, align_corners=False) + background
    contrast, brightness = 1 + uniform(0.2), uniform(0.08)
    return (out * contrast[:, None, None, None] + brightness[:, None, None, None]).clamp(0, 1)


@contextlib.contextmanager
def overridden(config, **values):
    old = {k: getattr(config, k) for k in values}
    for k, v in values.items():
        setattr(config, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(config, k, v)


# --- the warm-up state file (tensors and plain values: weights_only loads) ----------------------
def load_state(out: Path) -> dict:
    from ..run import load_train_state

    path = Path(out) / WARMUP_STATE
    return load_train_state(path) if path.exists() else {}


def save_state(out: Path, state: dict) -> None:
    from ..run import save_train_state

    save_train_state(Path(out) / WARMUP_STATE, state)


def release_to_state(r: CentralRelease) -> dict:
    return {
        "images": torch.from_numpy(r.images),
        "labels": torch.from_numpy(r.labels),
        "counts": torch.from_numpy(np.asarray(r.counts, np.float64)),
        "sigma": r.sigma,
        "sample_rate": r.sample_rate,
        "queries": r.queries,
        "size": r.size,
        "clip": r.clip,
        "count_weight": r.count_weight,
    }


def release_from_state(d: dict) -> CentralRelease | warmup_merf.MerfRelease:
    if d.get("kind") == "merf":
        return warmup_merf.release_from_state(d)
    return CentralRelease(
        d["images"].numpy(),
        d["labels"].numpy(),
        d["counts"].numpy(),
        float(d["sigma"]),
        float(d["sample_rate"]),
        int(d["queries"]),
        int(d["size"]),
        float(d["clip"]),
        float(d["count_weight"]),
    )


def save_warmup_grid(out: Path, release: CentralRelease, warmup_set: ImageDataset) -> None:
    """``warmup.png``: per class (row), the released central image(s) at full size, then
    warm-up images made from them (all DP output, covered by the run's guarantee)."""
    from ..report import save_grid

    _, h, w = warmup_set.image_shape
    x = F.interpolate(
        torch.from_numpy(release.images).float(), size=(h, w), mode="bilinear", align_corners=False
    ).clamp(0, 1)
    central = (x * 255).round().to(torch.uint8).numpy()
    k, per = warmup_set.num_classes, max(1, release.queries)
    shown = [np.flatnonzero(warmup_set.labels == j)[: 10 - min(per, 9)] for j in range(k)]
    images = np.concatenate([central, *(warmup_set.images[i] for i in shown)])
    labels = np.concatenate([release.labels, *(warmup_set.labels[i] for i in shown)])
    order = np.argsort(labels, kind="stable")
    save_grid(Path(out) / "warmup.png", images[order], labels[order], k, per_class=10)
