"""privsynth: differentially private synthetic image data, with evidence it is useful and safe.

>>> import privsynth
>>> run = privsynth.train("digits", method="dpgan", epsilon=10, out="runs/digits-dpgan")
>>> images, labels = run.sample(100)
"""

__version__ = "0.1.0"

import importlib as _importlib
import warnings as _warnings

# Opacus and PyTorch warnings that say nothing actionable to a privsynth user:
# - secure_mode off: we document it; `--secure-rng` is not offered because Opacus' secure RNG needs
#   torchcsprng, which is not packaged for current PyTorch.
# - the full-backward-hook note fires because input images never require gradients.
# - "optimal order is the largest alpha": the RDP bound stays valid, only less tight.
_warnings.filterwarnings("ignore", message="Secure RNG turned off")
_warnings.filterwarnings("ignore", message="Full backward hook is firing")
_warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")

# The public names are imported on first use (PEP 562): `import privsynth.cli` must not pay for
# torch, so `privsynth --help` answers in well under a second.
_LAZY = {
    "ImageDataset": "privsynth.data",
    "DataSource": "privsynth.data",
    "load_dataset": "privsynth.data",
    "split": "privsynth.data",
    "PrivsynthError": "privsynth.errors",
    "METHODS": "privsynth.models.registry",
    "create": "privsynth.models.registry",
    "Run": "privsynth.run",
    "RunRequest": "privsynth.request",
}

__all__ = [*_LAZY, "train", "__version__"]


def train(data="digits", method: str = "auto", out="runs/run", **options):
    """Train ``method`` on ``data`` and write the run folder ``out`` (card.json, weights, the
    README.md model card, samples.png; quick_eval.json with ``quick_eval=True``, as
    ``privsynth train --evaluate``); returns the loaded `Run`. ``options`` are the fields of a
    `RunRequest`'s parts (``epsilon=``, ``config=``, ``seed=``, ...: privsynth/request.py); an
    unknown one is refused naming the valid ones."""
    from .orchestrate.trainer import train as run_request
    from .request import RunRequest

    return run_request(RunRequest.build(data, method, out, **options))


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(_importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'privsynth' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
