"""`privsynth train` end to end (tiny config via --set), and the bad-input form of the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from privsynth.cli import main
from privsynth.run import Run

TINY = [
    "--set",
    "epochs=2",
    "--set",
    "batch_size=32",
    "--set",
    "n_d=2",
    "--set",
    "width=8",
    "--set",
    "g_width=8",
    "--set",
    "z_dim=8",
]


def test_train_with_evaluate(tmp_path, tiny_npz, capsys):
    out = tmp_path / "runs" / "r"
    code = main(
        [
            "train",
            "--method",
            "dpgan",
            "--data",
            str(tiny_npz),
            "--out",
            str(out),
            "--noise-multiplier",
            "1.0",
            "--accountant",
            "rdp",
            "--no-progress",
            "--evaluate",
            "--evaluate-resnet",
            *TINY,
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "DP-SGD" in printed and "rdp accountant" in printed
    assert "| model | mean | std | skewness | kurtosis |" in printed and "TSTR accuracy" in printed
    assert (out / "samples.png").exists() and (out / "weights.safetensors").exists()
    ev = json.loads((out / "quick_eval.json").read_text())
    assert 0 <= ev["tstr_accuracy"] <= 1 and 0 <= ev["trtr_accuracy"] <= 1
    # The model card is rewritten with the evaluation and the grid once they exist.
    readme = (out / "README.md").read_text()
    assert f"**{ev['tstr_accuracy']:.1%}**" in readme and "`samples.png`" in readme
    assert set(ev["tstr"]) == set(ev["trtr"]) == {"lenet", "resnet"}  # both, side by side
    assert ev["tstr"]["resnet"]["n_train"] == ev["n_synthetic"] == 96
    assert "Within-class spread" in printed and "| ResNet |" in printed
    assert ev["n_holdout"] == 24
    run = Run.load(out)
    assert run.card["config"]["n_d"] == 2
    assert run.card["privacy"]["dp_sgd"]["noise_multiplier"] == 1.0
    from privsynth.data import load_dataset
    from privsynth.privacy import Ledger

    (ds,) = Ledger().datasets()  # the default ledger ($PRIVSYNTH_LEDGER), not beside --out
    assert ds["fingerprint"] == Ledger().key(load_dataset(tiny_npz).content)
    (entry,) = ds["runs"].values()
    assert entry["epsilon"] == pytest.approx(run.epsilon)
    assert not (out.parent / "privacy-ledger.json").exists()


def one_error_line(err: str) -> str:
    lines = [
        line
        for line in err.splitlines()  # warnings (e.g. a weak delta) may precede it
        if line.strip() and not line.startswith("privsynth: warning: ")
    ]
    assert len(lines) == 1, err
    assert lines[0].startswith("privsynth: error: ") and "Traceback" not in err
    return lines[0]


def make_bad(root, kind):
    if kind == "empty":
        (root / "empty").mkdir()
    elif kind == "bad.npz":
        (root / "bad.npz").write_bytes(b"junk")
    return root / kind


@pytest.mark.parametrize(
    "kind, match",
    [
        ("missing", "does not exist"),
        ("empty", "0 class sub-folder"),
        ("bad.npz", "not an NPZ archive"),
    ],
)
def test_bad_data_exits_2_with_one_line_and_no_run_folder(tmp_path, capsys, kind, match):
    data, out = make_bad(tmp_path, kind), tmp_path / "runs" / "r"
    code = main(
        [
            "train",
            "--method",
            "dpgan",
            "--data",
            str(data),
            "--out",
            str(out),
            "--no-progress",
            *TINY,
        ]
    )
    assert code == 2
    line = one_error_line(capsys.readouterr().err)
    assert "DataError" in line and match in line
    assert not out.exists() and not (tmp_path / "runs" / "privacy-ledger.json").exists()
    from privsynth.privacy import Ledger

    assert Ledger().datasets() == []


def test_bad_flags_exit_2(tmp_path, tiny_npz, capsys):
    base = [
        "train",
        "--method",
        "dpgan",
        "--data",
        str(tiny_npz),
        "--out",
        str(tmp_path / "r"),
        "--no-progress",
    ]
    assert main([*base, "--set", "nonsense"]) == 2
    assert "KEY=VALUE" in one_error_line(capsys.readouterr().err)
    assert main([*base, "--epsilon", "-1"]) == 2
    assert "positive finite" in one_error_line(capsys.readouterr().err)
    assert main([*base, "--holdout", "0"]) == 2
    assert "--holdout" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "r").exists()


def test_budget_exit_2_unless_force(tmp_path, tiny_npz, capsys):
    from privsynth.data import load_dataset
    from privsynth.privacy import Ledger

    ledger = tmp_path / "team-ledger.sqlite"
    led = Ledger(ledger)
    seg = led.reserve(
        load_dataset(tiny_npz).source_fingerprint, "tiny", run_id="earlier", epsilon=8.0, delta=1e-3
    )
    led.settle(seg, "complete", epsilon=8.0, delta=1e-3)
    base = [
        "train",
        "--method",
        "dpgan",
        "--data",
        str(tiny_npz),
        "--out",
        str(tmp_path / "b"),
        "--no-progress",
        "--noise-multiplier",
        "1.0",
        "--accountant",
        "rdp",
        "--ledger",
        str(ledger),
        "--budget",
        "10",
        *TINY,
    ]
    assert main(base) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "BudgetError" in line and "--force" in line
    assert not (tmp_path / "b").exists()
    assert main([*base, "--force"]) == 0
    capsys.readouterr()
    assert main(["ledger", "--ledger", str(ledger)]) == 0
    spent = 8.0 + Run.load(tmp_path / "b").epsilon
    assert f"epsilon spent {spent:.4g} of budget none" in capsys.readouterr().out


def test_debug_shows_the_traceback(tmp_path):
    from privsynth.errors import DataError

    with pytest.raises(DataError):
        main(
            ["--debug", "train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]
        )


def test_npz_written_by_sample_is_trainable_data(tmp_path, trained_run):
    # The synthetic .npz is itself a dataset: privsynth's own output feeds back in.
    assert (
        main(["sample", str(trained_run["out"]), "-n", "30", "--out", str(tmp_path / "s.npz")]) == 0
    )
    arrays = np.load(tmp_path / "s.npz")
    assert arrays["images"].shape == (30, 1, 8, 8)


def test_default_method_is_the_best_measured_dpmerf(tmp_path, tiny_npz):
    """The default, --method auto, picks dpmerf on small grey-scale images at epsilon 5: it has
    the best validation TSTR on digits (bench/auto_rule.py)."""
    out = tmp_path / "k"
    assert (
        main(
            [
                "train",
                "--data",
                str(tiny_npz),
                "--out",
                str(out),
                "--no-progress",
                "--epsilon",
                "5",
                "--set",
                "steps=20",
                "--set",
                "n_features=16",
            ]
        )
        == 0
    )
    run = Run.load(out)
    assert run.method == "dpmerf" and run.card["method_choice"]["requested"] == "auto"
