"""One small exception hierarchy. The CLI prints `str(error)` on one line and exits 2.

Every message names the problem *and* the fix, e.g.
``DataError: folder 'scans/' has 1 class sub-folder; conditional models need >= 2``.
"""


class PrivsynthError(Exception):
    """Base class: anything the user can fix by changing input or flags."""


class DataError(PrivsynthError):
    """A dataset path, file or its content is unusable."""


class ConfigError(PrivsynthError):
    """Flags or configuration values are inconsistent or out of range."""


class PrivacyError(PrivsynthError):
    """A privacy target cannot be met (e.g. epsilon too small for the planned steps)."""


class BudgetError(PrivacyError):
    """The privacy ledger's budget for a dataset would be exceeded."""


class CheckpointError(PrivsynthError):
    """A run directory or checkpoint is missing, incomplete or inconsistent."""


class TrainingDiverged(PrivsynthError):
    """Loss or weights became NaN/infinite: the run stops, is never marked complete."""


class MissingExtra(PrivsynthError, ImportError):
    """A feature's optional dependencies are not installed (e.g. ``privsynth[federated]``)."""
