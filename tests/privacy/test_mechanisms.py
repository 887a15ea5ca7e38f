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
