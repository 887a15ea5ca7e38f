"""Multi-process DP-SGD (privsynth.orchestrate.distributed): two CPU processes spend exactly
what one process spends for the same plan, only process 0 writes, and bad process counts
name the fix."""

from __future__ import annotations

import math

import pytest

import privsynth
from privsynth.errors import ConfigError
from privsynth.orchestrate import distributed
from privsynth.privacy import Ledger
from privsynth.privacy.accounting import epsilon_from_history
from privsynth.request import RunRequest

SIGMA = 1.0  # a fixed sigma: no calibration search, the plan is the same in both runs
# Training images (500, holdout 0.2). With 96 the noisy size N_hat (sigma_n about 20) fell under
# the batch of 64 about one run in 18, capping q at 1: no batch can be empty then, and the
# bound this test checks is 0. At 400, q stays near 0.16 whatever the noise draws.
N_TRAIN = 400


def test_two_processes_spend_what_one_process_plans(tmp_path, make_tiny, fast_gan):
    tiny_dataset = make_tiny(n=N_TRAIN * 5 // 4)
    # a batch large enough that an empty local batch stays far below delta/100 whatever the
    # noisy size N_hat comes out
    fast_gan = {**fast_gan, "batch_size": 64}
    kw = dict(
        method="dpgan", noise_multiplier=SIGMA, accountant="rdp", config=fast_gan, progress=False
    )
    one = privsynth.train(tiny_dataset, out=tmp_path / "one", **kw)
    two = distributed.train(RunRequest.build(tiny_dataset, out=tmp_path / "two", **kw), nproc=2)
    sgd_one, sgd_two = one.card["privacy"]["dp_sgd"], two.card["privacy"]["dp_sgd"]
    # the accountant saw what the plan fixed from each run's released size N_hat: the global
    # Poisson rate q = B / N_hat (every process samples at process 0's N_hat), same step count
    b = fast_gan["batch_size"]
    for run, sgd in ((one, sgd_one), (two, sgd_two)):
        size = run.card["privacy"]["size_release"]
        q = min(1.0, b / size["dp_count"])  # a small N_hat (sigma_n is 20 here) caps q at 1
        assert sgd["history"] == [size["history"][0], [SIGMA, q, sgd["steps"]]]
        assert sgd["steps"] == sgd["planned_steps"] == math.ceil(fast_gan["epochs"] / q)
        assert run.epsilon == pytest.approx(
            epsilon_from_history(sgd["history"], sgd["delta"], "rdp"), rel=1e-9
        )
    # the chance of a skipped empty local batch over the whole run joins the card's delta
    from privsynth.privacy.dpsgd import DPPlan, empty_local_batch_delta

    extra = sgd_two["empty_local_batch_delta"]
    steps = sgd_two["steps"]
    plan = DPPlan(SIGMA, 0, sgd_two["sample_rate"], steps, 0.0, None, n_private=N_TRAIN)
    # the card adds the allowance delta/100 (data-independent), which bounds the real chance
    assert 0 < empty_local_batch_delta(plan, 2) <= extra
    assert extra == pytest.approx(sgd_two["delta"] / 100)
    n_hat = two.card["privacy"]["size_release"]["dp_count"]
    assert two.card["privacy"]["delta"] == pytest.approx(1 / (10 * n_hat) + extra)
    assert "empty_local_batch_delta" not in sgd_one
    # only process 0 booked the run in the ledger (each test's own, see conftest)
    spent = Ledger().spent(tiny_dataset.content)
    assert spent.epsilon == pytest.approx(one.epsilon + two.epsilon)
    # the ledger books the card's delta, the empty-local-batch allowance included
    cards = one.card["privacy"]["delta"] + two.card["privacy"]["delta"]
    assert spent.delta == pytest.approx(cards)
    images, _ = two.sample(8, seed=0)
    assert images.shape == (8, 1, 8, 8)


def test_process_count_errors_name_the_fix(tmp_path, tiny_dataset):
    def request(out, **kw):
        return RunRequest.build(tiny_dataset, "dpgan", tmp_path / out, **kw)

    with pytest.raises(ConfigError, match="--nproc"):
        distributed.train(request("a"), nproc=0)
    with pytest.raises(ConfigError, match="no-dp"):
        distributed.train(request("b", no_dp=True), nproc=2)
    with pytest.raises(ConfigError, match="dist-backend"):
        distributed.train(request("c"), nproc=2, backend="mpi")


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
