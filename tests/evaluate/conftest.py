from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from privsynth.data import load_dataset


@pytest.fixture
def memoriser(monkeypatch) -> str:
    """Register the copy-the-training-set method as 'memorise' for this test."""
    from privsynth.models import registry

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    monkeypatch.setitem(registry.METHODS, "memorise", "_memoriser:Memoriser")
    return "memorise"


@pytest.fixture(scope="session")
def digits_parts():
    """Disjoint real digit sets: members, non-members, reference, independent (300 each)."""
    d = load_dataset("digits")
    perm = np.random.default_rng(0).permutation(len(d))
    parts = [perm[i * 300 : (i + 1) * 300] for i in range(4)]
    return [(d.images[p], d.labels[p]) for p in parts]


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny CNNs on 8x8 images run faster on one thread (no OpenMP spin-up on every op)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
