"""Split one dataset into N data owners for experiments: IID, or non-IID Dirichlet over labels.

In a real deployment every owner loads its own data (one path per owner, ``--owner-data``);
these splits only simulate owners from a single dataset. Partitions are seeded and disjoint,
and every owner gets at least ``min_size`` images.
"""

from __future__ import annotations

import numpy as np

from ..data import ImageDataset
from ..errors import ConfigError

SCHEMES = ("iid", "dirichlet")


def iid(labels: np.ndarray, n_owners: int, seed: int = 0) -> list[np.ndarray]:
    """Shuffle and cut into ``n_owners`` near-equal parts (indices into ``labels``)."""
    _check(len(labels), n_owners)
    perm = np.random.default_rng(seed).permutation(len(labels))
    return [np.sort(p) for p in np.array_split(perm, n_owners)]


def dirichlet(
    labels: np.ndarray,
    n_owners: int,
    alpha: float,
    seed: int = 0,
    min_size: int = 10,
    max_tries: int = 100,
) -> list[np.ndarray]:
    """Label skew: for each class, owner shares ~ Dirichlet(alpha, ..., alpha); small ``alpha``
    (0.1-0.5) gives each owner a few dominant classes, a large one tends to IID. Redraws (seeded)
    until every owner has ``min_size`` images."""
    _check(len(labels), n_owners)
    if not alpha > 0:
        raise ConfigError(
            f"--dirichlet alpha must be > 0, got {alpha}; e.g. 0.3 (skewed) or 100 (~IID)"
        )
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    for _ in range(max_tries):
        parts: list[list[int]] = [[] for _ in range(n_owners)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(labels == c))
            shares = rng.dirichlet(np.full(n_owners, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(idx)).astype(int)
            for owner, chunk in enumerate(np.split(idx, cuts)):
                parts[owner].extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_size:
            return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
    raise ConfigError(
        f"Dirichlet(alpha={alpha}) left an owner with < {min_size} images after "
        f"{max_tries} draws; raise alpha or use fewer --clients"
    )


def partition(
    data: ImageDataset, n_owners: int, scheme: str = "iid", alpha: float = 0.3, seed: int = 0
) -> list[ImageDataset]:
    """``n_owners`` disjoint datasets covering ``data``."""
    if scheme == "iid":
        parts = iid(data.labels, n_owners, seed)
    elif scheme == "dirichlet":
        parts = dirichlet(data.labels, n_owners, alpha, seed)
    else:
        raise ConfigError(f"unknown partition scheme '{scheme}'; choose one of {SCHEMES}")
    return [data.subset(p, name=f"{data.name}-owner{i}") for i, p in enumerate(parts)]


def label_histogram(parts: list[ImageDataset]) -> list[list[int]]:
    """Per owner, the count of each class (what a non-IID split looks like)."""
    return [p.class_counts().tolist() for p in parts]


def _check(n: int, n_owners: int) -> None:
    if n_owners < 1:
        raise ConfigError(f"--clients must be >= 1, got {n_owners}")
    if n_owners > n:
        raise ConfigError(f"{n_owners} owners for only {n} images; use fewer --clients")
