"""The federated extra's check, importable by the package's modules without the package itself
(`require` runs before ``federated/__init__`` imports Flower's callees)."""

from __future__ import annotations

import importlib.util as _util

from ..errors import MissingExtra

EXTRA = "pip install 'privsynth[federated]'"


def require(module: str, feature: str = "federated training") -> None:
    """Raise `MissingExtra` (one line naming the extra) if ``module`` is not installed."""
    if _util.find_spec(module) is None:
        raise MissingExtra(
            f"{feature} needs the package '{module}', which is not installed; "
            f"install the federated extra: {EXTRA}"
        )
