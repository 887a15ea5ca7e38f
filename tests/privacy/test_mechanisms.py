"""Class-proportion release through OpenDP's Laplace / Gaussian count mechanisms."""

from __future__ import annotations

import numpy as np
import pytest

from privsynth.errors import ConfigError
from privsynth.privacy.mechanisms import release_proportions

COUNTS = np.array([500, 300, 200])


def test_uniform_is_free():
    props, eps, delta = release_proportions(COUNTS, "uniform", 1.0, 1e-5)
    np.testing.assert_allclose(props, 1 / 3)
    assert (eps, delta) == (0.0, 0.0)


@pytest.mark.parametrize("mechanism, delta", [("laplace", 0.0), ("gaussian", 1e-6)])
def test_noisy_release_is_a_distribution_near_the_truth(mechanism, delta):
    props, eps, d = release_proportions(COUNTS, mechanism, 1.0, delta)
    assert props.sum() == pytest.approx(1.0) and (props > 0).all()
    np.testing.assert_allclose(props, COUNTS / COUNTS.sum(), atol=0.05)  # noise scale ~1-5 counts
    assert eps == 1.0 and d == delta


def test_bad_arguments():
    with pytest.raises(ConfigError, match="choose one of"):
        release_proportions(COUNTS, "exponential", 1.0, 0.0)
    with pytest.raises(ConfigError, match="--counts-epsilon must be .*> 0"):
        release_proportions(COUNTS, "laplace", 0.0, 0.0)
    with pytest.raises(ConfigError, match="use laplace for pure DP"):
        release_proportions(COUNTS, "gaussian", 1.0, 0.0)


@pytest.mark.parametrize("epsilon", [0.5, 2.0])
def test_laplace_privacy_map_and_noise_scale(epsilon):
    """OpenDP's privacy map says the release is epsilon-DP at sensitivity 1, the scale is the
    textbook 1/epsilon, and the noise drawn has the discrete Laplace's spread (not zero)."""
    from privsynth.privacy.mechanisms import calibrated

    meas, scale = calibrated("laplace", epsilon, 0.0)
    assert meas.map(1) <= epsilon * (1 + 1e-9)
    assert scale == pytest.approx(1 / epsilon, rel=1e-3)
    noise = np.asarray(meas([1000] * 20000), dtype=np.float64) - 1000
    e = np.exp(-1 / scale)  # discrete Laplace variance: 2 e^(-1/s) / (1 - e^(-1/s))^2
    assert noise.std() == pytest.approx(np.sqrt(2 * e) / (1 - e), rel=0.05)
    assert abs(noise.mean()) < 0.1


def test_gaussian_privacy_map_and_noise_scale():
    from privsynth.privacy.mechanisms import calibrated

    eps, delta = 1.0, 1e-6
    meas, scale = calibrated("gaussian", eps, delta)
    got_eps, got_delta = meas.map(1.0)
    assert got_eps <= eps * (1 + 1e-9) and got_delta == delta
    # Between the analytic Gaussian's optimum and the classical sqrt(2 ln(1.25/delta)) / epsilon.
    assert 3.5 < scale < np.sqrt(2 * np.log(1.25 / delta)) / eps
    tighter, _ = calibrated("gaussian", eps * 1.5, delta)  # less noise would break the target
    assert tighter.map(1.0)[0] > eps
    noise = np.asarray(meas([1000] * 20000), dtype=np.float64) - 1000
    assert noise.std() == pytest.approx(scale, rel=0.05)


def test_noise_reaches_the_released_proportions():
    """The same counts released twice differ (by about the mechanism's scale), so what the card
    publishes carries the noise; a zero-noise release would repeat exactly."""
    releases = np.stack([release_proportions(COUNTS, "laplace", 0.5, 0.0)[0] for _ in range(60)])
    spread_in_counts = (releases * COUNTS.sum()).std(axis=0)
    assert (spread_in_counts > 1.0).all() and (spread_in_counts < 6.0).all()  # scale 2 -> ~2.8
