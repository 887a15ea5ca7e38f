"""Flags shared by several verbs, and the argument types that check them at parse time.

Nothing here imports torch: `privsynth --help` builds every verb's parser in well under a second.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import math
import sys
import warnings

MAX_SEED = 2**63 - 1
HOLDOUT_HELP = (
    "held-out images, never trained on: a fraction (<1), a count, or the path of an "
    "official test split in the same format as --data"
)


# --- argument types: a bad value stops at parse time with one line ------------------------------
def _number(text: str, convert, expected: str):
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got '{text}'") from None


def positive_int(text: str) -> int:
    value = _number(text, int, "a whole number >= 1")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    value = _number(text, float, "a number > 0")
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def holdout_value(text: str) -> float | str:
    """A fraction or count (float), or a path (str) to an official test split."""
    try:
        float(text)
    except ValueError:
        return text
    return holdout_number(text)


def holdout_number(text: str) -> float:
    """A fraction in (0, 1) or a whole count: 10.5 would silently become 10."""
    value = _number(text, float, "a fraction (<1) or a count")
    if not math.isfinite(value) or (value >= 1 and not value.is_integer()):
        raise argparse.ArgumentTypeError(
            f"{text} is neither a fraction below 1 nor a whole count; pass e.g. 0.2 or 10"
        )
    return value


def seed_value(text: str) -> int:
    """A seed torch and numpy both take (0 .. 2**63-1): a larger one fails deep inside torch."""
    value = _number(text, int, "a whole number")
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must lie in 0..{MAX_SEED} (2**63-1), got {value}")
    return value


def image_size(text: str) -> int:
    value = positive_int(text)
    if value > 4096:
        raise argparse.ArgumentTypeError(f"{value} pixels is more than 4096; pick a smaller size")
    return value


def value_range(text: str) -> tuple[float, float]:
    from ..data.source import parse_range

    return _checked(parse_range, text, "range")


def class_list(text: str) -> int | tuple[str, ...]:
    from ..data.source import parse_classes

    return _checked(parse_classes, text)


def _checked(parse, *args):
    """``parse(*args)`` with its ConfigError (the message the Python API gives) as a usage error."""
    from ..errors import ConfigError

    try:
        return parse(*args)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def method_names() -> list[str]:
    from ..models.registry import METHODS  # a plain dict: no torch

    return list(METHODS)


# --- groups of flags ------------------------------------------------------------------------------
def add_data_options(p: argparse.ArgumentParser, holdout_path: bool = True) -> None:
    g = p.add_argument_group("data (format inputs are public: never guessed from the images)")
    g.add_argument(
        "--data",
        default="digits",
        help="'digits' (embedded), an IDX file/folder, an .npz, or a folder with one "
        "sub-folder per class (PNG/JPEG, 8/16-bit PNG/TIFF, DICOM)",
    )
    add_split_options(g, holdout_path)
    add_format_options(g)


def add_split_options(g, holdout_path: bool = True, when: str = "") -> None:
    """--image-size, --holdout, --split-seed; ``when`` starts each help (evaluate's condition)."""
    g.add_argument(
        "--image-size",
        type=image_size,
        default=None,
        metavar="N",
        help=f"{when}resize images to N x N (default: keep their size)",
    )
    holdout = HOLDOUT_HELP if holdout_path else "held-out fraction (<1) or count, never trained on"
    g.add_argument(
        "--holdout",
        type=holdout_value if holdout_path else holdout_number,
        default=0.2,
        help=when + holdout,
    )
    g.add_argument(
        "--split-seed",
        type=seed_value,
        default=0,
        help=f"{when}seed of the random train/holdout split",
    )


SPLIT_FLAGS = "holdout split_seed image_size"  # what `add_split_options` parses


def pick(args: argparse.Namespace, *names: str) -> dict:
    """The parsed flags ``names`` (space-separated) as keyword arguments of the same names."""
    return {k: getattr(args, k) for group in names for k in group.split()}


def add_format_options(g) -> None:
    g.add_argument(
        "--name",
        default=None,
        help="dataset name in cards and reports (default: the folder or file name; "
        "the parent's name for a folder called train/test)",
    )
    g.add_argument(
        "--classes",
        type=class_list,
        default=None,
        metavar="N|NAMES",
        help="the class list: a count (labels 0..N-1) or comma-separated names "
        "(default: folder names, an .npz's class_names; IDX needs it)",
    )
    g.add_argument(
        "--channels",
        type=int,
        choices=[1, 3],
        default=None,
        help="1 = grayscale, 3 = RGB (default 1; a colour image then stops loading; "
        "--channels 1 given explicitly converts colour to gray)",
    )
    g.add_argument(
        "--pixel-range",
        type=value_range,
        default=None,
        metavar="LOW,HIGH",
        help="range the stored pixels use, mapped to 0..255 (default: the format's: "
        "float 0,1; 8-bit 0,255; 16-bit 0,65535); values outside stop loading",
    )
    g.add_argument(
        "--window",
        type=value_range,
        default=None,
        metavar="LOW,HIGH",
        help="PNG/TIFF/DICOM: clip to this window, then map to 0..255 (e.g. a CT "
        "window in HU; default: DICOM's own window, else the pixel range)",
    )


def data_source(args: argparse.Namespace):
    """--data with the format flags, as the API's `DataSource`."""
    from ..data import DataSource

    return DataSource(args.data, **pick(args, "classes channels pixel_range window name"))


def add_training_options(p: argparse.ArgumentParser, holdout_path: bool = True) -> None:
    """The data, privacy and method groups of the verbs that train one run (train, audit)."""
    add_data_options(p, holdout_path)
    add_privacy_options(p)
    add_method_options(p)


def add_privacy_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("differential privacy")
    # None, not 10: a non-private method refuses privacy flags, so it must see whether one was given
    g.add_argument(
        "--epsilon",
        type=float,
        default=None,
        help="total epsilon target (default 10 for dp* methods; non-private methods "
        "refuse it); the noise is calibrated to it",
    )
    g.add_argument(
        "--delta",
        type=float,
        default=None,
        help="delta (default 1/(10 N_hat), N_hat = the released number of training images); "
        ">= 1/N is refused unless --force",
    )
    g.add_argument(
        "--noise-multiplier",
        type=float,
        default=None,
        help="fix sigma instead of calibrating from --epsilon (default: calibrate)",
    )
    g.add_argument("--clip", type=float, default=1.0, help="per-sample gradient clip norm C")
    add_accountant_option(g, "Opacus accountant that computes epsilon from the steps that ran")
    g.add_argument(
        "--grad-sample-mode",
        choices=["bk", "hooks", "functorch", "ew"],
        default="bk",
        help="how per-sample clipping is computed: bk (Book-Keeping, fastest) or "
        "Opacus' hooks/functorch/ew; all exact, noise and accounting by Opacus",
    )
    g.add_argument("--no-dp", action="store_true", help="train without privacy (a baseline)")
    add_ledger_options(g, delta_check=True)


def add_accountant_option(g, help: str) -> None:
    g.add_argument("--accountant", choices=["prv", "rdp"], default="prv", help=help)


def privacy_kwargs(args: argparse.Namespace) -> dict:
    """The keyword arguments of `train` / `audit` that `add_privacy_options` parsed."""
    names = "epsilon delta noise_multiplier accountant grad_sample_mode no_dp ledger budget force"
    return {"max_grad_norm": args.clip, **pick(args, names)}


def add_ledger_option(g) -> None:
    """The one definition of --ledger (every verb that reads or writes the ledger uses it)."""
    g.add_argument(
        "--ledger",
        default=None,
        metavar="PATH|URL",
        help="privacy ledger: a SQLite file or a postgresql:// URL (default "
        "$PRIVSYNTH_LEDGER, else the per-user ledger; `privsynth ledger` "
        "prints where)",
    )


def add_ledger_options(g, delta_check: bool = False) -> None:
    """--ledger plus the budget check of a verb that spends: --budget and --force."""
    add_ledger_option(g)
    g.add_argument(
        "--budget",
        type=positive_float,
        default=None,
        help="refuse this run if the dataset's total spend would exceed this epsilon "
        "(checks only; set a dataset's budget with `privsynth ledger "
        "set-budget`; default: only the dataset's budget, if it has one)",
    )
    g.add_argument(
        "--force",
        action="store_true",
        help="run even if it exceeds the budget"
        + (", or with delta >= 1/N" if delta_check else ""),
    )


def add_method_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("method")
    g.add_argument(
        "--epochs",
        type=positive_float,
        default=None,
        help="expected passes over the private data (default: the method's, by size)",
    )
    g.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="expected batch size (default: the method's, by size)",
    )
    g.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any method option, e.g. --set n_d=50 --set width=64 (repeatable)",
    )
    g.add_argument(
        "--features",
        default=None,
        metavar="FILE",
        help="dpmepf: a feature network trained on PUBLIC images ('privsynth features'); "
        "its weights are released with the run",
    )
    g.add_argument(
        "--seed",
        type=seed_value,
        default=0,
        help="seed of the initial weights and of sampling (DP noise and batches are "
        "drawn from OS entropy, never from it)",
    )
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")


def add_output_options(p: argparse.ArgumentParser, progress: bool = True) -> None:
    g = p.add_argument_group("output")
    if progress:
        g.add_argument(
            "--no-progress",
            action="store_true",
            help="no progress bar or progress lines (results still print)",
        )
    g.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print nothing but errors and warnings on stderr (implies --no-progress)",
    )


def method_config(args: argparse.Namespace) -> dict:
    flags = {"epochs": args.epochs, "batch_size": args.batch_size}
    features = getattr(args, "features", None)
    return settings({**flags, "features": features}, args.set, "--set")


def settings(flags: dict, items: list[str], flag: str) -> dict:
    """``flags`` updated by the ``KEY=VALUE`` strings of ``flag``, without the unset (None) ones."""
    config = {**flags, **parse_settings(items, flag)}
    return {k: v for k, v in config.items() if v is not None}


def parse_settings(items: list[str], flag: str) -> dict:
    """``KEY=VALUE`` strings -> dict; values are Python literals where they parse as one."""
    config = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            from ..errors import ConfigError

            raise ConfigError(f"{flag} expects KEY=VALUE, got '{item}'")
        config[key.strip()] = literal(value)
    return config


def literal(value: str):
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        # not a literal (`{[]:1}` is a TypeError): kept as text, refused by the option's type
        return value


def progress_wanted(args: argparse.Namespace) -> bool:
    return not (getattr(args, "no_progress", False) or getattr(args, "quiet", False))


@contextlib.contextmanager
def privacy_warnings():
    """Print privacy warnings (weak delta, legacy ledger imported, restarted segment) as one
    ``privsynth: warning: ...`` line each instead of Python's two-line file:line format."""
    from ..privacy.checks import PrivacyWarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, PrivacyWarning):
            print(f"privsynth: warning: {message}", file=sys.stderr)
        else:
            original(message, category, filename, lineno, file, line)

    original = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = original
