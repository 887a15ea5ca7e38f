"""Every DP method federates under every aggregation (in-process).

DP-SGD methods, through the one engine: tiny models, one round of two local steps, a fixed sigma
(no calibration search): each owner books exactly the steps it ran, the card's guarantee is the
owners' DP-SGD, and the released model samples images of the data's shape. One-shot methods
(dpmerf, dpkernel): one noisy release of the summed embedding, plain, SecAgg+ or CKKS."""

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
    if method == "dpmepf":
        assert "--features network" in pv["not_protected"]


def public_features(path, shape, classes):
    """An untrained LeNet saved as a dpmepf feature network (its quality does not matter here)."""
    from privsynth.evaluate.classifier import create_classifier
    from privsynth.models.mepf import save_feature_network

    net = create_classifier("lenet", shape[0], shape[1], classes)
    save_feature_network(net, "lenet", shape, classes, path)
    return path


TINY_ONE_SHOT = {"n_features": 50, "steps": 2, "patience": 2, "g_width": 8, "z_dim": 8}


def _one_shot() -> list[str]:
    return sorted(
        m
        for m in federable()
        if method_class(m).federates_by == "release-sum" and method_class(m).name == m
    )


def test_the_one_shot_methods_are_dpmerf_dpkernel_and_dpmepf():
    assert _one_shot() == ["dpkernel", "dpmepf", "dpmerf"]


@pytest.mark.parametrize("aggregation", ["plain", "secagg", "ckks"])
@pytest.mark.parametrize("method", _one_shot())
def test_one_shot_method_federates(tmp_path, method, aggregation):
    config = dict(TINY_ONE_SHOT)
    if method == "dpmepf":  # every owner reads the same public feature network
        config = {"steps": 2, "patience": 2, "g_width": 8, "z_dim": 8}
        config["features"] = str(public_features(tmp_path / "f.safetensors", (1, 8, 8), 10))
    run = federate(
        data="digits",
        method=method,
        out=tmp_path / "run",
        clients=2,
        config=config,
        epsilon=None,
        noise_multiplier=2.0,
        aggregation=aggregation,
        mode="inprocess",
    )
    pv = run.card["privacy"]
    assert run.card["method"] == method and pv["aggregation"] == aggregation
    assert pv["mechanism"]["variant"] == aggregation and pv["dp_sgd"]["noise_multiplier"] == 2.0
    assert run.card["federated"]["owners_in_sum"] == 2 and run.epsilon > 0
    images, _ = run.sample(4, labels=[1] * 4)
    assert images.shape == (4, 1, 8, 8) and images.dtype == np.uint8
    if method == "dpmepf":
        assert "--features network" in pv["not_protected"]
