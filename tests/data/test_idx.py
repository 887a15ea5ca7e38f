"""IDX (MNIST format) loader: raw and gzip, folder or file, an MNIST-shaped set made here, bad
files. (The real shared MNIST-10k is checked by bench/check_shared_data.py, not by the suite:
tests pass in any clone.)"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from privsynth.data import load_dataset
from privsynth.errors import DataError


def write_idx(path: Path, array: np.ndarray) -> Path:
    """``array`` (uint8) as an IDX file; gzip-compressed when the name ends in .gz."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    raw = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += array.tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


@pytest.fixture
def idx_pair(tmp_path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A tiny MNIST-style pair in ``tmp_path/idx``: (folder, images N x H x W, labels)."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(12, 6, 6), dtype=np.uint8)
    labels = (np.arange(12) % 4).astype(np.uint8)
    folder = tmp_path / "idx"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte", images)
    write_idx(folder / "train-labels-idx1-ubyte", labels)
    return folder, images, labels


def test_idx_folder_raw(idx_pair):
    folder, images, labels = idx_pair
    data = load_dataset(folder, classes=4)
    assert data.images.shape == (12, 1, 6, 6) and data.images.dtype == np.uint8
    np.testing.assert_array_equal(data.images[:, 0], images)
    np.testing.assert_array_equal(data.labels, labels)
    assert data.class_names == ["0", "1", "2", "3"]


def test_idx_gzip_images_file_finds_labels_beside_it(tmp_path):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(10, 4, 4), dtype=np.uint8)
    labels = np.array([3, 7] * 5, dtype=np.uint8)
    img = write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    data = load_dataset(img, classes=8)
    np.testing.assert_array_equal(data.images[:, 0], images)
    # Integer labels are indices into the declared list: 3 stays 3, and the absent classes stay.
    assert data.class_names == [str(d) for d in range(8)]
    np.testing.assert_array_equal(data.labels, labels)
    assert data.class_counts().tolist() == [0, 0, 0, 5, 0, 0, 0, 5]


def test_idx_needs_a_declared_class_list(idx_pair):
    folder, _, _ = idx_pair
    with pytest.raises(DataError, match="class list is a public input.*--classes N"):
        load_dataset(folder)
    with pytest.raises(DataError, match="outside 0..2"):
        load_dataset(folder, classes=3)  # a label 3 is present: it cannot add a class


def test_mnist_shaped_set_made_here(tmp_path):
    """The loader on an MNIST-layout folder (t10k names, gzip, 28 x 28, ten classes) built in
    the test, with known class counts."""
    rng = np.random.default_rng(5)
    counts = np.array([5, 6, 4, 5, 5, 3, 4, 6, 5, 7])
    labels = rng.permutation(np.repeat(np.arange(10), counts)).astype(np.uint8)
    images = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
    folder = tmp_path / "mnist-t10k"
    folder.mkdir()
    write_idx(folder / "t10k-images-idx3-ubyte.gz", images)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels)
    data = load_dataset(folder, classes=10)
    assert data.images.shape == (50, 1, 28, 28) and data.images.dtype == np.uint8
    assert data.class_counts().tolist() == counts.tolist()
    assert data.class_names == [str(d) for d in range(10)]
    assert data.name == "mnist-t10k" and len(data.fingerprint) == 64
    np.testing.assert_array_equal(data.images[:, 0], images)
    by_file = load_dataset(folder / "t10k-images-idx3-ubyte.gz", classes=10)
    assert by_file.fingerprint == data.fingerprint and by_file.name == "mnist-t10k"


def test_bad_magic(idx_pair):
    folder, _, _ = idx_pair
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(b"\x12\x34" + path.read_bytes()[2:])
    with pytest.raises(DataError, match="bad magic"):
        load_dataset(folder, classes=4)


@pytest.mark.parametrize("cut", [6, 40])
def test_truncated(idx_pair, cut):
    folder, _, _ = idx_pair
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(DataError, match="truncated"):
        load_dataset(folder, classes=4)


def test_truncated_gzip_stream(tmp_path):
    images = np.zeros((4, 4, 4), np.uint8)
    img = write_idx(tmp_path / "x-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "x-labels-idx1-ubyte.gz", np.array([0, 1, 0, 1], np.uint8))
    img.write_bytes(img.read_bytes()[:-8])  # a cut-off download
    with pytest.raises(DataError, match="re-download"):
        load_dataset(img, classes=2)


def test_count_mismatch(tmp_path):
    write_idx(tmp_path / "a-images-idx3-ubyte", np.zeros((5, 4, 4), np.uint8))
    write_idx(tmp_path / "a-labels-idx1-ubyte", np.array([0, 1, 0], np.uint8))
    with pytest.raises(DataError, match="5 images but .* 3 labels"):
        load_dataset(tmp_path, classes=2)


def test_missing_labels_file(tmp_path):
    img = write_idx(tmp_path / "a-images-idx3-ubyte", np.zeros((5, 4, 4), np.uint8))
    with pytest.raises(DataError, match="no labels file"):
        load_dataset(img, classes=2)


def test_gzip_helper_is_really_gzip(tmp_path):
    path = write_idx(tmp_path / "z-images-idx3-ubyte.gz", np.ones((2, 3, 3), np.uint8))
    assert gzip.decompress(path.read_bytes())[:4] == bytes([0, 0, 8, 3])
