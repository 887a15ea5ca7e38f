"""The one DP-SGD engine: the budget check runs before any private step, its noise reaches the
private module, and a checkpoint or a later federated round continues the same accountant."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from privsynth.errors import BudgetError
from privsynth.models.base import Method
from privsynth.models.engine import DPSGD
from privsynth.privacy import PrivacySpec


@dataclass
class LinConfig:
    batch_size: int = 20
    epochs: float = 1.0
    lr: float = 0.1
    scale: float = 1.0  # 0: a loss with zero gradient (only DP noise moves the weights)


class Lin(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 1)

    def forward(self, x, y):
        return self.fc(x.flatten(1)).squeeze(1)


class LinMethod(Method):
    name, config_class = "lin", LinConfig

    def __init__(self, image_shape, num_classes, config=None, private=None, name=None):
        super().__init__(image_shape, num_classes, config, private, name)
        self.model = Lin()
        self.steps_seen: list[int] = []

    def private_module(self):
        return self.model

    def private_optimizer(self, module):
        return torch.optim.SGD(module.parameters(), lr=self.config.lr)

    def private_loss(self, module, x, y):
        return self.config.scale * module(x, y).pow(2).mean()

    def after_step(self, step, last, private):
        self.steps_seen.append(step)
        return {}


def _weights(method):
    return torch.cat([p.detach().flatten().clone() for p in method.model.parameters()])


def test_noise_reaches_the_private_module(tiny_dataset):
    """A zero-gradient loss: without DP nothing moves; with DP the Gaussian noise does."""
    plain = LinMethod((1, 8, 8), 3, {"scale": 0.0})
    before = _weights(plain)
    DPSGD(plain, tiny_dataset, None).run(3)
    assert torch.equal(_weights(plain), before)
    private = LinMethod((1, 8, 8), 3, {"scale": 0.0})
    before = _weights(private)
    run = DPSGD(
        private, tiny_dataset, PrivacySpec(epsilon=None, noise_multiplier=5.0, accountant="rdp")
    )
    run.run(3)
    moved = (_weights(private) - before).norm()
    # SGD step = lr * N(0, (sigma C)^2) / E[batch] per coordinate, three steps
    expected = 0.1 * 5.0 / 20 * (3 * len(before)) ** 0.5
    assert 0.5 * expected < moved < 2 * expected
    assert run.close().history == [(5.0, run.plan.sample_rate, 3)]


def test_the_budget_check_runs_before_any_private_step(tiny_dataset):
    method = LinMethod((1, 8, 8), 3)
    seen = []

    def refuse(plan):
        seen.append(plan.steps)
        raise BudgetError("over budget")

    with pytest.raises(BudgetError):
        DPSGD(method, tiny_dataset, PrivacySpec(epsilon=3.0, accountant="rdp"), on_plan=refuse)
    assert seen == [method.total_steps(len(tiny_dataset))] and method.steps_seen == []


def test_resume_and_later_rounds_continue_the_accountant(tiny_dataset):
    spec = PrivacySpec(epsilon=4.0, accountant="rdp")
    first = DPSGD(LinMethod((1, 8, 8), 3), tiny_dataset, spec, planned_steps=6)
    first.run(2)
    state, sigma = first.state(), first.plan.noise_multiplier
    first.close()
    # a resumed central run: the checkpoint's step, weights and history
    method = LinMethod((1, 8, 8), 3)
    resumed = DPSGD(method, tiny_dataset, spec, planned_steps=6, resume=state)
    assert resumed.step == 2 and torch.equal(
        _weights(method), torch.cat([v.flatten() for v in state["private"].values()])
    )
    resumed.run(6)
    assert method.steps_seen == [2, 3, 4, 5]
    q = resumed.plan.sample_rate
    history = resumed.close()
    assert history.history == [(sigma, q, 6)]
    # a later federated round: the owner's history and its calibrated sigma, steps from 0
    again = DPSGD(
        LinMethod((1, 8, 8), 3), tiny_dataset, spec, planned_steps=8, history=history, sigma=sigma
    )
    assert again.plan.noise_multiplier == sigma and again.plan.target_epsilon == 4.0
    again.run(2)
    assert again.close().history == [(sigma, q, 8)]
