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
