"""The holdout split is never trained on: the method's fit sees exactly the recorded train rows."""

from __future__ import annotations

import json

import numpy as np

import privsynth
from privsynth.models.gan import GANSynthesizer


def test_fit_sees_only_the_recorded_training_rows(tmp_path, tiny_dataset, fast_gan, monkeypatch):
    seen = []
    real_fit = GANSynthesizer.fit

    def spy(self, data, ctx):
        seen.append(data)
        return real_fit(self, data, ctx)

    monkeypatch.setattr(GANSynthesizer, "fit", spy)
    run = privsynth.train(tiny_dataset, "dpgan", tmp_path / "r", noise_multiplier=1.0,
                          accountant="rdp", holdout=0.25, split_seed=3, config=fast_gan,
                          progress=False)
    (trained,) = seen
    split = json.loads((tmp_path / "r" / "split.json").read_text())
    train_idx, holdout_idx = np.asarray(split["train"]), np.asarray(split["holdout"])
    assert split["seed"] == 3 and len(holdout_idx) == 30 and len(train_idx) == 90
    assert np.array_equal(trained.images, tiny_dataset.images[train_idx])
    assert np.array_equal(trained.labels, tiny_dataset.labels[train_idx])
    assert trained.fingerprint == run.card["data"]["train_fingerprint"]
    # Every image is unique in the fixture, so no holdout image can hide among the training rows.
    held = {img.tobytes() for img in tiny_dataset.images[holdout_idx]}
    assert not held & {img.tobytes() for img in trained.images}
    assert run.card["privacy"]["dp_sgd"]["n_private"] == 90
    train, holdout = run.load_data(tiny_dataset)
    assert train.fingerprint == trained.fingerprint and len(holdout) == 30
