"""The shell itself: --help for every verb, Ctrl-C, `python -m privsynth.cli`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import privsynth.cli
from privsynth.cli import VERBS, main

SRC = Path(privsynth.cli.__file__).resolve().parents[2]


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert all(verb in out for verb in VERBS)


@pytest.mark.parametrize("verb", VERBS)
def test_verb_help(verb, capsys):
    with pytest.raises(SystemExit) as e:
        main([verb, "--help"])
    assert e.value.code == 0
    assert f"usage: privsynth {verb}" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("privsynth ")


def test_no_verb_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2


def test_keyboard_interrupt(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr("privsynth.cli.info.run", interrupted)
    assert main(["info", "anything"]) == 130
    err = capsys.readouterr().err
    assert "interrupted; rerun the same command to resume" in err and "Traceback" not in err


def _python_m(*args: str) -> subprocess.CompletedProcess:
    path = os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    return subprocess.run([sys.executable, "-m", "privsynth.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_python_m_bad_data_exits_2(tmp_path):
    # One subprocess (each pays torch's import): the real entry point, exit code and stderr.
    proc = _python_m("train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "DataError" in proc.stderr
    assert not (tmp_path / "r").exists()
