"""IDX (MNIST format) loader: raw and gzip, folder or file, the shared MNIST-10k, bad files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from privsynth.data import load_dataset
from privsynth.errors import DataError

# The repo root's sibling ../shared/data (CI clones the repo with shared/ beside it).
MNIST_10K = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mnist-t10k"


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
    data = load_dataset(folder)
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
    data = load_dataset(img)
    np.testing.assert_array_equal(data.images[:, 0], images)
    # Label values are kept as class names and mapped to 0..K-1.
    assert data.class_names == ["3", "7"]
    np.testing.assert_array_equal(data.labels, (labels == 7).astype(int))


def test_shared_mnist_10k_loads():
    data = load_dataset(MNIST_10K)
    assert data.images.shape == (10000, 1, 28, 28) and data.images.dtype == np.uint8
    assert data.class_counts().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert data.class_names == [str(d) for d in range(10)]
    assert len(data.fingerprint) == 64


def test_bad_magic(idx_pair):
    folder, _, _ = idx_pair
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(b"\x12\x34" + path.read_bytes()[2:])
    with pytest.raises(DataError, match="bad magic"):
        load_dataset(folder)


@pytest.mark.parametrize("cut", [6, 40])
def test_truncated(idx_pair, cut):
    folder, _, _ = idx_pair
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(DataError, match="truncated"):
        load_dataset(folder)


def test_truncated_gzip_stream(tmp_path):
    images = np.zeros((4, 4, 4), np.uint8)
    img = write_idx(tmp_path / "x-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "x-labels-idx1-ubyte.gz", np.array([0, 1, 0, 1], np.uint8))
    img.write_bytes(img.read_bytes()[:-8])  # a cut-off download
    with pytest.raises(DataError, match="re-download"):
        load_dataset(img)


def test_count_mismatch(tmp_path):
    write_idx(tmp_path / "a-images-idx3-ubyte", np.zeros((5, 4, 4), np.uint8))
    write_idx(tmp_path / "a-labels-idx1-ubyte", np.array([0, 1, 0], np.uint8))
    with pytest.raises(DataError, match="5 images but .* 3 labels"):
        load_dataset(tmp_path)


def test_missing_labels_file(tmp_path):
    img = write_idx(tmp_path / "a-images-idx3-ubyte", np.zeros((5, 4, 4), np.uint8))
    with pytest.raises(DataError, match="no labels file"):
        load_dataset(img)


def test_gzip_helper_is_really_gzip(tmp_path):
    path = write_idx(tmp_path / "z-images-idx3-ubyte.gz", np.ones((2, 3, 3), np.uint8))
    assert gzip.decompress(path.read_bytes())[:4] == bytes([0, 0, 8, 3])
