"""A one-shot method defined here and nowhere in src/: one registry entry and it trains, resumes,
samples, federates under SecAgg+ and evaluates through `OneShotMethod` alone.

``dpmeans`` releases each class's sum of clipped, flattened images with a count feature (one
Gaussian release, sensitivity C) and samples the noisy class mean plus a little seeded noise."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

import privsynth
from privsynth.models.base import FitResult, OneShotMethod
from privsynth.orchestrate import trainer
from privsynth.privacy.accounting import epsilon_from_history
from privsynth.run import TRAIN_STATE, save_train_state


@dataclass
class MeansConfig:
    count_weight: float = 0.5  # share of ||f||^2 on the constant (count) feature
    spread: float = 0.05  # std of the noise added when sampling (post-processing)


class MeansMethod(OneShotMethod):
    name, twin, config_class = "dpmeans", "means", MeansConfig

    def __init__(self, image_shape, num_classes, config=None, private=None, name=None):
        super().__init__(image_shape, num_classes, config, private, name)
        self.dim = int(np.prod(self.image_shape))
        self.means = nn.Linear(num_classes, self.dim, bias=False)  # column k: class k's mean

    def statistic(self, data, sensitivity):
        x = torch.from_numpy(data.images).double().flatten(1) / 127.5 - 1.0
        x = x / x.norm(dim=1, keepdim=True).clamp_min(1.0)  # ||x|| <= 1
        a, c = math.sqrt(1 - self.config.count_weight), math.sqrt(self.config.count_weight)
        f = sensitivity * torch.cat([a * x, torch.full((len(x), 1), c, dtype=x.dtype)], 1)
        total = torch.zeros(self.statistic_shape(), dtype=torch.float64)
        return total.index_add_(1, torch.from_numpy(data.labels).long(), f.T)

    def statistic_shape(self):
        return (self.dim + 1, self.num_classes)

    def fit_released(self, released, ctx):
        C = ctx.privacy.max_grad_norm if ctx.privacy is not None else 1.0
        a, c = math.sqrt(1 - self.config.count_weight), math.sqrt(self.config.count_weight)
        counts = (released[-1] / (C * c)).clamp_min(1.0)
        with torch.no_grad():
            self.means.weight.copy_((released[:-1] / (C * a) / counts).clamp(-1, 1))
        ctx.checkpoint(1, {"done": True}, None)
        return FitResult(1, metrics={"classes": float(self.num_classes)})

    def released_modules(self):
        return {"means": self.means}

    def draw(self, y, generator):
        mean = self.means.weight.T[y].view(len(y), *self.image_shape)
        noise = torch.randn(mean.shape, generator=generator) * self.config.spread
        return (mean + noise.to(y.device)).clamp(-1, 1)


@pytest.fixture
def means(monkeypatch):
    from privsynth.models import registry

    module = sys.modules[__name__].__name__
    monkeypatch.setitem(registry.METHODS, "dpmeans", f"{module}:MeansMethod")
    monkeypatch.setitem(registry.METHODS, "means", f"{module}:MeansMethod")
    return "dpmeans"


def test_means_trains_privately_samples_and_its_twin_is_exact(tmp_path, tiny_dataset, means):
    run = privsynth.train(
        tiny_dataset, means, tmp_path / "dp", noise_multiplier=2.0, accountant="rdp", progress=False
    )
    pv = run.card["privacy"]
    size = pv["size_release"]["history"][0]
    assert pv["dp_sgd"]["history"] == [size, [2.0, 1.0, 1]]  # one accountant: size, then ours
    assert run.epsilon == pytest.approx(
        epsilon_from_history(pv["dp_sgd"]["history"], pv["dp_sgd"]["delta"], "rdp")
    )
    images, _ = run.sample(6, labels=[0, 1, 2] * 2)
    assert images.shape == (6, 1, 8, 8) and images.dtype == np.uint8
    plain = privsynth.train(tiny_dataset, "means", tmp_path / "plain", progress=False)
    assert not plain.card["private"] and plain.card["privacy"]["epsilon"] is None
    train, _ = plain.load_data(tiny_dataset)
    exact = MeansMethod((1, 8, 8), tiny_dataset.num_classes)
    exact.fit_released(exact.statistic(train, 1.0).float(), privsynth.models.TrainContext(None))
    # the noise reaches what is released: the private means are not the exact ones
    dp_w, exact_w = run.synthesizer.means.weight, exact.means.weight
    assert torch.allclose(plain.synthesizer.means.weight, exact_w, atol=1e-5)
    assert (dp_w - exact_w).abs().max() > 0.05


def test_means_resumes_on_its_one_release(tmp_path, tiny_dataset, means, monkeypatch):
    import privsynth.models.base as base

    draws, real = [], base.gaussian_noise_release
    monkeypatch.setattr(base, "gaussian_noise_release", lambda *a: draws.append(a) or real(*a))
    saved = []

    def kill_after_first(path, state):
        saved.append(state["step"])
        if len(saved) > 1:
            raise KeyboardInterrupt
        save_train_state(path, state)

    monkeypatch.setattr(trainer, "save_train_state", kill_after_first)
    kw = dict(noise_multiplier=2.0, accountant="rdp", progress=False)
    out = tmp_path / "r"
    with pytest.raises(KeyboardInterrupt):
        privsynth.train(tiny_dataset, means, out, **kw)
    assert saved == [0, 1] and (out / TRAIN_STATE).exists()  # the release is kept at step 0
    monkeypatch.setattr(trainer, "save_train_state", save_train_state)
    run = privsynth.train(tiny_dataset, means, out, **kw)
    assert len(draws) == 1 and run.card["status"] == "complete"  # never drawn twice
    assert run.card["privacy"]["dp_sgd"]["history"][-1] == [2.0, 1.0, 1]


def test_means_federates_under_secagg_and_evaluates(tmp_path, tiny_dataset, means):
    from privsynth.evaluate.quick import quick_evaluate
    from privsynth.federated import federate

    run = federate(
        data="digits",
        method=means,
        out=tmp_path / "fed",
        clients=3,
        mode="inprocess",
        aggregation="secagg",
        epsilon=5.0,
        extra_run_config={"secagg-threshold": 1.0},
    )
    pv = run.card["privacy"]
    assert pv["mechanism"]["variant"] == "secagg" and pv["distributed_noise"]["shares_in_sum"] == 3
    assert pv["epsilon"] <= 5.0 * 1.01
    assert run.sample(4, labels=[3] * 4)[0].shape == (4, 1, 8, 8)
    result = quick_evaluate(run, "digits", n_synthetic=30, passes=50)
    assert 0.0 <= result["tstr_accuracy"] <= 1.0
