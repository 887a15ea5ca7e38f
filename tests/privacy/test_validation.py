"""Non-finite privacy parameters are refused with the fix, never silently accepted."""

from __future__ import annotations

import math

import pytest

from privsynth.errors import ConfigError
from privsynth.privacy import PrivacySpec
from privsynth.privacy.mechanisms import count_spend


@pytest.mark.parametrize(
    "kwargs",
    [
        {"noise_multiplier": math.nan},
        {"noise_multiplier": math.inf},
        {"max_grad_norm": math.nan},
        {"max_grad_norm": math.inf},
        {"epsilon": math.nan},
        {"delta": math.nan},
    ],
)
def test_spec_refuses_non_finite(kwargs):
    with pytest.raises(ConfigError, match="finite|must lie"):
        PrivacySpec(**kwargs)


@pytest.mark.parametrize("eps", [0.0, -1.0, math.nan, math.inf])
def test_counts_epsilon_must_be_finite_positive(eps):
    with pytest.raises(ConfigError, match="--counts-epsilon"):
        count_spend("laplace", eps, 0.0)
    assert count_spend("uniform", eps, 0.0) == (0.0, 0.0)  # uniform spends nothing, needs nothing
