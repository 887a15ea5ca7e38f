"""Pretraining before DP fine-tuning, for every DP-SGD method: ``--warmup central`` (a warm-up on
DP central images, DP-FETA's "easy stage"), ``--warmup merf`` (on the draws of a generator trained
against a DP-MERF release, `models.warmup_merf`) and ``--public-data PATH`` (images the user
declares public). What each phase trains on: `models.warmup_sets`; what a resumed run reuses:
`models.warmup_state`.

One generic path: each phase is the method's *own non-private fit* (``synth.fit`` with
``privacy=None``) on a warm-up set, for ``epochs`` passes over it; DP-SGD then starts from those
weights (a fresh optimizer, the same modules). Phases run in order: public data, then central
images (or MERF draws). Nothing here reads the private images except the one accounted release
(`privacy.central.release_central` or `warmup_merf.release_merf`); the warm-up set is built
from its output (post-processing) and the public images (no privacy claimed for them, none
spent).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..data import ImageDataset
from ..errors import ConfigError, TrainingDiverged
from ..privacy.accounting import epsilon_from_history
from ..privacy.central import CentralRelease, central_sigma, release_central
from ..privacy.release import Release, gaussian
from . import warmup_merf
from .base import TrainContext
from .warmup_sets import (
    WarmupConfig,
    central_warmup_set,
    load_public,
    save_warmup_grid,
    warmup_config,
)
from .warmup_state import (  # noqa: F401  (WARMUP_STATE: the trainer reads it here)
    WARMUP_STATE,
    load_state,
    release_from_state,
    release_to_state,
    save_state,
)

WARMUPS = ("none", "central", "merf")
RELEASES = ("central", "merf")  # the kinds that spend part of epsilon on a release
# WarmupConfig's options that only the central release reads
CENTRAL_ONLY = ("size", "clip", "count_weight", "sample_rate", "queries", "augment")
COMPOSED = (  # how either release (central, merf) is accounted, as the card says it
    "first entry of the DP-SGD accountant's history: one Opacus accountant composes the release "
    "and DP-SGD exactly"
)
MECHANISMS = {
    "central": "Gaussian mechanism (OpenDP noise) on per-class sums of clipped "
    "low-resolution images, L2 sensitivity 1; DP-FETA's central images",
    "merf": "Gaussian mechanism (OpenDP noise) on per-class sums of norm-1 "
    "random Fourier features (dpmerf's release), L2 sensitivity 1; the warm-up set "
    "is drawn from a dpmerf generator trained on it (post-processing)",
}


class WarmUp:
    """The pretraining phases of one run (built by `privsynth.train`; None when there are none)."""

    def __init__(self, kind: str, public, public_source: str | None, config: WarmupConfig):
        self.kind, self.public, self.public_source = kind, public, public_source
        self.config = config
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
        central_only = sorted(
            k for k in CENTRAL_ONLY if getattr(cfg, k) != getattr(WarmupConfig, k)
        )
        if kind == "merf" and central_only:
            raise ConfigError(
                f"warm-up option(s) {central_only} shape the central release; "
                "--warmup merf takes share, sigma, epochs and images only (add "
                "--warmup central to use them)"
            )
        if public_data is None:
            return cls(kind, None, None, cfg)
        return cls(kind, *load_public(public_data, dataset), cfg)

    # --- what the run's request, card and accountant see -------------------------------------
    def request(self) -> dict:
        return {
            "kind": self.kind,
            "config": dataclasses.asdict(self.config),
            "public": self.public.fingerprint if self.public is not None else None,
        }

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
        if self.kind in RELEASES:
            cfg, r, hist = self.config, self.release, self.planned().history
            if self.kind == "central":
                sampling = {"sample_rate": cfg.sample_rate, "queries": cfg.queries}
                shape = {
                    "size": r.size if r else cfg.size,
                    "clip": r.clip if r else cfg.clip,
                    "count_weight": cfg.count_weight,
                }
            else:
                sampling, shape = {}, {"generator": self.state.get("merf_metrics")}
            out[self.kind] = {
                "mechanism": MECHANISMS[self.kind],
                "noise_multiplier": self.sigma,
                **sampling,
                "share": cfg.share if cfg.sigma is None else None,
                "epsilon_alone": epsilon_from_history(hist, delta, accountant),
                "history": [list(h) for h in hist],
                **shape,
                "released": r is not None,
                "composed": COMPOSED,
            }
        return out

    def phases_named(self) -> list[str]:
        public = ["public"] if self.public is not None else []
        return public + ([self.kind] if self.kind in RELEASES else [])

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
        state, cfg = self.state, self.config
        if self.kind in RELEASES and self.release is None:
            before_release()
            if self.kind == "merf":
                self.release = warmup_merf.release_merf(train_set, self.sigma)
            else:
                self.release = release_central(
                    train_set.images,
                    train_set.labels,
                    train_set.num_classes,
                    sigma=self.sigma,
                    size=cfg.size or max(1, train_set.image_shape[1] // 2),
                    sample_rate=cfg.sample_rate,
                    queries=cfg.queries,
                    count_weight=cfg.count_weight,
                    clip=cfg.clip,
                )
            after_release()
            state["release"] = release_to_state(self.release)
            save_state(out, state)
        sets = {"public": self.public}
        if self.kind == "central":
            sets["central"] = central_warmup_set(self.release, train_set, cfg, ctx.seed)
        if self.kind == "merf":
            padding = getattr(getattr(synth, "config", None), "g_padding", None)
            sets["merf"] = self._merf_set(train_set, ctx, out, padding)
        if self.kind in RELEASES and not (out / "warmup.png").exists():
            central = self.release if self.kind == "central" else None
            save_warmup_grid(out, sets[self.kind], central)
        done = list(state.get("done", []))
        if state.get("phase") in done:  # a finished phase's weights: restore them (zero steps)
            self._pretrain(
                synth, state["phase"], sets[state["phase"]], ctx, out, state["checkpoint"]
            )
        for phase in self.phases_named():
            if phase in done:
                continue
            resume = state.get("checkpoint") if state.get("phase") == phase else None
            self._pretrain(synth, phase, sets[phase], ctx, out, resume)
            done.append(phase)
            state["done"] = done
            save_state(out, state)

    def _merf_set(
        self, train_set: ImageDataset, ctx: TrainContext, out: Path, padding: str | None
    ) -> ImageDataset:
        """The MERF warm-up set: drawn once (its generator trains for minutes), kept in the
        state so a resumed run reuses it."""
        state = self.state
        if "merf_images" not in state:
            drawn, metrics = warmup_merf.merf_warmup_set(
                self.release, train_set, self.config.images, ctx, padding
            )
            state.update(
                merf_images=torch.from_numpy(drawn.images),
                merf_labels=torch.from_numpy(drawn.labels.astype(np.int64)),
                merf_metrics=metrics,
            )
            save_state(out, state)
        return ImageDataset(
            state["merf_images"].numpy(),
            state["merf_labels"].numpy(),
            list(train_set.class_names),
            name="warmup-merf",
        )

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

        pre = TrainContext.of(ctx, None, checkpoint=checkpoint, resume=resume)
        config = synth.config
        batch = getattr(config, "batch_size", 1)
        if batch > len(data):
            raise ConfigError(
                f"the {phase} warm-up set has {len(data)} images, fewer than the "
                f"batch size {batch}; lower --batch-size or raise --warmup-set "
                "images=N"
            )
        # the phase's epochs, on a copy: the DP phase keeps the method's own config
        synth.config = dataclasses.replace(config, epochs=self.config.epochs or config.epochs)
        try:
            synth.fit(data, pre)
        finally:
            synth.config = config
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
