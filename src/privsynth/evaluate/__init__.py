"""Evaluate: fidelity, detection, utility and privacy risk, as plain functions on arrays."""

from .fidelity import per_class_stats, pixel_stats, stats_table
from .utility import trtr, tstr

__all__ = ["pixel_stats", "stats_table", "per_class_stats", "tstr", "trtr"]
