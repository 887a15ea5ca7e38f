"""Book-Keeping (grad-sample mode "bk") gives the clipped per-example sum exactly, and the Opacus
optimizer behind it still adds the noise and books every step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from privsynth.errors import ConfigError
from privsynth.models.diffusion import Denoiser
from privsynth.models.gan import Discriminator
from privsynth.models.vae import CVAE
from privsynth.privacy import PrivacySpec, dpsgd
from privsynth.privacy.bk_layers import conv_norms_sq
from privsynth.privacy.bookkeeping import BookKeeping

C = 0.5  # small enough that most examples are clipped, large enough that some are not


def reference(model, row_loss, units: int, k: int, clip_from: int | None = None):
    """One backward per example of the mean of its k rows' losses; clip to C, sum. Examples from
    ``clip_from`` on are added unclipped (public rows)."""
    torch.manual_seed(3)
    per_unit = row_loss(model).view(units, k).mean(1)
    params = list(model.parameters())
    total = [torch.zeros_like(p) for p in params]
    for i in range(units):
        g = torch.autograd.grad(per_unit[i], params, retain_graph=True, allow_unused=True)
        g = [torch.zeros_like(p) if gi is None else gi for gi, p in zip(g, params, strict=True)]
        norm = torch.sqrt(sum((gi**2).sum() for gi in g))
        f = 1.0 if clip_from is not None and i >= clip_from else min(1.0, C / (norm.item() + 1e-6))
        for acc, gi in zip(total, g, strict=True):
            acc += gi * f
    return torch.cat([t.flatten() for t in total])


def bookkeeping(model, row_loss, public_from=None, policy="none"):
    wrapped = BookKeeping(model, C)
    torch.manual_seed(3)
    if public_from is None:
        loss = row_loss(wrapped).mean()
    else:
        with wrapped.public_rows(public_from, policy):
            loss = row_loss(wrapped).mean()
    loss.backward()
    wrapped._close()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def data(n=10, size=8):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, size, size, generator=g) * 2 - 1, torch.randint(0, 4, (n,), generator=g)


def test_discriminator_matches_per_example_reference():
    x, y = data()
    target = (torch.arange(10) < 5).float()
    row_loss = lambda m: F.binary_cross_entropy_with_logits(m(x, y), target, reduction="none")  # noqa: E731
    torch.manual_seed(0)
    model = Discriminator(1, 8, 4, 4)
    torch.testing.assert_close(
        bookkeeping(model, row_loss), reference(model, row_loss, 10, 1), rtol=1e-4, atol=1e-6
    )


def test_vae_with_transposed_convolutions_matches_reference():
    x, y = data()
    torch.manual_seed(0)
    model = CVAE(1, 8, 4, 4, 3, 1.0)
    row_loss = lambda m: m(x, y)  # noqa: E731
    torch.testing.assert_close(
        bookkeeping(model, row_loss), reference(model, row_loss, 10, 1), rtol=1e-4, atol=1e-6
    )


def test_per_unit_convolution_path_matches_reference(monkeypatch):
    """With kernel calls free, every convolution forms its units' weight gradients one by one
    ("loop") and the clipped sum reuses them: still the reference's numbers."""
    from privsynth.privacy import bk_layers

    monkeypatch.setattr(bk_layers, "CALL_MS", 0.0)
    monkeypatch.setattr(bk_layers, "BMM_MACS_PER_MS", 1.0)
    x, y = data(6)
    for k in (1, 2):
        torch.manual_seed(0)
        model = Denoiser(1, 8, 4, 4, k, -1.2, 1.2, 0.1)
        row_loss = lambda m: m(x, y)  # noqa: E731
        torch.testing.assert_close(
            bookkeeping(model, row_loss), reference(model, row_loss, 6, k), rtol=1e-4, atol=1e-6
        )
    torch.manual_seed(0)
    model = CVAE(1, 8, 4, 4, 3, 1.0)  # transposed convolutions too
    row_loss = lambda m: m(x, y)  # noqa: E731
    torch.testing.assert_close(
        bookkeeping(model, row_loss), reference(model, row_loss, 6, 1), rtol=1e-4, atol=1e-6
    )


@pytest.mark.parametrize("k", [1, 3])
def test_diffusion_noise_multiplicity_clips_per_image(k):
    """K noised copies of an image make one gradient (their mean loss), clipped once."""
    x, y = data(6)
    torch.manual_seed(0)
    model = Denoiser(1, 8, 4, 4, k, -1.2, 1.2, 0.1)
    row_loss = lambda m: m(x, y)  # noqa: E731
    torch.testing.assert_close(
        bookkeeping(model, row_loss), reference(model, row_loss, 6, k), rtol=1e-4, atol=1e-6
    )


def test_public_rows_are_summed_without_clipping():
    x, y = data()
    target = (torch.arange(10) < 5).float()
    row_loss = lambda m: F.binary_cross_entropy_with_logits(m(x, y), target, reduction="none")  # noqa: E731
    torch.manual_seed(0)
    model = Discriminator(1, 8, 4, 4)
    ours = bookkeeping(model, row_loss, public_from=5, policy="none")
    torch.testing.assert_close(
        ours, reference(model, row_loss, 10, 1, clip_from=5), rtol=1e-4, atol=1e-6
    )


def test_auxiliary_classifier_head_matches_reference_with_public_fakes():
    """dpgan with ``aux``: the real rows' class loss joins their clipped per-example gradient; the
    fake rows (public) carry only the real/fake loss."""
    x, y = data()
    target = (torch.arange(10) < 5).float()

    def row_loss(m):
        score, classes = m(x, y, with_classes=True)
        ce = F.cross_entropy(classes, y, reduction="none") * target  # real rows only
        return F.binary_cross_entropy_with_logits(score, target, reduction="none") + ce

    torch.manual_seed(0)
    model = Discriminator(1, 8, 4, 4, aux=True)
    ours = bookkeeping(model, row_loss, public_from=5, policy="none")
    torch.testing.assert_close(
        ours, reference(model, row_loss, 10, 1, clip_from=5), rtol=1e-4, atol=1e-6
    )


def test_public_rows_total_policy_bounds_the_public_sum():
    """ "total": private rows clipped one by one; the public rows' sum scaled to norm <= n C."""
    x, y = data()
    target = (torch.arange(10) < 5).float()
    row_loss = lambda m: F.binary_cross_entropy_with_logits(m(x, y), target, reduction="none")  # noqa: E731
    torch.manual_seed(0)
    model = Discriminator(1, 8, 4, 4)
    total = bookkeeping(model, row_loss, public_from=5, policy="total")
    both = reference(model, row_loss, 10, 1, clip_from=5)
    private = reference(model, lambda m: row_loss(m) * (torch.arange(10) < 5), 10, 1)
    public = both - private
    assert public.norm() > 5 * C  # the scaling is exercised
    expected = private + public * (5 * C / (public.norm().item() + 1e-6))
    torch.testing.assert_close(total, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("strategy", ["im2col", "loop", "ghost", "mat"])
@pytest.mark.parametrize("geometry", [(3, 1, 1), (4, 2, 1), (3, 2, 1), (1, 1, 0), (3, 1, 0)])
def test_conv_norm_strategies_agree_with_im2col(strategy, geometry):
    kernel, stride, pad = geometry
    torch.manual_seed(0)
    x = torch.randn(8, 5, 9, 9)
    g = torch.randn_like(F.conv2d(x, torch.zeros(6, 5, kernel, kernel), None, stride, pad))
    for k in (1, 2):
        if strategy == "ghost" and k == 2:
            continue
        cols = F.unfold(x, kernel, 1, pad, stride).view(8 // k, k, 5 * kernel**2, -1)
        rows = g.flatten(2).view(8 // k, k, 6, -1)
        per_unit = torch.einsum("ukdt,ukpt->upd", cols, rows)
        got = conv_norms_sq(x, g, (kernel,) * 2, (stride,) * 2, (pad,) * 2, k, 50, strategy)
        torch.testing.assert_close(got, per_unit.pow(2).sum((1, 2)), rtol=1e-4, atol=1e-5)


def test_unsupported_layers_and_reuse_name_the_fix():
    with pytest.raises(ConfigError, match="hooks"):
        BookKeeping(torch.nn.Sequential(torch.nn.Conv1d(1, 2, 3)), 1.0)
    lin = torch.nn.Linear(3, 3)
    twice = BookKeeping(torch.nn.Sequential(lin, lin), 1.0)
    with pytest.raises(ConfigError, match="twice"):
        twice(torch.randn(2, 3))


def test_disabled_hooks_give_plain_gradients():
    """The GAN's generator step runs D with hooks off: gradients flow to the input as usual."""
    torch.manual_seed(0)
    model = Discriminator(1, 8, 4, 4)
    wrapped = BookKeeping(model, C)
    x, y = data(4)
    x.requires_grad_(True)
    wrapped.disable_hooks()
    wrapped(x, y).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    wrapped.enable_hooks()


def make_bk(n=60, batch=10, sigma=1.0):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, 2, 1),
        torch.nn.GroupNorm(2, 4),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 4 * 4, 1),
    )
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    spec = PrivacySpec(epsilon=None, noise_multiplier=sigma, grad_sample_mode="bk")
    data_set = dpsgd.TensorBatches(torch.randn(n, 1, 8, 8), torch.zeros(n, dtype=torch.long))
    plan = dpsgd.plan(spec, n, batch, 5)
    return (model, *dpsgd.make_private(model, opt, data_set, plan, spec))


def test_bk_noise_reaches_the_weights_and_every_step_is_booked():
    model, wrapped, opt, loader, engine = make_bk(sigma=50.0)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    steps = 0
    for xb, _ in loader:
        opt.zero_grad(set_to_none=True)
        wrapped(xb).mean().backward()  # an empty Poisson batch still gets its noise
        opt.step()
        steps += 1
    moved = torch.cat([p.detach().flatten() for p in model.parameters()]) - before
    # Clipped signal is at most C / B per step; noise std is sigma C / B = 5 per coordinate.
    assert moved.std() > 5.0
    assert engine.accountant.history == [(50.0, 1 / 6, steps)]
    assert type(opt).__name__ == "DPOptimizerFastGradientClipping"


def test_bk_empty_batch_gives_zero_clipped_sum():
    model, wrapped, opt, _, _ = make_bk()
    opt.zero_grad(set_to_none=True)
    wrapped(torch.zeros(0, 1, 8, 8)).mean().backward()
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())


@pytest.mark.parametrize("private", [True, False])
def test_backward_in_chunks_gives_the_whole_batch_gradient(private):
    """dpsgd.backward bounds memory by chunks of examples; the gradient is the batch's."""
    x, y = data(7)

    def loss_fn(m, xb, yb):  # each row's target is a function of the row: no hidden state
        return F.binary_cross_entropy_with_logits(m(xb, yb), (xb.mean((1, 2, 3)) > 0).float())

    def grads(chunk):
        torch.manual_seed(0)
        model = Discriminator(1, 8, 4, 4)
        module = BookKeeping(model, C) if private else model
        loss = dpsgd.backward(module, loss_fn, x, y, chunk)
        return loss, torch.cat([p.grad.flatten() for p in model.parameters()])

    (loss_whole, whole), (loss_chunked, chunked) = grads(7), grads(3)
    torch.testing.assert_close(chunked, whole, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(loss_chunked, loss_whole)
