"""Labels -> class indices 0..K-1 under a declared class list (never the labels present)."""

from __future__ import annotations

import numpy as np

from ..errors import DataError


def class_list(
    declared: int | tuple[str, ...] | None, stored: list[str] | None, source: str
) -> list[str]:
    """The class names: ``--classes`` if given, else the names the file itself stores."""
    names = declared if declared is not None else stored
    if isinstance(names, int):
        return [str(i) for i in range(names)]
    if names is not None:
        return list(names)
    raise DataError(
        f"{source}: the class list is a public input, not read from the private "
        "labels; pass --classes N (labels 0..N-1) or --classes name1,name2,..."
    )


def to_indices(labels: np.ndarray, names: list[str], source: str) -> np.ndarray:
    """Integer labels are indices into ``names``; string labels are names. Anything else stops."""
    labels = np.asarray(labels).reshape(-1)
    k = len(names)
    if labels.dtype.kind in "US":
        index = {n: i for i, n in enumerate(names)}
        text = labels.astype(str)
        unknown = sorted(set(text.tolist()) - set(index))
        if unknown:
            raise DataError(
                f"{source}: labels {unknown[:5]} are not in the class list {names}; "
                "pass --classes with every class name"
            )
        return np.asarray([index[t] for t in text], dtype=np.int64)
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all():
            raise DataError(
                f"{source}: labels contain NaN or infinite values; every image needs a class"
            )
        if not np.all(labels == np.round(labels)):
            raise DataError(f"{source}: labels must be whole numbers (class indices)")
    elif labels.dtype.kind not in "iub":
        raise DataError(f"{source}: labels of type {labels.dtype}; use integers 0..K-1 or names")
    out = labels.astype(np.int64)
    bad = (out < 0) | (out >= k)
    if bad.any():
        raise DataError(
            f"{source}: {int(bad.sum())} label(s) outside 0..{k - 1} (e.g. "
            f"{int(out[bad][0])}); the class list has {k} classes — pass --classes "
            "with the full list"
        )
    return out
