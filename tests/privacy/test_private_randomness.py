"""DP noise and Poisson batches never follow --seed (the seed is public: it is on the card)."""

from __future__ import annotations

import torch

from privsynth.privacy import PrivacySpec, dpsgd


def one_private_step(seed: int) -> tuple[list[int], torch.Tensor]:
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    data = dpsgd.TensorBatches(torch.randn(100, 3), torch.zeros(100, dtype=torch.long))
    spec = PrivacySpec(epsilon=5)
    plan = dpsgd.plan(spec, 100, 10, 5)
    model, opt, loader, _ = dpsgd.make_private(
        model, opt, data, plan, spec, generator=torch.Generator().manual_seed(seed)
    )
    sizes = []
    for x, _ in loader:
        sizes.append(len(x))
        opt.zero_grad()
        model(x).sum().backward() if len(x) else None
        opt.step()
    return sizes, model._module.weight.detach().clone()


def test_same_seed_gives_fresh_noise_and_batches():
    (sizes_a, w_a), (sizes_b, w_b) = one_private_step(0), one_private_step(0)
    assert not torch.equal(w_a, w_b)  # noise (and batches) differ although the seed is the same
    assert len(sizes_a) == len(sizes_b) == 10  # one pass of the loader: 1 / q batches, as planned


def test_private_generators_are_not_seeded_alike():
    a, b = dpsgd.private_generator("cpu"), dpsgd.private_generator("cpu")
    assert a.initial_seed() != b.initial_seed()
