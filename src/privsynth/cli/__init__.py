"""The command line: a thin shell around the Python API.

Each verb is one module: its docstring is its --help description, ``HELP`` its line in the verb
list, ``add_arguments(parser)`` its flags and ``run(args)`` the API call; adding a verb = one
module + one entry in ``VERBS``. Verb modules import the API (and torch) only inside ``run``, so
--help is fast. Errors a user can fix (project exceptions, unusable paths, bad flags) print one
line and exit 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import shlex
import signal
import sys

VERBS = [
    "train",
    "sample",
    "info",
    "ledger",
    "evaluate",
    "audit",
    "sweep",
    "federate",
    "export",
    "features",
]


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default unless the text already states one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default is None
            or default is argparse.SUPPRESS
            or isinstance(default, (bool, list))
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other privsynth error."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = Parser(prog="privsynth", description="Differentially private synthetic image data.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"privsynth {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in VERBS:
        module = importlib.import_module(f"privsynth.cli.{verb}")
        if hasattr(module, "add_parser"):  # a verb that still builds its own parser
            module.add_parser(sub)
            continue
        # under python -OO docstrings are gone: the one-line help stands in
        p = sub.add_parser(verb, help=module.HELP, description=module.__doc__ or module.HELP)
        module.add_arguments(p)
        p.set_defaults(func=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (0 ok, 2 bad input or usage, 130 interrupted)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help/--version (0) or a usage error (2): argparse has printed
        return e.code if isinstance(e.code, int) else 2
    from ..errors import PrivsynthError

    try:
        with _quiet_stdout(getattr(args, "quiet", False)), _sigterm_interrupts():
            return int(args.func(args) or 0)
    except Terminated:
        # the run's last checkpoint and its ledger entry are kept, as after Ctrl-C
        command = shlex.join(["privsynth", *(sys.argv[1:] if argv is None else argv)])
        _error(f"terminated (SIGTERM); the last checkpoint is kept: resume with `{command}`")
        return 2
    except PrivsynthError as e:
        if args.debug:
            raise
        _error(f"{type(e).__name__}: {e}")
        return 2
    except BrokenPipeError:
        # `privsynth info RUN | head`: the reader left. Point stdout at /dev/null so the final
        # flush at exit cannot raise again, and end like other Unix tools killed by SIGPIPE.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 141
    except OSError as e:  # an unwritable or vanished path outside the checks: the OS names it
        if args.debug:
            raise
        where = f" '{e.filename}'" if e.filename else ""
        _error(f"OSError: cannot use{where}: {e.strerror or e}; check the path and permissions")
        return 2
    except KeyboardInterrupt:
        print(
            "privsynth: interrupted; rerun the same command to resume from the last checkpoint",
            file=sys.stderr,
        )
        return 130


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler or `kill` stopping a long run): unwinds like Ctrl-C, so the run
    keeps its last checkpoint and settles its ledger entry, then exits 2 with the resume
    command."""


@contextlib.contextmanager
def _sigterm_interrupts():
    def stop(signum, frame):
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _error(message: str) -> None:
    print(f"privsynth: error: {' '.join(message.split())}", file=sys.stderr)


@contextlib.contextmanager
def _quiet_stdout(quiet: bool):
    if not quiet:
        yield
        return
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield
