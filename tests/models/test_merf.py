import numpy as np
import pytest
import torch

import privsynth
from privsynth.errors import ConfigError
from privsynth.models.merf import KernelFeatures, MERFConfig, MERFSynthesizer
from privsynth.privacy.accounting import epsilon_from_history

from .test_vae import check_private_run, check_sampling_and_roundtrip

TINY = {"n_features": 32, "steps": 20, "batch_size": 30, "g_width": 8, "z_dim": 8}


def test_dpmerf_one_release_accounted(tmp_path, tiny_dataset):
    run = privsynth.train(
        tiny_dataset, "dpmerf", tmp_path / "r", epsilon=2, config=TINY, progress=False
    )
    check_private_run(run, 2)
    sgd = run.card["privacy"]["dp_sgd"]
    size = run.card["privacy"]["size_release"]["history"][0]
    sigma = sgd["noise_multiplier"]
    assert sgd["history"] == [size, [sigma, 1.0, 1]]  # the size release, then the one release
    assert sgd["poisson_sampling"] is False  # q = 1: every image is in the release, none sampled
    # sigma: the smallest whose composition with the size release meets the target (Opacus)
    composed = epsilon_from_history([size, (sigma, 1.0, 1)], sgd["delta"], "prv")
    assert composed <= 2 + 1e-9
    assert epsilon_from_history([size, (sigma * 0.98, 1.0, 1)], sgd["delta"], "prv") > 2
    check_sampling_and_roundtrip(run, (1, 8, 8))


def test_features_have_norm_c_so_sensitivity_is_c():
    feats = KernelFeatures((1, 8, 8), MERFConfig(n_features=100))
    x = torch.rand(50, 1, 8, 8) * 2 - 1
    norms = feats(x, norm=1.5).norm(dim=1)
    assert np.allclose(norms.numpy(), 1.5, atol=1e-5)


def test_merf_without_dp_is_the_twin(tmp_path, tiny_dataset):
    run = privsynth.train(
        tiny_dataset, "dpmerf", tmp_path / "r", no_dp=True, config=TINY, progress=False
    )
    assert run.epsilon == float("inf")


def test_target_is_the_true_class_mean_embedding_without_noise():
    """No noise: the generator's target must be each class's exact mean f(x), for any C and D."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(60, 1, 8, 8, generator=g) * 2 - 1, torch.arange(60) % 3
    for norm, d in [(1.0, 100), (2.5, 2000)]:
        feats = KernelFeatures((1, 8, 8), MERFConfig(n_features=d))
        f = feats(x, norm).double()
        released = torch.zeros(f.shape[1], 3, dtype=torch.float64).index_add_(1, y, f.T)
        target = feats.class_means(released, norm)
        truth = torch.stack([f[y == k].mean(0) for k in range(3)])
        assert torch.allclose(target, truth, atol=1e-9)
        assert torch.allclose(target.norm(dim=1), truth.norm(dim=1))  # not inflated


def test_release_noise_reaches_the_embedding_at_sigma_c(tiny_dataset):
    """The released sums differ from the exact ones by N(0, (sigma C)^2) per entry, fresh noise
    each release (OS entropy), and the generator is trained on exactly that release."""
    from privsynth.models import TrainContext
    from privsynth.privacy import PrivacySpec

    synth = MERFSynthesizer((1, 8, 8), 10, TINY)
    exact, none = synth.release(tiny_dataset, TrainContext(privacy=None))
    spec = PrivacySpec(epsilon=None, noise_multiplier=3.0, max_grad_norm=0.5)
    first, release = synth.release(tiny_dataset, TrainContext(privacy=spec))
    second, _ = synth.release(tiny_dataset, TrainContext(privacy=spec))
    exact_c, _ = MERFSynthesizer((1, 8, 8), 10, TINY).release(
        tiny_dataset,
        TrainContext(privacy=PrivacySpec(epsilon=None, noise_multiplier=1e-9, max_grad_norm=0.5)),
    )
    noise = (first - exact_c).double()
    assert abs(noise.std().item() / (3.0 * 0.5) - 1) < 0.1
    assert not torch.allclose(first, second)
    assert none is None and release.history == [(3.0, 1.0, 1)] and release.sensitivity == 0.5
    assert release.card()["history"] == [[3.0, 1.0, 1]] and release.name == "dpmerf"
    assert torch.allclose(exact_c, exact * 0.5, atol=1e-4)  # sums scale with C


def test_release_noise_reaches_the_released_generator(tmp_path, tiny_dataset, monkeypatch):
    """Same seed, same schedule, the noise drawn from a seeded stream instead of OS entropy (so
    the runs are comparable): only the noise's scale differs, and the published generator weights
    move with it: identical at equal scales, far apart at sigma 1000."""
    import privsynth.models.base as base
    from privsynth.privacy.release import gaussian

    def seeded_release(values, sigma, sensitivity=1.0, name="", q=1.0):
        g = torch.Generator().manual_seed(0)
        noise = torch.randn(values.shape, generator=g, dtype=torch.float64)
        return values.double() + sigma * sensitivity * noise, gaussian(name, sigma, sensitivity)

    monkeypatch.setattr(base, "gaussian_noise_release", seeded_release)
    cfg = {**TINY, "patience": 1000}
    runs = [
        privsynth.train(
            tiny_dataset,
            "dpkernel",
            tmp_path / str(i),
            noise_multiplier=sigma,
            accountant="rdp",
            config=cfg,
            progress=False,
            seed=3,
        )
        for i, sigma in enumerate([0.01, 1e3, 0.01])
    ]
    w = [r.synthesizer.state_dict() for r in runs]
    floats = [k for k in w[0] if w[0][k].is_floating_point()]
    gap = max((w[0][k] - w[1][k]).abs().max().item() for k in floats)
    same = max((w[0][k] - w[2][k]).abs().max().item() for k in floats)
    assert same < 1e-6 and gap > 0.05
    assert runs[1].card["train"]["metrics"]["loss"] > 1e3 * runs[0].card["train"]["metrics"]["loss"]


def test_dpkernel_stops_when_the_public_loss_stops_improving(tmp_path, tiny_dataset):
    run = privsynth.train(
        tiny_dataset,
        "dpkernel",
        tmp_path / "r",
        epsilon=5,
        config={**TINY, "steps": 2000, "patience": 30},
        progress=False,
    )
    assert run.card["config"]["kernels"] == "1:0.14,1:0.29,1:0.57,2:0.14,4:0.07"
    assert 30 < run.card["train"]["metrics"]["generator_steps"] < 2000  # improved, then stopped
    check_private_run(run, 5)


def test_released_embedding_is_the_noisy_release_not_the_exact_one(
    tmp_path, tiny_dataset, monkeypatch
):
    """The class means shipped in weights.safetensors (read by sampling's witness floor) are the
    Gaussian release itself, noise included: equal to the noisy sums' class means, far from the
    exact ones; without DP they are the exact ones."""
    import privsynth.models.base as base

    drawn = {}
    real_release = base.gaussian_noise_release

    def capture(*args):
        drawn["noisy"], release = real_release(*args)
        return drawn["noisy"], release

    monkeypatch.setattr(base, "gaussian_noise_release", capture)
    runs = {
        name: privsynth.train(
            tiny_dataset, "dpmerf", tmp_path / name, config=TINY, progress=False, **kw
        )
        for name, kw in [
            ("dp", {"noise_multiplier": 3.0, "max_grad_norm": 0.5, "accountant": "rdp"}),
            ("twin", {"no_dp": True}),
        ]
    }
    loaded = {k: privsynth.Run.load(r.path).synthesizer for k, r in runs.items()}
    feats = loaded["dp"].features
    train, _ = runs["dp"].load_data(tiny_dataset)  # both runs hold out the same split
    exact = feats.class_means(loaded["dp"].statistic(train, 1.0), 1.0)[:, :-1]
    noisy = feats.class_means(drawn["noisy"], 0.5)[:, :-1] / 0.5
    released = loaded["dp"].embedding.means.double()
    assert torch.allclose(released, noisy, atol=1e-5)
    assert (released - exact).abs().max() > 0.05  # sigma C / n_k = 1.5 / 40 per entry
    assert torch.allclose(loaded["twin"].embedding.means.double(), exact, atol=1e-5)
    assert loaded["dp"].embedding.ready and loaded["twin"].embedding.ready


def test_witness_floor_redraws_images_far_from_the_release(tmp_path, tiny_dataset):
    """A generator that turns some z into blown-out (all-white) images: the witness of those is
    about 0, the floor redraws them, and ``witness_floor=0`` keeps them."""
    run = privsynth.train(
        tiny_dataset,
        "dpmerf",
        tmp_path / "r",
        no_dp=True,
        # 500 frequencies: the random-feature error of a far image's witness is ~1/sqrt(D)
        config={**TINY, "n_features": 500, "steps": 300, "patience": 1000},
        progress=False,
        seed=1,
    )
    synth = run.synthesizer
    forward = synth.generator.forward

    def blowing_out(z, y):  # about one draw in six comes out white
        out = forward(z, y)
        return torch.where((z[:, :1] > 1.0)[:, :, None, None], torch.ones_like(out), out)

    synth.generator.forward = blowing_out
    labels = np.arange(600) % 3
    white = lambda images: (images.reshape(len(images), -1) > 250).mean(1) > 0.9  # noqa: E731
    assert white(synth.sample(600, labels, seed=0)).sum() == 0
    synth.config.witness_floor = 0.0
    assert 50 < white(synth.sample(600, labels, seed=0)).sum() < 150
    x = torch.ones(3, 1, 8, 8)
    med = synth.embedding.median[torch.arange(3)]
    assert (synth.witness(x, torch.arange(3)) < 0.05 * med).all()
    assert run.card["train"]["metrics"]["witness_redrawn"] < 0.2


def test_weights_without_the_embedding_still_load_and_sample(tiny_dataset):
    """Weights saved before the embedding was released: they load, and sampling keeps every draw."""
    synth = MERFSynthesizer((1, 8, 8), 3, TINY)
    state = {k: v for k, v in synth.state_dict().items() if not k.startswith("embedding.")}
    fresh = MERFSynthesizer((1, 8, 8), 3, TINY)
    fresh.load_state_dict(state)
    assert not fresh.embedding.ready
    assert fresh.sample(6, np.arange(6) % 3, seed=0).shape == (6, 1, 8, 8)


@pytest.mark.parametrize("floor", [1.0, -0.1])
def test_witness_floor_outside_0_1_is_a_config_error(floor):
    with pytest.raises(ConfigError, match="witness_floor"):
        MERFSynthesizer((1, 8, 8), 3, {"witness_floor": floor})


def test_contrast_pushes_sampled_pixels_toward_ink_or_paper_and_keeps_their_order():
    """``contrast`` maps each pixel through tanh(c x) / tanh(c) on -1..1 after the draw: black and
    white stay put, mid-greys move outward, the ranking of pixels is unchanged, 0 keeps pixels."""
    synth = MERFSynthesizer((1, 8, 8), 3, {**TINY, "witness_floor": 0.0})
    labels = np.arange(30) % 3
    plain = synth.sample(30, labels, seed=0).astype(float)
    synth.config.contrast = 1.5
    sharp = synth.sample(30, labels, seed=0).astype(float)
    x = plain / 127.5 - 1
    expected = (np.tanh(1.5 * x) / np.tanh(1.5) + 1) * 127.5
    assert np.abs(sharp - expected).max() <= 1.5  # uint8 rounding of both, slope <= 1.7
    assert (np.abs(sharp - 127.5) >= np.abs(plain - 127.5) - 1).all()
    assert (np.abs(sharp - 127.5) > np.abs(plain - 127.5) + 1).mean() > 0.3  # greys moved out
    synth.config.contrast = 0.0
    assert np.array_equal(synth.sample(30, labels, seed=0), plain.astype(np.uint8))


@pytest.mark.parametrize("contrast", [-1.0, 25.0])
def test_contrast_outside_0_20_is_a_config_error(contrast):
    with pytest.raises(ConfigError, match="contrast"):
        MERFSynthesizer((1, 8, 8), 3, {"contrast": contrast})


def test_noise_floor_is_the_loss_the_private_data_scores_against_the_release(tiny_dataset):
    """`noise_floor` against its definition: the expected squared distance (units of C^2) between
    the release's class means and a batch of the private images' own mean embedding, measured by
    drawing the Gaussian noise and the batches many times."""
    from privsynth.data import to_unit_range

    synth = MERFSynthesizer((1, 8, 8), 3, {**TINY, "n_features": 200})
    C, sigma, batch = 0.5, 2.0, 30
    exact = synth.statistic(tiny_dataset, C).float()
    feats = synth.features(torch.from_numpy(to_unit_range(tiny_dataset.images)), C)[:, :-1]
    y = torch.from_numpy(tiny_dataset.labels).long()
    gen = torch.Generator().manual_seed(0)
    losses, floors = [], []
    for _ in range(300):
        noisy = exact + sigma * C * torch.randn(exact.shape, generator=gen)  # the release's law
        target = synth.features.class_means(noisy.float(), C)[:, :-1]
        picks = torch.cat(
            [
                torch.nonzero(y == c).squeeze(1)[torch.randint(40, (10,), generator=gen)]
                for c in range(3)
            ]
        )  # 10 per class: batch 30 over 3 classes
        batch_mean = torch.stack([feats[picks[10 * c : 10 * c + 10]].mean(0) for c in range(3)])
        losses.append(float((batch_mean - target).pow(2).sum() / C**2))
        floors.append(synth.noise_floor(noisy.float(), sigma, C, batch))
    assert np.mean(losses) == pytest.approx(np.mean(floors), rel=0.1)
    # the noise's share dominates here; without noise only the batches' spread is left
    no_noise = synth.noise_floor(exact, 0.0, C, batch)
    assert 0 < no_noise < 0.2 * np.mean(floors)


def test_stop_at_noise_ends_a_private_run_at_the_floor_and_says_so(tmp_path, tiny_dataset):
    config = {**TINY, "steps": 3000, "patience": 3000, "stop_at_noise": True}
    run = privsynth.train(
        tiny_dataset, "dpmerf", tmp_path / "dp", epsilon=1, config=config, progress=False
    )
    metrics = run.card["train"]["metrics"]
    assert metrics["generator_steps"] < 3000  # the floor, not the step ceiling, ended it
    assert metrics["loss"] <= metrics["noise_floor"]
    twin = privsynth.train(
        tiny_dataset,
        "dpmerf",
        tmp_path / "twin",
        no_dp=True,
        config={**config, "steps": 50},
        progress=False,
    )  # no release noise: nothing to stop at
    assert "noise_floor" not in twin.card["train"]["metrics"]
    assert twin.card["train"]["metrics"]["generator_steps"] == 50
