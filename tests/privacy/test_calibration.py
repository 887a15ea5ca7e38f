"""Noise calibration: Opacus' sigma gives the target epsilon within 1% and never above it."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from privsynth.errors import ConfigError, PrivacyError
from privsynth.privacy import (
    PrivacySpec,
    calibrate_noise,
    default_delta,
    epsilon_from_history,
    plan,
)
from privsynth.privacy.dpsgd import sample_rate

# Few examples over a small range: each calibration is an Opacus bisection (~0.5-3 s on 2 cores).
TARGETS = dict(
    epsilon=st.floats(1.0, 8.0),
    delta=st.sampled_from([1e-5, 1e-4]),
    q=st.floats(0.005, 0.05),
    steps=st.integers(50, 400),
)


def check_calibration(accountant, epsilon, delta, q, steps):
    sigma = calibrate_noise(epsilon, delta, q, steps, accountant)
    got = epsilon_from_history([(sigma, q, steps)], delta, accountant)
    assert 0.99 * epsilon <= got <= epsilon * (1 + 1e-9)


@settings(max_examples=2, deadline=None, derandomize=True)
@given(**TARGETS)
def test_calibrated_sigma_hits_target_prv(epsilon, delta, q, steps):
    check_calibration("prv", epsilon, delta, q, steps)


@settings(max_examples=4, deadline=None, derandomize=True)
@given(**TARGETS)
def test_calibrated_sigma_hits_target_rdp(epsilon, delta, q, steps):
    check_calibration("rdp", epsilon, delta, q, steps)


def test_impossible_target_names_the_fix():
    with pytest.raises(PrivacyError, match="raise --epsilon or train fewer steps"):
        calibrate_noise(1e-6, 1e-5, 0.01, 100, "rdp")


def test_plan_matches_the_poisson_loader():
    # q = min(1, B / N_hat) and delta = 1 / (10 N_hat): from the released size, not the exact N
    spec = PrivacySpec(epsilon=None, noise_multiplier=1.3, size=1037)
    p = plan(spec, n_private=1000, expected_batch_size=64, steps=10)
    assert p.sample_rate == sample_rate(1037, 64) == 64 / 1037
    assert p.noise_multiplier == 1.3 and p.delta == default_delta(1037)
    # and Opacus' loader and accountant see exactly the plan's q
    from privsynth.privacy.dpsgd import TensorBatches, backward, make_private

    data = TensorBatches(torch.randn(1000, 4), torch.zeros(1000, dtype=torch.long))
    for mode in ("bk", "hooks"):
        module = torch.nn.Linear(4, 2)
        opt = torch.optim.SGD(module.parameters(), lr=0.1)
        s = spec.replace(grad_sample_mode=mode)
        trained, optimizer, loader, engine = make_private(module, opt, data, p, s)
        assert loader.sample_rate == p.sample_rate
        assert optimizer.expected_batch_size == pytest.approx(64)  # q * N_hat: public
        x, y = next(iter(loader))  # one DP step: what the accountant books for it
        backward(trained, lambda m, a, b: m(a).pow(2).mean(), x, y)
        optimizer.step()
        assert engine.accountant.history == [(1.3, p.sample_rate, 1)]


def test_plan_rejects_batch_larger_than_data():
    with pytest.raises(ConfigError, match="lower --batch-size"):
        plan(PrivacySpec(noise_multiplier=1.0), n_private=10, expected_batch_size=32, steps=5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epsilon": 0}, "positive finite"),
        ({"epsilon": float("inf")}, "--no-dp"),
        ({"delta": 1.0}, "delta must lie"),
        ({"accountant": "gdp"}, "choose one of"),
        ({"noise_multiplier": -1}, "noise multiplier"),
        ({"max_grad_norm": 0}, "clip norm"),
    ],
)
def test_spec_rejects_bad_values(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PrivacySpec(**kwargs)


def test_no_steps_spend_nothing():
    assert epsilon_from_history([], 1e-5) == 0.0
    assert epsilon_from_history([(1.0, 0.1, 0)], 1e-5) == 0.0
