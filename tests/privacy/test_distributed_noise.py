"""The distributed discrete Gaussian's math: the grid SecAgg+ sums exactly, shares that add up to
the central noise, dropouts that keep it, and the range that cannot clip."""

import math

import numpy as np
import pytest

from privsynth.errors import ConfigError
from privsynth.privacy.accounting import calibrate_noise
from privsynth.privacy.distributed_noise import (
    decode_sum,
    noisy_share,
    opendp_rho,
    plan_release,
    share_scale,
)

SIGMA = 0.5


def _plan(owners=3, threshold=2, max_images=500, per_class=401, classes=10):
    return plan_release(SIGMA, 1.0, max_images, owners, threshold, per_class, classes)


def test_grid_fits_flowers_modulus_and_the_data_bound():
    plan = _plan()
    assert math.log2(plan.clipping_range).is_integer()  # powers of two: exact dyadic grid
    assert math.log2(plan.quantization_range).is_integer()
    assert plan.owners * plan.quantization_range < 2**32  # no modular wrap-around
    # the range exceeds the data bound by >= 40 standard deviations of a share
    margin = plan.clipping_range - plan.max_images * plan.clip
    assert margin >= 40 * plan.share_scale_units * plan.grid
    assert plan.log10_clip_probability < -300
    assert plan.tau == 0.0
    # rounding inflates the sensitivity by sqrt(D) grid units only
    assert plan.sensitivity_units * plan.grid == pytest.approx(1.0, rel=1e-3)


def test_shares_are_grid_points_flowers_quantisation_keeps_exactly():
    from flwr.common.secure_aggregation.quantization import dequantize, quantize

    plan = _plan()
    rng = np.random.default_rng(0)
    values = noisy_share(rng.uniform(0, 50, (401, 10)), plan)
    q = quantize([values], plan.clipping_range, plan.quantization_range)
    back = dequantize(q, plan.clipping_range, plan.quantization_range)[0]
    assert np.array_equal(back, values)  # no stochastic rounding happened, no float error


def _noise_std(plan, shares_summed, draws=3):
    """Std of the summed noise over zero data (entries x draws samples)."""
    zero = np.zeros((plan.entries_per_class, plan.entries // plan.entries_per_class))
    sums = [sum(noisy_share(zero, plan) for _ in range(shares_summed)) for _ in range(draws)]
    return float(np.std(np.stack(sums)))


def test_shares_sized_for_t_minus_one_carry_the_target_noise_against_an_owner():
    """An owner in a t-share sum knows its own share: the other t - 1 must carry the target."""
    for t in (2, 3, 5):
        s = share_scale(7.0, t)
        assert (t - 1) * s**2 == pytest.approx(7.0**2)  # variance of t - 1 shares = target
    with pytest.raises(ConfigError, match="threshold"):
        share_scale(7.0, 1)
    plan = _plan(owners=3, threshold=3)
    central = SIGMA * 1.0  # sigma * C, the central release's std
    assert plan.share_scale_units**2 * (plan.threshold - 1) == pytest.approx(
        plan.total_scale_units**2
    )
    assert plan.noise_std_against_an_owner(3) == pytest.approx(central, rel=1e-3)
    assert _noise_std(plan, 2) == pytest.approx(central, rel=0.04)  # t - 1 shares: the target
    assert _noise_std(plan, 3) == pytest.approx(central * np.sqrt(3 / 2), rel=0.04)


def test_two_owners_against_each_other_keep_the_target_epsilon():
    """With 2 owners, t = 2: sized for t, an owner would face half the noise variance (eps 10
    becomes ~15 against it); sized for t - 1, the other owner's share alone is the target."""
    plan = _plan(owners=2, threshold=2)
    assert plan.noise_std_against_an_owner(2) == pytest.approx(SIGMA, rel=1e-3)
    assert _noise_std(plan, 1) == pytest.approx(SIGMA, rel=0.04)


def test_dropouts_down_to_the_threshold_keep_at_least_the_central_noise():
    plan = _plan(owners=5, threshold=3)
    for survivors in (3, 4, 5):  # SecAgg+ unmasks no sum of fewer than t = 3
        std = _noise_std(plan, survivors, draws=2)
        assert std == pytest.approx(plan.noise_std_with(survivors), rel=0.05)
        assert std >= 0.96 * SIGMA


def test_decode_recovers_the_exact_sum_from_flowers_mean():
    plan = _plan()
    parts = [noisy_share(np.full((401, 10), 3.0 * i), plan) for i in range(3)]
    mean = sum(parts) / 3  # SecAgg+ returns the mean over the survivors (float)
    assert np.array_equal(decode_sum(mean, 3, plan), sum(parts))


def test_accounting_cross_check_opendp_rho_equals_opacus_rdp():
    sigma = calibrate_noise(5.0, 1e-5, 1.0, 1, "rdp")
    plan = plan_release(sigma, 1.0, 500, 3, 2, 401, 10)
    assert opendp_rho(plan) == pytest.approx(1 / (2 * sigma**2), rel=1e-3)


def test_an_owner_above_the_public_bound_refuses():
    plan = _plan(max_images=10)
    with pytest.raises(ConfigError, match="max-images"):
        noisy_share(np.full((401, 10), 50.0), plan)


def test_threshold_must_lie_within_the_owners():
    with pytest.raises(ConfigError, match="threshold"):
        _plan(owners=3, threshold=4)
