"""Fixtures make tiny data in memory; nothing downloads."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from privsynth.data import ImageDataset

# The repo root's sibling ../shared/data (CI clones the repo with shared/ beside it).
SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
MNIST_10K = SHARED_DATA / "mnist-t10k"

# The smallest GAN that trains end to end: 96 private images / 32 per batch -> q = 1/3, 6 D-steps.
FAST_GAN = {"epochs": 2, "batch_size": 32, "n_d": 2, "width": 8, "g_width": 8, "z_dim": 8}
# A fixed sigma skips Opacus' calibration search (tested on its own in tests/privacy).
FAST_SIGMA = 1.0


def make_tiny(n: int = 120, k: int = 3, size: int = 8, channels: int = 1, seed: int = 0) -> ImageDataset:
    """``n`` images, ``size`` x ``size``, ``k`` classes: a bright bar whose row depends on the class."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % k
    images = rng.integers(0, 40, size=(n, channels, size, size), dtype=np.uint8)
    for i, y in enumerate(labels):
        images[i, :, 2 * y:2 * y + 3, 2:6] = 220
    return ImageDataset(images, labels, [chr(ord("a") + c) for c in range(k)], name="tiny")


@pytest.fixture
def tiny_dataset() -> ImageDataset:
    """120 images, 8x8, 3 classes."""
    return make_tiny()


@pytest.fixture
def fast_gan() -> dict:
    return dict(FAST_GAN)


def write_idx(path: Path, array: np.ndarray, type_code: int = 0x08) -> Path:
    """Write ``array`` as an IDX file (big-endian header); gzip it when the name ends in .gz."""
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + np.ascontiguousarray(array).astype(array.dtype.newbyteorder(">")).tobytes()
    if path.suffix == ".gz":
        raw = gzip.compress(raw)
    path.write_bytes(raw)
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


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One finished tiny DP run shared by read-only tests (checkpoint, sample, info)."""
    import privsynth

    root = tmp_path_factory.mktemp("shared-run")
    return privsynth.train(make_tiny(), "dpgan", root / "run", noise_multiplier=FAST_SIGMA,
                           config=FAST_GAN, progress=False)
