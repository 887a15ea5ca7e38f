"""dpmepf: DP-MERF's one release over the features of a network trained on public data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import privsynth
from privsynth.cli import main
from privsynth.errors import ConfigError
from privsynth.evaluate.classifier import create_classifier
from privsynth.models import TrainContext
from privsynth.models.mepf import MEPFSynthesizer, PerceptualFeatures, save_feature_network
from privsynth.privacy import PrivacySpec
from privsynth.run import Run

from .test_vae import check_private_run

TINY = {"steps": 20, "batch_size": 30, "g_width": 8, "z_dim": 8}


@pytest.fixture
def feature_file(tmp_path):
    """An untrained LeNet for 8x8 grey images, 5 outputs (weights need not be good here)."""
    torch.manual_seed(0)
    path = tmp_path / "features.safetensors"
    save_feature_network(create_classifier("lenet", 1, 8, 5), "lenet", (1, 8, 8), 5, path)
    return path


def test_dpmepf_trains_accounts_and_samples_without_the_feature_file(
    tmp_path, tiny_dataset, feature_file
):
    run = privsynth.train(
        tiny_dataset,
        "dpmepf",
        tmp_path / "r",
        epsilon=2,
        config={**TINY, "features": str(feature_file)},
        progress=False,
    )
    check_private_run(run, 2)
    assert run.card["config"]["feature_net"] == "lenet:5"
    assert "--features network" in run.card["privacy"]["not_protected"]
    images, _ = run.sample(6, labels=[0, 1, 2] * 2, seed=1)
    feature_file.unlink()  # the public network's weights travel with the run's weights
    again, _ = Run.load(run.path).sample(6, labels=[0, 1, 2] * 2, seed=1)
    assert again.shape == (6, 1, 8, 8) and np.array_equal(images, again)


def test_features_are_bounded_by_c_so_the_sensitivity_is_c(feature_file):
    synth = MEPFSynthesizer((1, 8, 8), 3, {"features": str(feature_file)})
    assert isinstance(synth.features, PerceptualFeatures)
    x = torch.rand(40, 1, 8, 8) * 2 - 1
    x[0] = -1.0  # a black image
    norms = synth.features(x, 1.5).norm(dim=1)
    assert float(norms.max()) <= 1.5 + 1e-5
    assert synth.features(x, 1.5).shape[1] == synth.features.dim


def test_release_noise_reaches_the_released_embedding(tiny_dataset, feature_file):
    synth = MEPFSynthesizer((1, 8, 8), 3, {**TINY, "features": str(feature_file)})
    exact = synth.statistic(tiny_dataset, 0.5).float()
    spec = PrivacySpec(epsilon=None, noise_multiplier=3.0, max_grad_norm=0.5)
    first, release = synth.release(tiny_dataset, TrainContext(privacy=spec))
    second, _ = synth.release(tiny_dataset, TrainContext(privacy=spec))
    noise = (first - exact).double()
    # ~300 entries: the std is known to ~4%, a 15% band is 3.7 of those
    assert noise.std().item() == pytest.approx(3.0 * 0.5, rel=0.15)
    assert not torch.allclose(first, second)
    assert release.history == [(3.0, 1.0, 1)] and release.name == "dpmepf"
    synth.fit_released(first, TrainContext(privacy=spec, progress=False))
    # the released weights keep the noisy class means, at feature norm 1
    means = synth.features.class_means(first, 0.5)[:, :-1] / 0.5
    assert torch.allclose(synth.embedding.means, means.float(), atol=1e-6)


def test_missing_or_mismatched_features_are_one_line_errors(tmp_path, feature_file):
    with pytest.raises(ConfigError, match="dpmepf needs --features PATH"):
        MEPFSynthesizer((1, 8, 8), 3, {})
    with pytest.raises(ConfigError, match="trained on \\(1, 8, 8\\) images"):
        MEPFSynthesizer((1, 16, 16), 3, {"features": str(feature_file)})
    other = tmp_path / "other.safetensors"
    other.write_bytes(b"not a safetensors file")
    with pytest.raises(ConfigError, match="privsynth features"):
        MEPFSynthesizer((1, 8, 8), 3, {"features": str(other)})


def test_cli_makes_features_from_public_data_and_trains_dpmepf(tmp_path, capsys):
    feats = tmp_path / "f.safetensors"
    assert main(["features", "--data", "digits", "--epochs", "1", "--out", str(feats)]) == 0
    assert "dpmepf --features" in capsys.readouterr().out
    args = ["train", "--method", "dpmepf", "--features", str(feats), "--epsilon", "5"]
    args += ["--set", "steps=5", "--out", str(tmp_path / "r"), "--no-progress"]
    args += ["--ledger", str(tmp_path / "ledger.sqlite")]
    assert main(args) == 0
    assert Run.load(tmp_path / "r").card["config"]["feature_net"] == "lenet:10"
