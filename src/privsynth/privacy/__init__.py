"""Privacy: DP-SGD on Opacus, noise calibration, accountant state, ledger, count mechanisms."""

from .accounting import (
    AccountantState,
    PrivacySpec,
    calibrate_noise,
    default_delta,
    epsilon_from_history,
)
from .dpsgd import DPPlan, make_private, plan
from .ledger import COMPOSITION_RULE, Ledger, default_location, resolve_location

__all__ = [
    "AccountantState",
    "PrivacySpec",
    "calibrate_noise",
    "default_delta",
    "epsilon_from_history",
    "DPPlan",
    "make_private",
    "plan",
    "Ledger",
    "COMPOSITION_RULE",
    "default_location",
    "resolve_location",
]
