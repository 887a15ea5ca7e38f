"""Tiny federations: 8x8 digits, a few-channel GAN, 1-2 rounds of 2-3 local steps."""

from __future__ import annotations

import pytest

TINY_GAN = {"batch_size": 32, "width": 8, "g_width": 8, "z_dim": 8, "n_d": 2}


@pytest.fixture
def tiny_fed() -> dict:
    """Keyword arguments for `federate` that run in seconds (rdp accountant: fast calibration)."""
    return dict(
        data="digits",
        method="dpgan",
        local_steps=2,
        config=dict(TINY_GAN),
        accountant="rdp",
        epsilon=10.0,
    )
