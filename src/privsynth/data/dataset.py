"""The one in-memory form every loader returns, and the seeded train/holdout split."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError, DataError


@dataclass
class ImageDataset:
    """Images as uint8 ``N x C x H x W`` (pixels 0-255), integer labels ``0..K-1``.

    ``fingerprint`` is the SHA-256 of the pixels, labels and class names (what was trained on):
    an in-memory identity for comparisons and local caches. It is computable from the private
    images, so it is never written to a card, a report or anything else that is published.
    ``content`` identifies the *records* (`Content`) as the loader decoded them (before
    ``--image-size`` and ``--channels``); the privacy ledger keys every spend on it (through a
    keyed hash, see privacy/ledger/). In-memory datasets default to their own images' content.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    name: str = "dataset"
    fingerprint: str = field(default="", init=True)
    content: "Content | None" = field(default=None, repr=False)

    def __post_init__(self) -> None:
        validate(self.images, self.labels, self.class_names, self.name)
        self.images = np.ascontiguousarray(self.images, dtype=np.uint8)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if not self.fingerprint:
            self.fingerprint = fingerprint(self.images, self.labels, self.class_names)
        if self.content is None:
            self.content = Content.of(self.images, self.labels, self.class_names)

    @property
    def source_fingerprint(self) -> "Content":
        """The ledger's key input: the records' `Content` (an older name for ``content``)."""
        assert self.content is not None
        return self.content

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
        """Some rows as a new dataset, with its own fingerprint and content."""
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
            f"{name}: {images.shape[0]} images but {labels.size} labels; "
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
    h.update(images.tobytes())  # uint8 and int64: `ImageDataset` converted them
    h.update(labels.tobytes())
    h.update("\x00".join(class_names).encode())
    return h.hexdigest()


def record_digest(pixels: np.ndarray, class_name: str) -> bytes:
    """SHA-256 of one record: its decoded uint8 ``C x H x W`` pixels (shape included) and its
    class name. Never leaves memory: the ledger keeps only keyed (HMAC) forms of it."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    h = hashlib.sha256(b"privsynth-record/1\x00")
    h.update(f"{pixels.shape}\x00{class_name}\x00".encode())
    h.update(pixels.tobytes())
    return h.digest()


class Content:
    """The records of a dataset as a multiset of `record_digest` values, in no order.

    ``digest`` (SHA-256 of the sorted record digests) is the same for any re-encoding or
    re-ordering of the same records. Both stay in memory: ``repr`` and ``str`` show only the
    record count and the object is not JSON-serialisable, so it cannot slip into a card; the
    ledger turns it into a keyed dataset key (`privsynth.privacy.Ledger.key`)."""

    __slots__ = ("records", "digest")

    def __init__(self, records: list[bytes]):
        self.records: list[bytes] = sorted(records)
        self.digest: bytes = hashlib.sha256(
            b"privsynth-content/1\x00" + b"".join(self.records)
        ).digest()

    @classmethod
    def of(cls, images, labels: np.ndarray, class_names: list[str]) -> "Content":
        """The content of decoded uint8 ``C x H x W`` images (an array, or a list of any sizes:
        a folder before resizing) with their label indices."""
        rows = zip(images, labels, strict=True)
        return cls([record_digest(x, class_names[int(k)]) for x, k in rows])

    def __len__(self) -> int:
        return len(self.records)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Content) and other.digest == self.digest

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        return f"<content of {len(self.records)} records>"

    __str__ = __repr__


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
        train, holdout = (np.asarray(d[k], dtype=np.int64) for k in ("train", "holdout"))
        return cls(train, holdout, int(d["seed"]))


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
