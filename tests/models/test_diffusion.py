import copy

import torch
from opacus import GradSampleModule

import privsynth
from privsynth.models.diffusion import Denoiser
from privsynth.models.engine import merge_grad_samples

from .test_vae import check_private_run, check_sampling_and_roundtrip

TINY = {"epochs": 1, "batch_size": 32, "width": 8, "multiplicity": 3, "sample_steps": 2}


def test_dpdiffusion_trains_samples_and_accounts(tmp_path, tiny_dataset):
    run = privsynth.train(
        tiny_dataset, "dpdiffusion", tmp_path / "r", epsilon=5, config=TINY, progress=False
    )
    check_private_run(run, 5)
    check_sampling_and_roundtrip(run, (1, 8, 8))
    plain = privsynth.train(tiny_dataset, "diffusion", tmp_path / "p", config=TINY, progress=False)
    assert plain.epsilon == float("inf")


def test_noise_multiplicity_gives_one_gradient_per_image():
    torch.manual_seed(0)
    B, K = 4, 3
    model = Denoiser(1, 8, 3, width=8, multiplicity=K, p_mean=-1.2, p_std=1.2, p_uncond=0.2)
    x, y = torch.rand(B, 1, 8, 8) * 2 - 1, torch.tensor([0, 1, 2, 0])
    reference = copy.deepcopy(model)  # unhooked twin: Opacus' hooks must not see the reference
    gsm = GradSampleModule(model)  # Opacus' hooks, loss reduction "mean" as in make_private
    torch.manual_seed(1)
    gsm(x, y).mean().backward()
    merge_grad_samples(gsm, B, K)
    params = [p for p in model.parameters() if p.requires_grad]
    assert all(p.grad_sample.shape[0] == B for p in params)
    # Reference: the gradient of each image's own loss, the mean over its K noised copies,
    # with the same random draws (same seed, same shapes).
    torch.manual_seed(1)
    rows = reference(x, y)
    assert rows.shape == (B * K,)
    for i in range(B):
        grads = torch.autograd.grad(
            rows[i * K : (i + 1) * K].mean(),
            list(reference.parameters()),
            retain_graph=True,
            allow_unused=True,
        )
        for p, g in zip(params, grads, strict=True):
            ref = torch.zeros_like(p) if g is None else g
            assert torch.allclose(p.grad_sample[i], ref, atol=1e-5, rtol=1e-4)
    gsm._close()
