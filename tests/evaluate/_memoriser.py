"""A test-only "generative model" that memorises: sampling returns copies of training images.

The worst case for privacy: every attack should see it. Registered by tests via monkeypatch."""

from __future__ import annotations

import numpy as np
import torch

from privsynth.models.base import FitResult, Method


class Memoriser(Method):
    name, kind = "memorise", "none"  # never private

    def __init__(self, image_shape, num_classes, config=None, private=False, name="memorise"):
        self.name, self.private, self.num_classes = name, False, num_classes
        self.images = np.zeros((0, *image_shape), np.uint8)
        self.labels = np.zeros(0, np.int64)

    def config_dict(self) -> dict:
        return {}

    def fit(self, data, ctx) -> FitResult:
        self.images, self.labels = data.images.copy(), data.labels.copy()
        return FitResult(steps=1)

    def sample(self, n, labels=None, seed=None) -> np.ndarray:
        rng = np.random.default_rng(seed)
        out = []
        for k in labels:
            pool = np.flatnonzero(self.labels == k)
            out.append(self.images[rng.choice(pool)] if len(pool) else self.images[0])
        return np.stack(out)

    def state_dict(self) -> dict:
        return {"images": torch.from_numpy(self.images), "labels": torch.from_numpy(self.labels)}

    def load_state_dict(self, state) -> None:
        self.images, self.labels = state["images"].numpy(), state["labels"].numpy()
