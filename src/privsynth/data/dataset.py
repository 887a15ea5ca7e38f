"""The one in-memory form every loader returns, and the seeded train/holdout split."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError


@dataclass
class ImageDataset:
    """Images as uint8 ``N x C x H x W`` (pixels 0-255), integer labels ``0..K-1``.

    ``fingerprint`` is the SHA-256 of the pixels, labels and class names (what was trained on).
    ``source_fingerprint`` identifies the *records* before any conversion: a loader hashes the
    source file bytes / arrays, so ``--image-size 64`` or a colour conversion of the same folder
    keeps it. The privacy ledger keys every spend on it: one budget per set of people, whatever
    the path or the preprocessing. In-memory datasets default to their pixel fingerprint.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    name: str = "dataset"
    fingerprint: str = field(default="", init=True)
    source_fingerprint: str = ""

    def __post_init__(self) -> None:
        validate(self.images, self.labels, self.class_names, self.name)
        self.images = np.ascontiguousarray(self.images, dtype=np.uint8)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if not self.fingerprint:
            self.fingerprint = fingerprint(self.images, self.labels, self.class_names)
        if not self.source_fingerprint:
            self.source_fingerprint = self.fingerprint

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, indices: np.ndarray, name: str | None = None) -> "ImageDataset":
        """A view on some rows; the fingerprint is recomputed for the subset."""
        idx = np.asarray(indices, dtype=np.int64)
        return ImageDataset(
            self.images[idx], self.labels[idx], list(self.class_names), name or self.name
        )

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.num_classes)


def validate(images: np.ndarray, labels: np.ndarray, class_names: list[str], name: str) -> None:
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 4:
        raise DataError(
            f"{name}: images must be N x C x H x W, got shape {images.shape}; "
            "pass N x H x W (grayscale) or N x H x W x C arrays to the loader instead"
        )
    if images.shape[0] == 0:
        raise DataError(f"{name}: no images found; point --data at a non-empty dataset")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(
            f"{name}: {images.shape[0]} images but "
            f"{labels.reshape(-1).shape[0]} labels; "
            "images and labels must have the same count"
        )
    if images.dtype.kind == "f" and not np.isfinite(images).all():
        raise DataError(
            f"{name}: images contain NaN or infinite values; clean or drop those images"
        )
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise DataError(f"{name}: labels contain NaN or infinite values; every image needs a class")
    if images.dtype != np.uint8:
        raise DataError(
            f"{name}: images must be uint8 0-255 here, got {images.dtype}; "
            "the loaders convert for you"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise DataError(
            f"{name}: labels must lie in 0..{len(class_names) - 1}; relabel the classes"
        )
    if images.shape[1] not in (1, 3):
        raise DataError(
            f"{name}: images need 1 (grayscale) or 3 (RGB) channels, got {images.shape[1]}"
        )


def fingerprint(images: np.ndarray, labels: np.ndarray, class_names: list[str]) -> str:
    h = hashlib.sha256()
    h.update(str(images.shape).encode())
    h.update(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    h.update(np.asarray(labels, dtype=np.int64).tobytes())
    h.update("\x00".join(class_names).encode())
    return h.hexdigest()


def source_fingerprint(*parts: np.ndarray | bytes | str) -> str:
    """SHA-256 over raw source records (arrays with their dtype and shape, bytes, strings), taken
    *before* a loader converts, rescales or resizes anything: the privacy ledger's key."""
    h = hashlib.sha256(b"privsynth-source/1")
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(f"{part.dtype.str}{part.shape}".encode())
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(part.encode() if isinstance(part, str) else bytes(part))
        h.update(b"\x00")
    return h.hexdigest()


def files_fingerprint(files: list[tuple[Path, str]]) -> str:
    """Source fingerprint of image files with their class names: the SHA-256 of each file's bytes,
    sorted, so renaming or re-ordering files keeps it and any changed byte changes it."""
    digests = sorted(
        f"{label}\x00{hashlib.sha256(path.read_bytes()).hexdigest()}" for path, label in files
    )
    return source_fingerprint(*digests)


@dataclass
class Split:
    """Which rows of the dataset are private training data and which are held out.

    Holdout rows are never trained on: evaluation uses them as the real reference and as the
    non-members of membership-inference attacks.
    """

    train: np.ndarray
    holdout: np.ndarray
    seed: int

    def to_json(self) -> dict:
        return {"seed": self.seed, "train": self.train.tolist(), "holdout": self.holdout.tolist()}

    @classmethod
    def from_json(cls, d: dict) -> "Split":
        return cls(
            np.asarray(d["train"], dtype=np.int64),
            np.asarray(d["holdout"], dtype=np.int64),
            int(d["seed"]),
        )


def split(data: ImageDataset, holdout: float | int = 0.2, seed: int = 0) -> Split:
    """Seeded random split. ``holdout`` is a fraction (<1) or a count of images."""
    if isinstance(holdout, str) or not math.isfinite(holdout):
        raise ConfigError(
            f"--holdout {holdout!r}: this command takes a fraction (<1) or a count "
            "of images; a test-split path is read by train, sweep and evaluate"
        )
    if holdout >= 1 and holdout != int(holdout):  # 10.5 images would silently become 10
        raise ConfigError(
            f"--holdout {holdout}: a count of images must be a whole number (or pass a "
            "fraction below 1)"
        )
    n = len(data)
    n_holdout = int(round(holdout * n)) if holdout < 1 else int(holdout)
    if not 0 < n_holdout < n:
        raise DataError(
            f"holdout of {holdout} leaves {n - n_holdout} training images out of {n}; "
            "choose --holdout between 0 and 1 (fraction) or 1..N-1 (count)"
        )
    perm = np.random.default_rng(seed).permutation(n)
    return Split(np.sort(perm[n_holdout:]), np.sort(perm[:n_holdout]), seed)
