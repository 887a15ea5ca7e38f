"""The seeded train/holdout split and the in-memory dataset's own checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from privsynth.data import ImageDataset, split
from privsynth.errors import DataError


def test_split_seeded_disjoint_covering(tiny_dataset):
    a, b = split(tiny_dataset, 0.25, seed=7), split(tiny_dataset, 0.25, seed=7)
    np.testing.assert_array_equal(a.train, b.train)
    assert len(a.holdout) == 30 and len(a.train) == 90
    assert not set(a.train) & set(a.holdout)
    assert sorted([*a.train, *a.holdout]) == list(range(120))
    other = split(tiny_dataset, 0.25, seed=8)
    assert not np.array_equal(a.holdout, other.holdout)


def test_split_count_and_json(tiny_dataset):
    s = split(tiny_dataset, 20, seed=0)
    assert len(s.holdout) == 20
    back = type(s).from_json(json.loads(json.dumps(s.to_json())))
    np.testing.assert_array_equal(back.train, s.train)
    assert back.seed == 0


@pytest.mark.parametrize("holdout", [0, 0.0001, 120, 500])
def test_split_bad_holdout(tiny_dataset, holdout):
    with pytest.raises(DataError, match="choose --holdout"):
        split(tiny_dataset, holdout)


def test_fingerprint_depends_on_content(tiny_dataset):
    copy = ImageDataset(tiny_dataset.images.copy(), tiny_dataset.labels, tiny_dataset.class_names)
    assert copy.fingerprint == tiny_dataset.fingerprint
    images = tiny_dataset.images.copy()
    images[0, 0, 0, 0] ^= 1
    assert (
        ImageDataset(images, tiny_dataset.labels, tiny_dataset.class_names).fingerprint
        != tiny_dataset.fingerprint
    )


def test_dataset_checks(tiny_dataset):
    with pytest.raises(DataError, match="120 images but 119 labels"):
        ImageDataset(tiny_dataset.images, tiny_dataset.labels[:-1], tiny_dataset.class_names)
    with pytest.raises(DataError, match="labels must lie in 0..1"):
        ImageDataset(tiny_dataset.images, tiny_dataset.labels, ["a", "b"])
    nan = tiny_dataset.images.astype(np.float32)
    nan[0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        ImageDataset(nan, tiny_dataset.labels, tiny_dataset.class_names)
    with pytest.raises(DataError, match="no images"):
        ImageDataset(np.zeros((0, 1, 4, 4), np.uint8), np.zeros(0, int), ["a", "b"])
