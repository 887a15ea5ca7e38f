"""The shell itself: --help for every verb (complete, fast), Ctrl-C, broken pipes,
`python -m privsynth.cli`."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

import privsynth.cli
from privsynth.cli import VERBS, HelpFormatter, build_parser, main

SRC = Path(privsynth.cli.__file__).resolve().parents[2]


def test_help(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(verb in out for verb in VERBS)


@pytest.mark.parametrize("verb", VERBS)
def test_verb_help(verb, capsys):
    assert main([verb, "--help"]) == 0
    assert f"usage: privsynth {verb}" in capsys.readouterr().out


@pytest.mark.parametrize("verb", VERBS)
def test_every_option_says_what_it_does_and_its_default(verb):
    """No option without help text; every option with a default (other than off/none) names it."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    verb_parser = sub.choices[verb]
    for action in verb_parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        assert action.help and len(action.help) > 10, f"{verb} {action.option_strings}: no help"
        text = HelpFormatter("x")._get_help_string(action)
        default = action.default
        if (
            default is not None
            and default is not argparse.SUPPRESS
            and not isinstance(default, (bool, list))
        ):
            assert "default" in text, f"{verb} {action.option_strings} hides its default"


def test_train_help_lists_methods_and_defaults(capsys):
    from privsynth.models.registry import METHODS

    assert main(["train", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--method {" + ",".join(["auto", *METHODS]) + "}" in out
    for flag in (
        "--seed",
        "--split-seed",
        "--accountant",
        "--budget",
        "--quiet",
        "--classes",
        "--channels",
        "--pixel-range",
        "--name",
    ):
        assert flag in out
    assert "(default: auto)" in out and "(default: prv)" in out


@pytest.mark.parametrize("verb", ["sweep", "federate"])
def test_sweep_and_federate_take_a_budget(verb, capsys):
    assert main([verb, "--help"]) == 0
    out = capsys.readouterr().out
    assert "--budget" in out and "--force" in out and "--ledger" in out


def test_help_does_not_import_torch():
    """`privsynth --help` answers fast because no verb imports torch (or the API) to describe
    itself. Checked by what is imported, not by a clock."""
    code = (
        "import sys, contextlib, io\n"
        "from privsynth.cli import VERBS, HelpFormatter, build_parser, main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    codes = [main(['--help'])] + [main([v, '--help']) for v in VERBS]\n"
        "heavy = sorted(m for m in ('torch', 'opacus', 'flwr', 'tenseal', 'sklearn', "
        "'privsynth.orchestrate.trainer', 'privsynth.run') if m in sys.modules)\n"
        "print(codes, heavy)\n"
    )
    proc = _python("-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{[0] * (len(VERBS) + 1)} []"


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("privsynth ")


def test_no_verb_is_a_usage_error(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "privsynth: error:" in err and "--help" in err


def test_broken_pipe_is_quiet(monkeypatch, capsys, trained_run):
    """`privsynth info RUN | head`: the reader leaves early; no traceback, SIGPIPE's exit code."""

    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["info", str(trained_run["out"])]) == 141
    assert capsys.readouterr().err == ""


def test_broken_pipe_in_a_real_pipe(trained_run):
    # The read end is closed before the child has imported anything, so its first write fails.
    proc = subprocess.Popen(
        [sys.executable, "-m", "privsynth.cli", "info", str(trained_run["out"])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141 and err.decode().strip() == ""


def test_keyboard_interrupt(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr("privsynth.cli.info.run", interrupted)
    assert main(["info", "anything"]) == 130
    err = capsys.readouterr().err
    assert "interrupted; rerun the same command to resume" in err and "Traceback" not in err


def _env() -> dict:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }


def _python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=_env(), timeout=120
    )


def _python_m(*args: str) -> subprocess.CompletedProcess:
    return _python("-m", "privsynth.cli", *args)


def test_python_m_bad_data_exits_2(tmp_path):
    # One subprocess (each pays torch's import): the real entry point, exit code and stderr.
    proc = _python_m("train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "DataError" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_every_verb_has_a_description_under_python_oo():
    """python -OO strips docstrings; each verb's --help still describes it."""
    import subprocess
    import sys

    code = (
        "import argparse; from privsynth.cli import build_parser; p = build_parser(); "
        "sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)); "
        "print(*[v for v, s in sub.choices.items() if not s.description], sep=',')"
    )
    out = subprocess.run(
        [sys.executable, "-OO", "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "", f"verbs without a description under -OO: {out.stdout}"
