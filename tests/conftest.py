"""Fixtures make tiny data in memory or in tmp_path; nothing downloads.

Expensive things (a trained run) are session-scoped and built once; tests that read them must not
modify them.
"""

from __future__ import annotations

import gzip
import os
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest

from privsynth.data import ImageDataset

# No test may book into the real per-user ledger: before anything is imported or trained, point
# PRIVSYNTH_LEDGER (inherited by subprocesses such as federated owners) at a throw-away file; each
# test then gets its own empty ledger (`_own_ledger` below).
# Once per session: a test module that imports `tests.conftest` by name loads this file a second
# time, and must not reset the variable a running test's own ledger has set.
if "_PRIVSYNTH_TEST_SESSION_LEDGER" not in os.environ:
    _SESSION_LEDGER_DIR = tempfile.mkdtemp(prefix="privsynth-test-ledger-")
    os.environ["_PRIVSYNTH_TEST_SESSION_LEDGER"] = os.path.join(
        _SESSION_LEDGER_DIR, "session-ledger.sqlite"
    )
    os.environ["PRIVSYNTH_LEDGER"] = os.environ["_PRIVSYNTH_TEST_SESSION_LEDGER"]


@pytest.fixture(autouse=True)
def _own_ledger(tmp_path):
    """Each test books into ``tmp_path/ledger.sqlite`` unless it passes ``ledger=``.
    (Its own MonkeyPatch: a test's ``monkeypatch.undo()`` must not put the shared one back.)"""
    path = tmp_path / "ledger.sqlite"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PRIVSYNTH_LEDGER", str(path))
        yield path


# A tiny GAN: 96 training images at batch 32 -> q = 1/3, 2 epochs -> 6 discriminator steps.
FAST_GAN = {"epochs": 2, "batch_size": 32, "n_d": 2, "width": 8, "g_width": 8, "z_dim": 8}


def make_tiny_dataset(n: int = 120, k: int = 3, seed: int = 0) -> ImageDataset:
    """``n`` images 8x8, ``k`` classes: a bright bar whose position depends on the class.
    Every image has distinct random background noise, so each row is unique."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % k
    images = rng.integers(0, 40, size=(n, 1, 8, 8), dtype=np.uint8)
    for i, y in enumerate(labels):
        images[i, 0, 2 * y : 2 * y + 3, 2:6] = 220
    return ImageDataset(images, labels, [chr(ord("a") + j) for j in range(k)], name="tiny")


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` (uint8) in the IDX (MNIST) format; gzip it if ``path`` ends in .gz."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    raw = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += array.tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def write_image_folder(
    root: Path, images: np.ndarray, labels: np.ndarray, names: list[str], ext: str = ".png"
) -> Path:
    """A class-per-sub-folder tree of images (N x C x H x W uint8) as PNG or JPEG."""
    from PIL import Image

    for k in names:
        (root / k).mkdir(parents=True, exist_ok=True)
    for i, (img, y) in enumerate(zip(images, labels, strict=True)):
        arr = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
        Image.fromarray(arr).save(root / names[y] / f"{i:04d}{ext}")
    return root


@pytest.fixture
def tiny_dataset() -> ImageDataset:
    """120 images, 8x8, 3 classes: a bright square whose position depends on the class."""
    return make_tiny_dataset()


@pytest.fixture
def fast_gan() -> dict:
    return dict(FAST_GAN)


@pytest.fixture
def fast_gan_flags() -> list[str]:
    """FAST_GAN as `--set` flags for CLI tests."""
    return [f"--set={k}={v}" for k, v in FAST_GAN.items()]


@pytest.fixture
def make_tiny():
    """`make_tiny_dataset` for tests that need other sizes (conftest is not importable by name:
    several folders have one)."""
    return make_tiny_dataset


@pytest.fixture
def image_folder():
    """`write_image_folder`: a class-per-sub-folder tree of PNGs from arrays."""
    return write_image_folder


@pytest.fixture
def tiny_npz(tmp_path, tiny_dataset) -> Path:
    """The tiny dataset as an .npz with keys images/labels (N x C x H x W uint8)."""
    path = tmp_path / "tiny.npz"
    np.savez(
        path,
        images=tiny_dataset.images,
        labels=tiny_dataset.labels,
        class_names=[str(k) for k in range(tiny_dataset.num_classes)],
    )
    return path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One finished private run trained through the CLI on an .npz of the tiny dataset
    (fixed sigma, RDP accountant, class proportions released with Laplace), plus its paths.

    Shared by the checkpoint, sample, info and ledger tests: read it, never modify it.
    """
    from privsynth.cli import main

    root = tmp_path_factory.mktemp("trained")
    data = make_tiny_dataset()
    npz = root / "tiny.npz"
    np.savez(
        npz,
        images=data.images,
        labels=data.labels,
        class_names=[str(k) for k in range(data.num_classes)],
    )
    out = root / "runs" / "tiny-dpgan"
    sets = [f"--set={k}={v}" for k, v in FAST_GAN.items()]
    ledger = root / "ledger.sqlite"
    code = main(
        [
            "train",
            "--method",
            "dpgan",
            "--data",
            str(npz),
            "--out",
            str(out),
            "--noise-multiplier",
            "1.2",
            "--ledger",
            str(ledger),
            "--accountant",
            "rdp",
            "--class-proportions",
            "laplace",
            "--counts-epsilon",
            "0.5",
            "--no-progress",
            "--checkpoint-every",
            "2",
            *sets,
        ]
    )
    assert code == 0
    return {"out": out, "data": npz, "ledger": ledger, "dataset": data}


# --- PostgreSQL: a real server, never a mock -------------------------------------------------
# .ci/run starts one and exports PRIVSYNTH_TEST_POSTGRES_URL; tests marked `postgres` then run
# against it and FAIL if it cannot be reached. Without the variable (a laptop with no server)
# they are deselected, never skipped; under CI the variable is required.
POSTGRES_ENV = "PRIVSYNTH_TEST_POSTGRES_URL"


def pytest_collection_modifyitems(config, items):
    if os.environ.get(POSTGRES_ENV):
        return
    if os.environ.get("CI"):
        raise pytest.UsageError(
            f"CI must provide {POSTGRES_ENV} (see .ci/run): the PostgreSQL "
            "ledger tests may not be left out there"
        )
    chosen = [i for i in items if "postgres" not in i.keywords]
    if len(chosen) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if "postgres" in i.keywords])
        items[:] = chosen


def postgres_schema_url(request) -> str:
    """A fresh schema on the test server, dropped after the test: the URL selects it."""
    import uuid

    import psycopg

    url = os.environ[POSTGRES_ENV]
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")

    def drop():
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")

    request.addfinalizer(drop)
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


@pytest.fixture
def postgres_url(request) -> str:
    """A fresh schema on the real PostgreSQL test server (mark the test `postgres`)."""
    return postgres_schema_url(request)


@pytest.fixture
def image_folder_writer():
    """`write_image_folder` for tests outside this file (conftest modules are not importable
    by name when several exist)."""
    return write_image_folder


@pytest.fixture
def idx_writer():
    return write_idx


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger_location(request, tmp_path) -> str:
    """Each ledger test runs on SQLite and on the real PostgreSQL server."""
    if request.param == "sqlite":
        return str(tmp_path / "param-ledger.sqlite")
    return postgres_schema_url(request)


@pytest.fixture
def exact_size(monkeypatch):
    """N_hat = N: the size release (privacy/size_release.py) without its noise, for tests whose
    step counts must not move with a noisy size; tests/privacy/test_size_release.py tests the
    noise itself."""
    from privsynth.privacy import size_release
    from privsynth.privacy.release import gaussian

    monkeypatch.setattr(
        size_release,
        "gaussian_noise_release",
        lambda v, s, *a: (v.double(), gaussian("size_release", s)),
    )
