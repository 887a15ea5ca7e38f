"""Models: one file per method family, registered by name in ``registry.METHODS``."""

import importlib as _importlib

# Loaded on first use: the CLI lists ``registry.METHODS`` in --help without importing torch.
_LAZY = {
    "FitResult": "base",
    "Method": "base",
    "TrainContext": "base",
    "METHODS": "registry",
    "create": "registry",
    "method_class": "registry",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(_importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
