"""The shared generator: samples of one class must differ across z, before and after training.

The generator before this one put out one image per class when sampled (eval-mode BatchNorm with
statistics that did not describe it): its within-class spread at init was 0.08 of the real data's
on digits. Spread here is in raw pixels, so a near-constant class cannot hide behind a
per-image standardisation.
"""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist

import privsynth
from privsynth.data import load_split
from privsynth.errors import CheckpointError, ConfigError
from privsynth.models.generator import Generator, check_generator_weights
from privsynth.models.registry import create


def raw_spread(images: np.ndarray, labels: np.ndarray, k: int) -> float:
    flat = images.reshape(len(images), -1).astype(float)
    return float(np.mean([pdist(flat[labels == c]).mean() for c in range(k)]))


@pytest.fixture(scope="module")
def digits():
    train, _ = load_split("digits")
    return train, raw_spread(train.images, train.labels, 10)


@pytest.mark.parametrize("method", ["dpgan", "dpmerf", "dpkernel"])
def test_untrained_samples_of_one_class_differ(method, digits):
    train, real = digits
    synth = create(method, train.image_shape, 10, {}, private=True)
    labels = np.repeat(np.arange(10), 30)
    images = synth.sample(len(labels), labels=labels, seed=0)
    assert raw_spread(images, labels, 10) > 0.3 * real


def test_trained_samples_keep_the_real_spread(tmp_path, digits):
    train, real = digits
    run = privsynth.train(
        "digits",
        "dpkernel",
        tmp_path / "k",
        no_dp=True,
        config={"steps": 300, "batch_size": 100},
        progress=False,
    )
    labels = np.repeat(np.arange(10), 30)
    images, _ = run.sample(len(labels), labels=labels, seed=0)
    assert 0.5 * real < raw_spread(images, labels, 10) < 1.5 * real


def test_eval_mode_matches_train_mode_spread_at_init():
    """calibrate() fills BatchNorm's statistics, so sampling (eval mode) is not a collapsed copy
    of training (train mode)."""
    G = Generator(1, 28, 10, width=16, z_dim=16)
    z, y = torch.randn(200, 16), torch.full((200,), 3)
    with torch.no_grad():
        train_spread = G.train()(z, y).std(0).mean()
        eval_spread = G.eval()(z, y).std(0).mean()
    assert eval_spread > 0.5 * train_spread


def test_weights_of_the_old_generator_are_refused_in_one_line():
    with pytest.raises(CheckpointError, match="retrain"):
        check_generator_weights({"g_ema.blocks.0.weight": torch.zeros(1)}, "g_ema.")


def uniform_output(padding: str) -> torch.Tensor:
    """The generator's image when its base map is the same at every pixel (per channel)."""
    torch.manual_seed(0)
    G = Generator(3, 32, 10, width=16, z_dim=8, padding=padding).eval()
    last, norm = G.fc[3], G.fc[4]  # the Linear that writes the base map and its BatchNorm
    with torch.no_grad():
        norm.reset_running_stats()  # identity (its statistics differ per pixel)
        last.weight.zero_()  # a bias per channel only
        last.bias.copy_(torch.randn(16, 1).expand(16, G.base**2).reshape(-1))
        return G(torch.randn(4, 8), torch.arange(4))


def test_reflect_padding_keeps_a_uniform_map_uniform_to_the_border():
    """Zero padding makes the edge pixels differ from the interior even when nothing in the
    input does: the seed of the frame DP-trained generators drew round CIFAR images."""
    reflect, zeros = uniform_output("reflect"), uniform_output("zeros")
    assert (reflect - reflect[..., 16:17, 16:17]).abs().max() < 1e-5
    assert (zeros[..., 0, :] - zeros[..., 16:17, 16]).abs().max() > 1e-2


@pytest.mark.parametrize("method", ["dpgan", "dpmerf"])
def test_unknown_generator_padding_is_refused_in_one_line(method):
    with pytest.raises(ConfigError, match="padding 'circle'.*reflect"):
        create(method, (1, 8, 8), 10, {"g_padding": "circle"}, private=True)
