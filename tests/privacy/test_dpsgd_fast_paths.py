"""The two DP-step speed-ups in privacy/dpsgd.py change nothing but speed."""

from __future__ import annotations

import torch
from opacus import GradSampleModule
from opacus.grad_sample import grad_sample_module as gsm

from privsynth.privacy import PrivacySpec, dpsgd


def per_sample_grads(stock: bool) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        torch.nn.GroupNorm(2, 4),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 6 * 6, 1),
    )
    wrapped = GradSampleModule(model)
    x = torch.randn(5, 1, 8, 8)
    if stock:
        gsm.create_or_accumulate_grad_sample = dpsgd._opacus_store
    try:
        wrapped(x).sum().backward()
    finally:
        gsm.create_or_accumulate_grad_sample = dpsgd._store_grad_sample
    return [p.grad_sample.clone() for p in model.parameters()]


def test_grad_sample_store_matches_opacus():
    dpsgd.use_fast_grad_store()  # what make_private does for Opacus' grad-sample modes
    assert gsm.create_or_accumulate_grad_sample is dpsgd._store_grad_sample
    for ours, stock in zip(per_sample_grads(False), per_sample_grads(True), strict=True):
        torch.testing.assert_close(ours, stock, rtol=0, atol=0)


def test_tensor_batches_poisson_loader_draws_whole_rows():
    x = torch.arange(200, dtype=torch.float32).view(200, 1, 1, 1)
    y = torch.arange(200) % 7
    data = dpsgd.TensorBatches(x, y)
    spec = PrivacySpec(epsilon=5)
    plan = dpsgd.plan(spec, 200, 20, 10)
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    _, _, loader, _ = dpsgd.make_private(
        model, opt, data, plan, spec, generator=torch.Generator().manual_seed(0)
    )
    sizes = []
    for xb, yb in loader:
        assert xb.shape[1:] == (1, 1, 1) and len(xb) == len(yb)
        assert torch.equal(yb, xb.view(-1).long() % 7)  # images stay paired with their labels
        sizes.append(len(xb))
    assert len(sizes) == 10 and 0 < sum(sizes) / len(sizes) < 40  # Poisson, mean ~ 20
