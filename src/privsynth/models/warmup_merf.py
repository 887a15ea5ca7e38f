"""``--warmup merf``: pretrain a DP-SGD method on images drawn from a DP-MERF generator.

DP-FETA pretrains on a cheap DP release before DP-SGD (its "easy stage", our ``--warmup
central``). This release is the ``dpmerf`` method's own (`models.merf`): per-class sums of norm-1
random Fourier features of the private images (L2 sensitivity 1 under add/remove of one image with
its label) plus one Gaussian draw per entry at noise multiplier ``sigma`` (OpenDP, OS CSPRNG).
A ``dpmerf`` generator with the recommended settings for the private set's size is trained
against it, and ``images`` of its draws are the warm-up set: all of it post-processing. Its
training (10 CPU-minutes on 8 000 28x28 images) is the warm-up's main cost, so the drawn set is
kept in ``warmup_state.pt``. Accounting: the history entry ``(sigma, 1.0, 1)``, first in
DP-SGD's history (``PrivacySpec.prior``): one Opacus accountant composes both exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data import ImageDataset
from ..privacy.mechanisms import gaussian_noise_release
from ..privacy.release import Release, gaussian
from .base import TrainContext
from .defaults import recommended_config
from .merf import MERFConfig, MERFSynthesizer


@dataclass
class MerfRelease:
    """The noisy feature-by-class sums (features x classes, norm-1 features) and their sigma."""

    released: torch.Tensor
    sigma: float

    @property
    def release(self) -> Release:
        """The draw as a `Release`, with the training-set size its count feature carries."""
        return gaussian("warmup.merf", self.sigma).with_count(self.total_count(), COUNT_HOW)

    @property
    def history(self) -> list[tuple[float, float, int]]:
        return self.release.history

    def total_count(self) -> float:
        """The training-set size as the release's count feature has it (norm-1 features,
        dpmerf's default count weight, as `merf_method` builds them): post-processing."""
        return float(self.released[-1].double().sum()) / MERFConfig().count_weight ** 0.5


COUNT_HOW = "the count feature of the DP-MERF warm-up release, summed over classes"


def merf_method(like: ImageDataset, padding: str | None = None) -> MERFSynthesizer:
    """A ``dpmerf`` model with its recommended settings for ``like``'s size (public: the size);
    ``padding``: its generator's (the warmed method's own, where it has one)."""
    config = recommended_config("dpmerf", len(like), channels=like.image_shape[0])
    if padding is not None:
        config["g_padding"] = padding
    return MERFSynthesizer(like.image_shape, like.num_classes, config)


def release_merf(train_set: ImageDataset, sigma: float) -> MerfRelease:
    """The one private step: the private images' feature sums plus Gaussian noise."""
    exact = merf_method(train_set).statistic(train_set, 1.0)
    noisy, _ = gaussian_noise_release(exact, sigma)  # its Release: MerfRelease.release
    return MerfRelease(noisy.float(), float(sigma))


def merf_warmup_set(
    release: MerfRelease, like: ImageDataset, images: int | None, ctx, padding: str | None = None
) -> tuple:
    """Post-processing of the release: train the generator against it (seeded by ``ctx.seed``),
    then draw ``images`` (default: as many as the private set), classes balanced. Returns the
    set and the generator's metrics. ``padding``: see `merf_method` (a zero-padded warm-up set
    of colour images carries a bright frame into the warmed GAN)."""
    torch.manual_seed(ctx.seed)  # the generator's initial weights too: the set follows the seed
    synth = merf_method(like, padding)
    quiet = TrainContext(privacy=None, seed=ctx.seed, device=ctx.device, progress=ctx.progress)
    fit = synth.fit_released(release.released, quiet)
    k, n = like.num_classes, images or len(like)
    labels = np.arange(n) % k
    drawn = synth.sample(n, labels, seed=ctx.seed + 7919)
    return ImageDataset(drawn, labels, list(like.class_names), name="warmup-merf"), fit.metrics
