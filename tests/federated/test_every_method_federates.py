"""Every DP-SGD method federates through the one engine, under every aggregation (in-process).

Tiny models, one round of two local steps, a fixed sigma (no calibration search): each owner books
exactly the steps it ran, the card's guarantee is the owners' DP-SGD, and the released model
samples images of the data's shape."""

import numpy as np
import pytest

from privsynth.federated import federate
from privsynth.models.registry import METHODS, federable, method_class

TINY = {
    "dpgan": {"batch_size": 32, "width": 8, "g_width": 8, "z_dim": 8, "n_d": 2},
    "dpvae": {"batch_size": 32, "width": 8, "z_dim": 4},
    "dpdiffusion": {"batch_size": 32, "width": 8, "multiplicity": 2, "sample_steps": 2},
}


def test_every_federable_dp_sgd_method_is_covered_here():
    """The list comes from the classes: a new federable DP-SGD method must join the matrix."""
    dp_sgd = {
        m
        for m in federable()
        if method_class(m).kind == "dp-sgd" and m in METHODS and method_class(m).name == m
    }
    assert dp_sgd == set(TINY)


@pytest.mark.parametrize("aggregation", ["plain", "secagg", "ckks"])
@pytest.mark.parametrize("method", sorted(TINY))
def test_dp_sgd_method_federates(tmp_path, method, aggregation):
    run = federate(
        data="digits",
        method=method,
        out=tmp_path / "run",
        clients=2,
        rounds=1,
        local_steps=2,
        config=dict(TINY[method]),
        accountant="rdp",
        epsilon=None,
        noise_multiplier=1.0,
        aggregation=aggregation,
        mode="inprocess",
    )
    assert run.card["method"] == method and run.card["privacy"]["aggregation"] == aggregation
    pv = run.card["privacy"]["sample_level"]
    assert pv["owners_reporting"] == 2 and pv["noise_multiplier_fixed"] == 1.0
    for owner in pv["per_owner"]:
        assert [tuple(h) for h in owner["history"]] == [(1.0, owner["sample_rate"], 2)]
        assert owner["epsilon"] == pytest.approx(owner["epsilon_recomputed"])
    assert run.epsilon == max(o["epsilon"] for o in pv["per_owner"]) > 0
    images, _ = run.sample(4, labels=[1] * 4)
    assert images.shape == (4, 1, 8, 8) and images.dtype == np.uint8
