import numpy as np

import privsynth
from privsynth.privacy.accounting import epsilon_from_history
from privsynth.run import Run

TINY_VAE = {"epochs": 1, "batch_size": 32, "width": 8, "z_dim": 4}


def check_private_run(run, target: float) -> None:
    """Card epsilon within 1% below target and recomputed from the card's own history."""
    assert run.card["status"] == "complete"
    assert target * 0.99 <= run.epsilon <= target * 1.01
    sgd = run.card["privacy"]["dp_sgd"]
    again = epsilon_from_history(sgd["history"], sgd["delta"], sgd["accountant"])
    assert abs(again - sgd["epsilon"]) < 1e-9
    # the size release opens the history: one entry before the method's own steps
    assert sgd["history"][0] == run.card["privacy"]["size_release"]["history"][0]
    assert sum(s for _, _, s in sgd["history"]) == sgd["steps"] + 1


def check_sampling_and_roundtrip(run, shape) -> None:
    images, labels = run.sample(9, labels=[0, 1, 2] * 3, seed=3)
    assert images.shape == (9, *shape) and images.dtype == np.uint8
    assert list(labels) == [0, 1, 2] * 3
    again, _ = Run.load(run.path).sample(9, labels=[0, 1, 2] * 3, seed=3)
    assert np.array_equal(images, again)


def test_dpvae_trains_samples_and_accounts(tmp_path, tiny_dataset):
    run = privsynth.train(
        tiny_dataset, "dpvae", tmp_path / "r", epsilon=5, config=TINY_VAE, progress=False
    )
    check_private_run(run, 5)
    check_sampling_and_roundtrip(run, (1, 8, 8))
    assert set(run.synthesizer.state_dict()) and all(
        k.startswith("decoder.") for k in run.synthesizer.state_dict()
    )  # encoder not released


def test_vae_twin_is_non_private(tmp_path, tiny_dataset):
    run = privsynth.train(tiny_dataset, "vae", tmp_path / "r", config=TINY_VAE, progress=False)
    assert run.epsilon == float("inf") and not run.card["private"]
