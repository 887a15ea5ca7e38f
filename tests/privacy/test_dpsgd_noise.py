"""DP-SGD's Gaussian noise reaches the weights: the same batch, from the same weights, stepped
twice, gives weights that differ by exactly the noise the plan promises (sigma * C / B per
coordinate, lr 1); with no noise they would be equal."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from privsynth.privacy import PrivacySpec, dpsgd


@pytest.mark.parametrize("sigma", [0.5, 2.0])
def test_same_batch_two_steps_differ_by_the_noise_scale(sigma):
    torch.manual_seed(0)
    n, batch, clip = 64, 16, 1.0
    x, y = torch.randn(n, 40), torch.randn(n, 25)
    base = nn.Linear(40, 25)
    spec = PrivacySpec(epsilon=None, noise_multiplier=sigma, max_grad_norm=clip, accountant="rdp")
    plan = dpsgd.plan(spec, n, batch, steps=1)
    after = []
    for _ in range(2):
        model = copy.deepcopy(base)
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        model, opt, _, _ = dpsgd.make_private(model, opt, TensorDataset(x, y), plan, spec)
        opt.zero_grad()
        nn.functional.mse_loss(model(x[:batch]), y[:batch]).backward()  # the same batch
        opt.step()
        after.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    diff = after[0] - after[1]  # the clipped-gradient sum cancels: only the two noises remain
    expected = (2**0.5) * sigma * clip / opt.expected_batch_size
    assert diff.std().item() == pytest.approx(expected, rel=0.1)
    assert abs(diff.mean().item()) < 0.2 * expected
