"""Writing synthetic sets: PNG folders and .npz files that the loaders read back unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from privsynth.data import load_dataset
from privsynth.errors import ConfigError
from privsynth.synthetic import write_synthetic


@pytest.mark.parametrize("channels", [1, 3])
def test_png_folder_round_trip(tmp_path, channels):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(8, channels, 5, 5), dtype=np.uint8)
    labels = np.array([0, 1, 0, 1, 2, 2, 0, 1])
    out = write_synthetic(tmp_path / "s", images, labels, ["x", "y", "z"])
    back = load_dataset(out, channels=channels)
    assert back.class_names == ["x", "y", "z"]
    order = np.argsort(labels, kind="stable")  # the loader reads class by class
    np.testing.assert_array_equal(back.images, images[order])
    np.testing.assert_array_equal(back.labels, labels[order])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left behind


def test_npz_round_trip(tmp_path):
    images = np.arange(2 * 1 * 3 * 3, dtype=np.uint8).reshape(2, 1, 3, 3)
    write_synthetic(tmp_path / "s.npz", images, np.array([1, 0]), ["a", "b"])
    back = load_dataset(tmp_path / "s.npz")
    np.testing.assert_array_equal(back.images, images)
    assert back.labels.tolist() == [1, 0]


def test_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "old.png").write_bytes(b"")
    with pytest.raises(ConfigError, match="pass --overwrite to replace it or choose a new --out"):
        write_synthetic(tmp_path / "s", np.zeros((1, 1, 2, 2), np.uint8), np.array([0]), ["a"])
    write_synthetic(
        tmp_path / "s", np.zeros((1, 1, 2, 2), np.uint8), np.array([0]), ["a"], overwrite=True
    )
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["a"]  # the old content is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # and no temporary folder left


def test_one_rule_for_an_existing_npz(tmp_path):
    images = np.zeros((1, 1, 2, 2), np.uint8)
    write_synthetic(tmp_path / "s.npz", images, np.array([0]), ["a", "b"])
    with pytest.raises(ConfigError, match="'.*s.npz' exists; pass --overwrite"):
        write_synthetic(tmp_path / "s.npz", images + 1, np.array([0]), ["a", "b"])
    write_synthetic(tmp_path / "s.npz", images + 1, np.array([0]), ["a", "b"], overwrite=True)
    assert np.load(tmp_path / "s.npz")["images"].max() == 1


def test_a_file_name_is_not_a_folder(tmp_path):
    with pytest.raises(ConfigError, match="'.*x.txt' looks like a file name; pass a folder"):
        write_synthetic(tmp_path / "x.txt", np.zeros((1, 1, 2, 2), np.uint8), np.array([0]), ["a"])
    assert not (tmp_path / "x.txt").exists()
