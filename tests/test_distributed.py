"""Multi-process DP-SGD (privsynth.distributed): two CPU processes spend exactly what one process
spends for the same plan, only process 0 writes, and bad process counts name the fix."""

from __future__ import annotations

import pytest

import privsynth
from privsynth import distributed
from privsynth.errors import ConfigError
from privsynth.privacy import Ledger

SIGMA = 1.0  # a fixed sigma: no calibration search, the plan is the same in both runs


def test_two_processes_spend_what_one_process_plans(tmp_path, tiny_dataset, fast_gan):
    kw = dict(
        method="dpgan", noise_multiplier=SIGMA, accountant="rdp", config=fast_gan, progress=False
    )
    one = privsynth.train(tiny_dataset, out=tmp_path / "one", **kw)
    two = distributed.train(tiny_dataset, out=tmp_path / "two", nproc=2, **kw)
    sgd_one, sgd_two = one.card["privacy"]["dp_sgd"], two.card["privacy"]["dp_sgd"]
    # the accountant saw the same (sigma, q, steps): global Poisson rate, same step count
    assert sgd_two["history"] == sgd_one["history"] == [[SIGMA, 1 / 3, 6]]
    assert two.epsilon == pytest.approx(one.epsilon, rel=1e-12)
    # the chance of a skipped empty local batch over the whole run joins the card's delta
    from privsynth.privacy.dpsgd import DPPlan, empty_local_batch_delta

    extra = sgd_two["empty_local_batch_delta"]
    plan = DPPlan(SIGMA, 0, sgd_two["sample_rate"], 6, 0.0, None, n_private=96)  # 120 - 20%
    # the card adds the allowance delta/100 (data-independent), which bounds the real chance
    assert 0 < empty_local_batch_delta(plan, 2) <= extra
    assert extra == pytest.approx(one.card["privacy"]["dp_sgd"]["delta"] / 100)
    assert two.card["privacy"]["delta"] == pytest.approx(one.card["privacy"]["delta"] + extra)
    assert "empty_local_batch_delta" not in sgd_one
    # only process 0 booked the run in the ledger (each test's own, see conftest)
    spent = Ledger().spent(tiny_dataset.content).epsilon
    assert spent == pytest.approx(one.epsilon + two.epsilon)
    images, _ = two.sample(8, seed=0)
    assert images.shape == (8, 1, 8, 8)


def test_process_count_errors_name_the_fix(tmp_path, tiny_dataset):
    with pytest.raises(ConfigError, match="--nproc"):
        distributed.train(tiny_dataset, method="dpgan", out=tmp_path / "a", nproc=0)
    with pytest.raises(ConfigError, match="no-dp"):
        distributed.train(tiny_dataset, method="dpgan", out=tmp_path / "b", nproc=2, no_dp=True)
    with pytest.raises(ConfigError, match="dist-backend"):
        distributed.train(tiny_dataset, method="dpgan", out=tmp_path / "c", nproc=2, backend="mpi")


def test_empty_local_batch_bound_covers_the_whole_run_and_joins_delta():
    """Per step and process the chance of an empty local batch may be tiny, yet over T steps and
    W processes it adds up: the bound is T*W*p, refused above delta/100, else added to delta."""
    from privsynth.privacy.dpsgd import (
        DPPlan,
        check_empty_local_batches,
        empty_local_batch_delta,
    )

    # 2 processes, 60 images each at q = 0.2: p = 0.8^60 ~ 1.5e-6 per step and process
    short = DPPlan(1.0, 25, 0.2, 10, 1e-2, None, n_private=120)
    p = 0.8**60
    assert empty_local_batch_delta(short, 2) == pytest.approx(10 * 2 * p)
    assert empty_local_batch_delta(short, 1) == 0.0
    # 3e-5 <= delta/100 = 1e-4: allowed
    assert check_empty_local_batches(short, 2) == pytest.approx(20 * p)
    # the same per-step chance over 10 000 steps is 3e-2 > delta/100: refused, naming the fix
    long = DPPlan(1.0, 25, 0.2, 10_000, 1e-2, None, n_private=120)
    with pytest.raises(ConfigError, match="--nproc"):
        check_empty_local_batches(long, 2)
