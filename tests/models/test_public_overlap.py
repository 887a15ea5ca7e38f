"""`--public-data` must hold no copy of the private records: re-encoded, subset, superset and
near-copies are refused; unrelated images are accepted."""

from __future__ import annotations

import numpy as np
import pytest

from privsynth.data import ImageDataset
from privsynth.errors import DataError
from privsynth.models.warmup import load_public
from tests.conftest import make_tiny_dataset


def _npz(path, data: ImageDataset, rows=None):
    rows = np.arange(len(data)) if rows is None else rows
    names = data.class_names
    np.savez(path, images=data.images[rows], labels=data.labels[rows], class_names=names)
    return path


def test_public_data_overlap_refuses_copies_subsets_supersets(
    tmp_path, tiny_dataset, image_folder_writer
):
    private = image_folder_writer(
        tmp_path / "private", tiny_dataset.images, tiny_dataset.labels, tiny_dataset.class_names
    )
    from privsynth.data import load_dataset

    dataset = load_dataset(private)
    other = make_tiny_dataset(n=60, seed=11)
    both = ImageDataset(
        np.concatenate([other.images, tiny_dataset.images[:5]]),
        np.concatenate([other.labels, tiny_dataset.labels[:5]]),
        tiny_dataset.class_names,
    )
    noisy = tiny_dataset.images.astype(np.int16) + np.random.default_rng(3).integers(
        -2, 3, tiny_dataset.images.shape
    )
    near = ImageDataset(
        np.clip(noisy, 0, 255).astype(np.uint8),
        (tiny_dataset.labels + 1) % 3,
        tiny_dataset.class_names,
    )
    candidates = {
        "re-encoded": _npz(tmp_path / "copy.npz", tiny_dataset),
        "permuted subset": _npz(tmp_path / "sub.npz", tiny_dataset, np.arange(40)[::-1]),
        "superset": both,
        "relabelled near-copies": near,
    }
    for what, public in candidates.items():
        with pytest.raises(DataError, match="copies of the private data"):
            load_public(public, dataset)
            pytest.fail(f"{what} accepted")
    accepted, _ = load_public(_npz(tmp_path / "other.npz", other), dataset)
    assert len(accepted) == 60
