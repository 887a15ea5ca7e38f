"""Models: one file per method family, registered by name in ``registry.METHODS``."""

from .base import FitResult, Synthesizer, TrainContext
from .registry import METHODS, create, method_class

__all__ = ["FitResult", "Synthesizer", "TrainContext", "METHODS", "create", "method_class"]
