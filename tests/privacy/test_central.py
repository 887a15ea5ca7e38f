"""The warm-up's central-image release: sensitivity, noise that reaches what is released, and the
calibration of DP-SGD after it (one accountant over the combined history)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from privsynth.privacy.accounting import calibrate_noise, epsilon_from_history
from privsynth.privacy.central import features, max_norm, release_central


def _data(n=600, k=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % k
    images = rng.integers(0, 256, size=(n, 1, 8, 8), dtype=np.uint8)
    return images, labels


def test_each_image_contributes_at_most_norm_one():
    images, _ = _data()
    images[0] = 255  # the brightest possible image
    v = features(images, size=4, clip=max_norm(1, 4), count_weight=0.3)
    assert float(v.norm(dim=1).max()) <= 1 + 1e-9
    # A smaller clip binds and still bounds the norm (the sensitivity) by 1.
    v = features(images, size=4, clip=0.5, count_weight=0.3)
    assert float(v.norm(dim=1).max()) == pytest.approx(1.0, abs=1e-9)


def test_without_noise_the_release_is_the_class_means_and_counts():
    images, labels = _data()
    r = release_central(images, labels, 3, sigma=1e-9, size=4)
    x = torch.from_numpy(images).double() / 255
    for k in range(3):
        want = torch.nn.functional.adaptive_avg_pool2d(x[labels == k], 4).mean(0).numpy()
        np.testing.assert_allclose(r.images[k], want, atol=1e-6)
    np.testing.assert_allclose(r.counts, np.bincount(labels), atol=1e-5)


def test_noise_reaches_the_released_central_images_at_the_expected_scale():
    images, labels = _data(n=900)
    sigma, size, cw = 2.0, 4, 0.3
    # 20 pairs of releases: 960 pixel differences pin the std down to ~3% (one pair's 48 would
    # miss a 25% band about 2% of the time).
    releases = [
        release_central(images, labels, 3, sigma=sigma, size=size, count_weight=cw).images
        for _ in range(40)
    ]
    diff = np.concatenate(
        [(a - b).ravel() for a, b in zip(releases[::2], releases[1::2], strict=True)]
    )
    assert np.abs(releases[0] - releases[1]).max() > 0  # fresh noise in each release
    # Each pixel of a mean is (sum + N(0, sigma^2)) * clip / (a * count): the difference of two
    # releases has std sqrt(2) * sigma * clip / (a * count) (counts are ~300, noise on them ~2%).
    clip, count = max_norm(1, size), 300
    expected = math.sqrt(2) * sigma * clip / (math.sqrt(1 - cw**2) * count)
    assert diff.std() == pytest.approx(expected, rel=0.25)


def test_with_huge_sigma_the_central_images_are_noise():
    images, labels = _data()
    images[labels == 0] //= 8  # class structure: class 0 is much darker than the others
    images[labels == 1, :, :4] = 255  # class 1 has a bright top half
    clean = release_central(images, labels, 3, sigma=1e-9, size=8)
    noisy = release_central(images, labels, 3, sigma=1e5, size=8)
    truth = clean.images.ravel() - clean.images.mean()

    def corr(r):
        x = r.images.ravel() - r.images.mean()
        return float(x @ truth / (np.linalg.norm(x) * np.linalg.norm(truth)))

    assert corr(release_central(images, labels, 3, sigma=0.5, size=8)) > 0.95
    # 192 released values; noise alone correlates with the truth at ~N(0, 1/sqrt(192)).
    assert abs(corr(noisy)) < 0.35
    assert np.abs(noisy.counts - 200).max() > 1000  # the counts are noise too


def test_poisson_queries_release_one_central_image_per_class_each():
    images, labels = _data()
    r = release_central(images, labels, 3, sigma=1.0, size=4, sample_rate=0.5, queries=3)
    assert r.images.shape == (9, 1, 4, 4)
    assert list(r.labels) == [0, 1, 2] * 3
    assert r.history == [(1.0, 0.5, 3)]
    # Each query sums a Poisson sample of about half the images (the noisy count shows it).
    assert np.all(np.abs(r.counts - 100) < 40)


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_dp_sgd_is_calibrated_over_the_release_and_its_own_steps(accountant):
    prior = [(3.0, 1.0, 1)]
    eps, delta, q, steps = 2.0, 1e-5, 0.05, 200
    sigma = calibrate_noise(eps, delta, q, steps, accountant, prior=prior)
    total = epsilon_from_history([*prior, (sigma, q, steps)], delta, accountant)
    assert eps * 0.99 <= total <= eps
    # The release costs DP-SGD some noise, far less than a naive sum would charge.
    alone = calibrate_noise(eps, delta, q, steps, accountant)
    release = epsilon_from_history(prior, delta, accountant)
    naive = calibrate_noise(eps - release, delta, q, steps, accountant)
    assert alone < sigma < naive


def test_a_release_that_eats_the_target_is_refused():
    from privsynth.errors import PrivacyError

    with pytest.raises(PrivacyError, match="warm-up release alone"):
        calibrate_noise(0.5, 1e-5, 0.1, 10, "rdp", prior=[(0.5, 1.0, 1)])
