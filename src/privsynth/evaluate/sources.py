"""What `evaluate` compares: synthetic images from a run folder, or made elsewhere (PNG folder or
.npz written by `privsynth sample`), each paired with the real train/holdout split."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data import ImageDataset, is_holdout_path, load_split
from ..errors import ConfigError, DataError
from .utility import balanced_subset


@dataclass
class Subject:
    """One synthetic set under evaluation. ``synthesizer`` is set for runs (white-box hooks)."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    epsilon: float = math.inf
    delta: float = 0.0
    card: dict | None = None
    synthesizer: Any = None  # a models.base.Method (membership_scores), or None
    source: str = ""


def from_run(
    path: str | os.PathLike[str],
    data: ImageDataset | str | None = None,
    n: int | None = None,
    seed: int = 0,
) -> tuple[Subject, ImageDataset, ImageDataset]:
    """Sample ``n`` images, class-balanced (default: as many as the training split), from a run
    folder. Balanced as in DPImageBench: every class equally often, whatever the class
    proportions on the card."""
    from ..run import Run
    from .utility import balanced_labels

    run = Run.load(path)
    train, holdout = run.load_data(data)
    n = n or len(train)
    images, labels = run.sample(n, labels=balanced_labels(n, len(run.class_names), seed), seed=seed)
    name = Path(path).name or str(path)
    subj = Subject(
        name, images, labels, run.epsilon, run.delta, run.card, run.synthesizer, str(path)
    )
    return subj, train, holdout


def load_synthetic(
    path: str | os.PathLike[str], class_names: list[str], channels: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels (0..K-1 of ``class_names``) from an .npz or a class-per-folder tree
    (read with the real data's ``channels``)."""
    from ..data import DataSource
    from ..data.folder import load_folder

    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(
            f"synthetic set '{path}' does not exist; pass a folder or .npz written by "
            "`privsynth sample`"
        )
    if path.suffix == ".npz":
        images, labels, names = _read_npz(path)
        if names is not None:
            labels = _rename(np.asarray([names[i] for i in labels]), class_names, path)
        else:
            labels = labels.astype(np.int64)
            if labels.min() < 0 or labels.max() >= len(class_names):
                raise DataError(f"{path}: labels must be 0..{len(class_names) - 1}")
        return images, labels
    if not path.is_dir():
        raise DataError(f"'{path}': pass a folder of class sub-folders or an .npz file")
    ds = load_folder(DataSource(str(path), channels=channels))
    labels = _rename(np.asarray([ds.class_names[i] for i in ds.labels]), class_names, path)
    return ds.images, labels


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    from ..data.npz import READ_ERRORS, to_uint8_nchw

    try:
        with np.load(path, allow_pickle=False) as z:
            if "images" not in z.files or "labels" not in z.files:
                raise DataError(
                    f"{path}: needs arrays 'images' and 'labels' (as `privsynth "
                    f"sample --out x.npz` writes); found {sorted(z.files)}"
                )
            images, labels = np.asarray(z["images"]), np.asarray(z["labels"])
            names = [str(s) for s in z["class_names"]] if "class_names" in z.files else None
    except READ_ERRORS as e:
        raise DataError(
            f"{path}: cannot read NPZ ({type(e).__name__}: {e}); the file is damaged or cut "
            "short: write it again with `privsynth sample`"
        ) from None
    if images.ndim == 0 or labels.ndim != 1 or len(labels) != len(images):
        raise DataError(
            f"{path}: needs N images and N labels (1-D); got shapes {images.shape} and "
            f"{labels.shape}"
        )
    return to_uint8_nchw(images, str(path)), labels, names


def _rename(names: np.ndarray, class_names: list[str], path: Path) -> np.ndarray:
    unknown = sorted(set(names.tolist()) - set(class_names))
    if unknown:
        raise DataError(
            f"{path}: classes {unknown[:5]} are not classes of the real data "
            f"{class_names}; name sub-folders after the real classes"
        )
    index = {c: i for i, c in enumerate(class_names)}
    return np.asarray([index[c] for c in names], dtype=np.int64)


def from_synthetic(
    path: str | os.PathLike[str],
    data: str | ImageDataset,
    holdout: float | str = 0.2,
    split_seed: int = 0,
    image_size: int | None = None,
) -> tuple[Subject, ImageDataset, ImageDataset]:
    """A synthetic set made elsewhere, against ``data`` split with ``holdout``/``split_seed``
    (use the split the generator was trained with, or the MIA numbers mean nothing)."""
    if data is None:
        raise ConfigError(
            "--synthetic needs --data (the real dataset, split with --holdout and "
            "--split-seed as in training)"
        )
    ds, parts = load_split(data, holdout, split_seed, image_size)
    images, labels = load_synthetic(path, ds.class_names, ds.image_shape[0])
    if images.shape[1:] != ds.images.shape[1:]:
        raise DataError(
            f"synthetic images are {images.shape[1:]} but the real ones are "
            f"{ds.images.shape[1:]}; pass --image-size or resample"
        )
    subj = Subject(Path(path).stem or str(path), images, labels, source=str(path))
    return subj, ds.subset(parts.train), ds.subset(parts.holdout)


def load_subjects(runs, synthetic, data, holdout, split_seed, image_size, n_synthetic, seed):
    """The subjects, the real train/holdout split and whether the holdout is a separate set
    (``--holdout PATH`` here or in training) rather than a random split of one source."""
    if not runs and synthetic is None:
        raise ConfigError("nothing to evaluate: pass run folders and/or --synthetic PATH --data D")
    loaded = [(str(r), *from_run(r, data, n_synthetic, seed)) for r in runs]
    separate = any(
        is_holdout_path(((s.card or {}).get("train") or {}).get("holdout")) for _, s, _, _ in loaded
    )
    if synthetic is not None:
        subj, train, hold = from_synthetic(synthetic, data, holdout, split_seed, image_size)
        keep = balanced_subset(subj.labels, n_synthetic, train.num_classes, seed)
        subj.images, subj.labels = subj.images[keep], subj.labels[keep]
        loaded.append((str(synthetic), subj, train, hold))
        separate |= is_holdout_path(holdout)
    first, _, train, hold = loaded[0]
    for name, _, t, h in loaded[1:]:
        if t.fingerprint != train.fingerprint or h.fingerprint != hold.fingerprint:
            raise ConfigError(
                f"'{name}' uses a different dataset or train/holdout split than "
                f"'{first}'; evaluate runs of one dataset and split together"
            )
    return [subj for _, subj, _, _ in loaded], train, hold, separate
