"""Evaluate: fidelity, detection, utility and privacy risk, as plain functions on arrays.

``evaluate(runs, out=...)`` composes them into one dict (metrics.json + report.html);
``privsynth.evaluate.audit.audit(...)`` is the empirical-epsilon audit with canaries.
"""

from .diversity import collapse_flags, within_class_diversity
from .fidelity import frechet, kid, pixel_stats, prdc_scores, stats_table
from .pipeline import evaluate
from .utility import trtr, tstr

__all__ = [
    "evaluate",
    "pixel_stats",
    "stats_table",
    "frechet",
    "kid",
    "prdc_scores",
    "tstr",
    "trtr",
    "within_class_diversity",
    "collapse_flags",
]
