"""A fifth method, defined here and nowhere in src/: one registry entry and it trains, resumes,
federates and evaluates through the same code paths as the four built-in ones.

``dptoy`` learns one template image per class (a linear map from the one-hot label) with DP-SGD
on the per-image squared error; sampling adds a little seeded noise to the EMA template."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import privsynth
from privsynth.models.base import ModelWithEMA
from privsynth.models.engine import ema_copy
from privsynth.orchestrate import trainer
from privsynth.privacy.accounting import epsilon_from_history
from privsynth.run import TRAIN_STATE, save_train_state


@dataclass
class ToyConfig:
    batch_size: int = 16
    epochs: float = 2.0
    lr: float = 0.05
    ema: float = 0.9
    spread: float = 0.1  # std of the noise added when sampling (post-processing)


class Templates(nn.Module):
    def __init__(self, shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        self.shape, self.num_classes = shape, num_classes
        self.fc = nn.Linear(num_classes, int(np.prod(shape)))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(y, self.num_classes).float()
        return torch.tanh(self.fc(onehot)).view(len(y), *self.shape)


class ToyMethod(ModelWithEMA):  # the DP-SGD and EMA hooks come with the base class
    name, twin, config_class = "dptoy", "toy", ToyConfig
    federable = True

    def __init__(self, image_shape, num_classes, config=None, private=None, name=None):
        super().__init__(image_shape, num_classes, config, private, name)
        self.model = Templates(self.image_shape, num_classes)
        self.ema = ema_copy(self.model)

    def private_loss(self, module, x, y):
        return (module(y) - x).pow(2).flatten(1).mean(1).mean()

    def released_modules(self) -> dict[str, nn.Module]:
        return {"ema": self.ema}

    def draw(self, y, generator):
        noise = torch.randn(len(y), *self.image_shape, generator=generator) * self.config.spread
        return (self.ema(y) + noise.to(y.device)).clamp(-1, 1)


@pytest.fixture
def toy(monkeypatch):
    from privsynth.models import registry

    module = sys.modules[__name__].__name__
    monkeypatch.setitem(registry.METHODS, "dptoy", f"{module}:ToyMethod")
    monkeypatch.setitem(registry.METHODS, "toy", f"{module}:ToyMethod")
    return "dptoy"


def test_toy_trains_privately_and_its_twin_without_dp(tmp_path, tiny_dataset, toy):
    run = privsynth.train(
        tiny_dataset, toy, tmp_path / "dp", noise_multiplier=1.0, accountant="rdp", progress=False
    )
    sgd = run.card["privacy"]["dp_sgd"]
    assert run.card["method"] == "dptoy" and run.card["private"]
    assert sgd["steps"] == sgd["planned_steps"] > 0
    assert run.epsilon == pytest.approx(epsilon_from_history(sgd["history"], sgd["delta"], "rdp"))
    images, labels = run.sample(9, labels=[0, 1, 2] * 3)
    assert images.shape == (9, 1, 8, 8) and images.dtype == np.uint8
    plain = privsynth.train(tiny_dataset, "toy", tmp_path / "plain", progress=False)
    assert not plain.card["private"] and plain.card["privacy"]["epsilon"] is None


def test_toy_resumes_after_a_kill(tmp_path, tiny_dataset, toy, monkeypatch, exact_size):
    calls = []

    def kill_at_second(path, state):
        calls.append(state["step"])
        if len(calls) > 1:
            raise KeyboardInterrupt
        save_train_state(path, state)

    monkeypatch.setattr(trainer, "save_train_state", kill_at_second)
    kw = dict(noise_multiplier=1.0, accountant="rdp", progress=False, checkpoint_every=3)
    out = tmp_path / "r"
    with pytest.raises(KeyboardInterrupt):
        privsynth.train(tiny_dataset, toy, out, **kw)
    assert calls == [3, 6] and (out / TRAIN_STATE).exists()
    monkeypatch.setattr(trainer, "save_train_state", save_train_state)
    run = privsynth.train(tiny_dataset, toy, out, **kw)
    sgd = run.card["privacy"]["dp_sgd"]
    size = run.card["privacy"]["size_release"]["history"][0]  # the size release, drawn once
    assert sgd["history"] == [size, [1.0, sgd["sample_rate"], sgd["planned_steps"]]]  # no reset
    assert json.loads((out / "card.json").read_text())["status"] == "complete"


@pytest.mark.parametrize("aggregation", ["plain", "secagg"])
def test_toy_federates_in_process(tmp_path, toy, aggregation):
    from privsynth.federated import federate

    run = federate(
        data="digits",
        method=toy,
        out=tmp_path / "fed",
        clients=2,
        rounds=2,
        local_steps=2,
        config={"batch_size": 32},
        accountant="rdp",
        epsilon=None,
        noise_multiplier=1.0,
        aggregation=aggregation,
        mode="inprocess",
    )
    owners = run.card["privacy"]["sample_level"]["per_owner"]
    assert [sum(h[2] for h in o["history"]) for o in owners] == [4, 4]
    assert run.sample(5, labels=[7] * 5)[0].shape == (5, 1, 8, 8)


def test_toy_evaluates(tmp_path, tiny_dataset, toy):
    from privsynth.evaluate.quick import quick_evaluate

    run = privsynth.train(
        tiny_dataset, toy, tmp_path / "e", noise_multiplier=1.0, accountant="rdp", progress=False
    )
    result = quick_evaluate(run, tiny_dataset, n_synthetic=30, passes=200)
    assert 0.0 <= result["tstr_accuracy"] <= 1.0 and result["n_synthetic"] == 30
    assert run.synthesizer.membership_scores(tiny_dataset.images, tiny_dataset.labels) is None
