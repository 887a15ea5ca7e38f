"""privsynth: differentially private synthetic image data, with evidence it is useful and safe.

    >>> import privsynth
    >>> run = privsynth.train("digits", method="dpgan", epsilon=10, out="runs/digits-dpgan")
    >>> images, labels = run.sample(100)
"""

__version__ = "0.1.0"

import warnings as _warnings

# Opacus and PyTorch warnings that say nothing actionable to a privsynth user:
# - secure_mode off: we document it; `--secure-rng` is not offered because Opacus' secure RNG needs
#   torchcsprng, which is not packaged for current PyTorch.
# - the full-backward-hook note fires because input images never require gradients.
# - "optimal order is the largest alpha": the RDP bound stays valid, only less tight.
_warnings.filterwarnings("ignore", message="Secure RNG turned off")
_warnings.filterwarnings("ignore", message="Full backward hook is firing")
_warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")

from .data import ImageDataset, load_dataset, split  # noqa: E402
from .errors import PrivsynthError  # noqa: E402
from .models.registry import METHODS, create  # noqa: E402
from .run import Run  # noqa: E402
from .trainer import train  # noqa: E402

__all__ = ["ImageDataset", "load_dataset", "split", "PrivsynthError", "METHODS", "create", "Run",
           "train", "__version__"]
