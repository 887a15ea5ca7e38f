"""The conditional DCGAN: shapes per image size, config errors, EMA, DP-compatibility, labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from opacus.validators import ModuleValidator

from privsynth.errors import ConfigError
from privsynth.models import TrainContext
from privsynth.models.engine import update_ema
from privsynth.models.gan import GANConfig, GANSynthesizer, halvings
from privsynth.privacy import PrivacySpec

TINY = {"width": 4, "g_width": 4, "z_dim": 4}


@pytest.mark.parametrize("size,channels", [(8, 1), (28, 1), (32, 3), (64, 3)])
def test_shapes_per_image_size(size, channels):
    synth = GANSynthesizer((channels, size, size), 5, TINY)
    images = synth.sample(6, labels=np.arange(6) % 5, seed=1)
    assert images.shape == (6, channels, size, size) and images.dtype == np.uint8
    x = torch.zeros(3, channels, size, size)
    assert synth.discriminator(x, torch.tensor([0, 1, 4])).shape == (3,)


@pytest.mark.parametrize("size", [8, 28, 32, 64])
def test_discriminator_is_dp_compatible(size):
    synth = GANSynthesizer((1, size, size), 3, TINY)
    kinds = {type(m) for m in synth.discriminator.modules()}
    assert not any(issubclass(k, torch.nn.modules.batchnorm._BatchNorm) for k in kinds)
    assert ModuleValidator.validate(synth.discriminator, strict=False) == []


@pytest.mark.parametrize("shape", [(1, 30, 30), (1, 9, 9), (1, 6, 6), (1, 100, 100), (1, 28, 32)])
def test_sizes_that_do_not_fit_name_the_fix(shape):
    with pytest.raises(ConfigError, match="image-size"):
        GANSynthesizer(shape, 3, TINY)


def test_halvings():
    assert [halvings(s) for s in (8, 28, 32, 64)] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "bad",
    [
        {"loss": "wgan"},
        {"n_d": 0},
        {"batch_size": 0},
        {"ema": 1.0},
        {"epochs": 0},
        {"aux": -1.0},
        {"snapshots": 0},
        {"snapshots": 3, "snapshot_gap": 0.5},  # the earliest would sit at the start
        {"sample_snapshots": 2},  # more than the one kept
        {"snapshots": 3, "sample_snapshots": "abc"},
        {"nonsense": 1},
    ],
)
def test_bad_config_is_a_config_error(bad):
    with pytest.raises(ConfigError):
        GANSynthesizer((1, 8, 8), 3, bad)


def test_defaults_round_trip_through_config_dict():
    synth = GANSynthesizer((1, 8, 8), 3, {"n_d": 7, "loss": "hinge"})
    assert GANConfig(**synth.config_dict()) == synth.config


def test_ema_update_is_an_exponential_average():
    synth = GANSynthesizer((1, 8, 8), 3, TINY)
    G, G_ema = synth.generator, synth.g_ema
    before = {k: v.clone() for k, v in G_ema.state_dict().items()}
    with torch.no_grad():
        for p in G.parameters():
            p.add_(1.0)
    update_ema(G, G_ema, 0.9)
    for k, v in G_ema.state_dict().items():
        if v.dtype.is_floating_point:
            torch.testing.assert_close(v, 0.9 * before[k] + 0.1 * G.state_dict()[k])
    update_ema(G, G_ema, 0.0)  # 0 disables the average: a plain copy
    for k, v in G_ema.state_dict().items():
        torch.testing.assert_close(v, G.state_dict()[k])


def test_batch_larger_than_data_is_a_config_error(tiny_dataset):
    synth = GANSynthesizer((1, 8, 8), 3, {**TINY, "batch_size": 1000})
    with pytest.raises(ConfigError, match="batch"):
        synth.fit(tiny_dataset, TrainContext(privacy=None, progress=False))


def test_dp_and_non_dp_run_the_same_schedule(tiny_dataset):
    cfg = {**TINY, "epochs": 2, "batch_size": 30, "n_d": 3}
    dp = GANSynthesizer((1, 8, 8), 3, cfg).fit(
        tiny_dataset, TrainContext(privacy=PrivacySpec(epsilon=5), progress=False)
    )
    plain = GANSynthesizer((1, 8, 8), 3, cfg, private=False, name="gan").fit(
        tiny_dataset, TrainContext(privacy=None, progress=False)
    )
    assert dp.steps == plain.steps == GANConfig(**cfg).d_steps(len(tiny_dataset))
    assert dp.accountant.steps == dp.steps


def test_state_dict_round_trip_gives_identical_samples():
    a = GANSynthesizer((1, 8, 8), 3, TINY)
    b = GANSynthesizer((1, 8, 8), 3, TINY)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a.sample(10, seed=3), b.sample(10, seed=3))


def test_conditional_sampling_respects_labels(tiny_dataset):
    """Class k's bright square sits in rows 2k..2k+2; a briefly trained GAN puts it there."""
    synth = GANSynthesizer(
        (1, 8, 8),
        3,
        {
            "epochs": 60,
            "batch_size": 40,
            "n_d": 1,
            "width": 16,
            "g_width": 16,
            "z_dim": 8,
            "lr_d": 1e-3,
            "lr_g": 1e-3,
            "ema": 0.9,
        },
        private=False,
        name="gan",
    )
    synth.fit(tiny_dataset, TrainContext(privacy=None, progress=False))
    hits = 0
    for k in range(3):
        images = synth.sample(60, labels=[k] * 60, seed=k).astype(float)
        band = [images[:, 0, 2 * j : 2 * j + 3, 2:6].mean() for j in range(3)]
        hits += int(np.argmax(band) == k)
    assert hits == 3


@pytest.mark.parametrize("mode", ["bk", "hooks"])
def test_auxiliary_classifier_trains_under_dp_and_round_trips(tiny_dataset, mode):
    """``aux`` > 0 adds a class head to D; DP training books every step, the head's weights move
    and are saved with the discriminator (white-box scores load it back)."""
    cfg = {**TINY, "epochs": 2, "batch_size": 30, "n_d": 2, "aux": 1.0}
    synth = GANSynthesizer((1, 8, 8), 3, cfg)
    before = synth.discriminator.classify.weight.detach().clone()
    fit = synth.fit(
        tiny_dataset,
        TrainContext(privacy=PrivacySpec(epsilon=5, grad_sample_mode=mode), progress=False),
    )
    assert fit.accountant.steps == fit.steps
    assert not torch.equal(before, synth.discriminator.classify.weight.detach())
    again = GANSynthesizer((1, 8, 8), 3, cfg)
    again.load_state_dict(synth.state_dict())
    torch.testing.assert_close(
        again.discriminator.classify.weight, synth.discriminator.classify.weight
    )
    assert GANSynthesizer((1, 8, 8), 3, TINY).discriminator.classify is None


def test_snapshots_are_taken_late_in_training_released_and_mixed(tiny_dataset):
    """``snapshots`` keeps earlier EMA generators (post-processing of the DP run), saves them
    with the weights, and sampling draws each image from one of them."""
    cfg = {**TINY, "epochs": 4, "batch_size": 30, "n_d": 1, "snapshots": 3, "snapshot_gap": 0.25}
    synth = GANSynthesizer((1, 8, 8), 3, cfg)

    def flat(g):
        return torch.cat([w.detach().flatten() for w in g.parameters()])

    init = flat(synth.g_ema)
    fit = synth.fit(tiny_dataset, TrainContext(privacy=PrivacySpec(epsilon=5), progress=False))
    assert synth.snap_at == [round(fit.steps * 0.5), round(fit.steps * 0.75)]
    weights = [flat(g) for g in (*synth.g_snaps, synth.g_ema)]
    for i, w in enumerate(weights):  # three different generators, none of them the initial one
        assert not torch.equal(w, init)
        assert all(not torch.equal(w, other) for other in weights[i + 1 :])
    assert set(synth.train_state()["g_snaps"]) == set(synth.g_snaps.state_dict())

    again = GANSynthesizer((1, 8, 8), 3, cfg)
    again.load_state_dict(synth.state_dict())
    mixed = again.sample(90, seed=1)
    np.testing.assert_array_equal(mixed, synth.sample(90, seed=1))
    again.config.sample_snapshots = 1  # the final EMA generator only, same latents
    last = again.sample(90, seed=1)
    same = (mixed == last).reshape(90, -1).all(1)
    assert 0 < same.mean() < 1  # about a third of the rows come from the final generator


def test_dp_randomness_reaches_every_released_snapshot(tiny_dataset):
    """The snapshots are trained against the noised discriminator: two DP runs with the same
    seed release different generators at every snapshot (the noise and Poisson batches come from
    OS entropy), while two runs without DP and the same seed release identical ones."""
    cfg = {**TINY, "epochs": 2, "batch_size": 30, "n_d": 1, "snapshots": 3, "snapshot_gap": 0.25}

    def released(privacy) -> dict[str, torch.Tensor]:
        synth = GANSynthesizer((1, 8, 8), 3, cfg, private=privacy is not None)
        synth.fit(tiny_dataset, TrainContext(privacy=privacy, progress=False, seed=0))
        state = synth.state_dict()
        return {
            g: torch.cat([v.flatten() for k, v in state.items() if k.startswith(g + ".")])
            for g in ("g_snap0", "g_snap1", "g_ema")
        }

    spec = PrivacySpec(epsilon=None, noise_multiplier=2.0, accountant="rdp")
    dp_a, dp_b = released(spec), released(spec)
    plain_a, plain_b = released(None), released(None)
    for g in ("g_snap0", "g_snap1", "g_ema"):
        assert torch.equal(plain_a[g], plain_b[g])
        assert not torch.equal(dp_a[g], dp_b[g])
