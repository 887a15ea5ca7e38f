"""The command line: a thin shell around the Python API.

Each verb lives in its own module with ``add_parser(subparsers)``; adding a verb = one module +
one entry in ``VERBS``. Errors a user can fix print one line and exit 2; ``--debug`` shows the
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

VERBS = ["train", "sample", "info", "ledger", "evaluate", "audit", "sweep", "federate"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="privsynth", description="Differentially private synthetic image data.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in VERBS:
        importlib.import_module(f"privsynth.cli.{verb}").add_parser(sub)
    return parser


def _version() -> str:
    from .. import __version__

    return f"privsynth {__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from ..errors import PrivsynthError

    try:
        return int(args.func(args) or 0)
    except PrivsynthError as e:
        if args.debug:
            raise
        print(f"privsynth: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("privsynth: interrupted; rerun the same command to resume from the last checkpoint",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
