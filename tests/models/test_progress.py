"""Progress: a bar on a terminal; redirected, one line per ~10% (steps, epsilon spent, ETA) instead
of a bar's carriage-return spam; --no-progress and --quiet as documented."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

import pytest

from privsynth.cli import main
from privsynth.models.progress import progress_bar

# N_hat = N (the size release's noise off): 20 steps exactly, the default delta as without it
pytestmark = pytest.mark.usefixtures("exact_size")

# 96 training images, expected batch 96 -> q = 1; 20 epochs -> 20 discriminator steps.
STEPS20 = [
    "--set=epochs=20",
    "--set=batch_size=96",
    "--set=n_d=2",
    "--set=width=8",
    "--set=g_width=8",
    "--set=z_dim=8",
]
LINE = re.compile(
    r"^privsynth: dpgan D-steps: (\d+)/20 \((\d+)%\), epsilon spent ([\d.]+), "
    r"elapsed \d+:\d\d, ETA \d+:\d\d$"
)


def _train(tmp_path, tiny_npz, *flags, steps=STEPS20):
    return main(
        [
            "train",
            "--method",
            "dpgan",
            "--data",
            str(tiny_npz),
            "--out",
            str(tmp_path / "r"),
            "--noise-multiplier",
            "1.0",
            "--accountant",
            "rdp",
            *steps,
            *flags,
        ]
    )


def test_redirected_output_gets_ten_progress_lines(tmp_path, tiny_npz, capsys):
    assert _train(tmp_path, tiny_npz) == 0
    err = capsys.readouterr().err  # pytest's capture is not a terminal, like a log file
    assert "\r" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 10, err
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), err
    steps = [int(m.group(1)) for m in parsed]
    assert steps == list(range(2, 21, 2))
    eps = [float(m.group(3)) for m in parsed]
    assert eps == sorted(eps) and eps[0] > 0  # epsilon spent grows with the steps
    assert "loss" not in err  # un-noised training losses stay out of logs


def test_no_progress_and_quiet(tmp_path, tiny_npz, capsys, fast_gan_flags):
    tiny = fast_gan_flags
    assert _train(tmp_path, tiny_npz, "--no-progress", steps=tiny) == 0
    out, err = capsys.readouterr()
    assert err == "" and "privsynth run" in out and "model card" in out
    assert _train(tmp_path, tiny_npz, "--quiet", "--overwrite", steps=tiny) == 0
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    assert (tmp_path / "r" / "weights.safetensors").exists()


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_not_lines():
    ctx = SimpleNamespace(progress=True)
    term = FakeTerminal()
    bar = progress_bar(50, 0, ctx, None, "steps", stream=term)
    for step in range(1, 51):
        bar.update(step, loss=0.5)
    bar.close()
    assert bar.bar is not None and "\r" in term.getvalue()
    assert "privsynth: steps" not in term.getvalue()
    off = progress_bar(50, 0, SimpleNamespace(progress=False), None, "steps", stream=term)
    assert off.bar is None
