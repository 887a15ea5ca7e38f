import json

import numpy as np
import pytest

from privsynth.cli import main
from privsynth.data import load_dataset


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny CNNs on 8x8 images run faster on one thread (no OpenMP spin-up on every op)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def small_digits(tmp_path) -> str:
    """400 digits as an .npz: a real dataset, small enough for an end-to-end CLI test."""
    d = load_dataset("digits")
    path = tmp_path / "digits400.npz"
    np.savez(path, images=d.images[:400], labels=d.labels[:400], class_names=d.class_names)
    return str(path)


def _train(tmp_path, data, fast_gan, name, extra=()):
    cfg = [f"--set={k}={v}" for k, v in fast_gan.items() if k not in ("epochs", "batch_size")]
    assert (
        main(
            [
                "train",
                "--method",
                "dpgan",
                "--data",
                data,
                "--out",
                str(tmp_path / name),
                "--epochs",
                "2",
                "--batch-size",
                "32",
                "--no-progress",
                *cfg,
                *extra,
            ]
        )
        == 0
    )
    return str(tmp_path / name)


def test_evaluate_cli_runs_and_synthetic_npz(tmp_path, small_digits, fast_gan, capsys):
    gan = _train(tmp_path, small_digits, fast_gan, "gan", ["--method", "gan"])
    dp = _train(tmp_path, small_digits, fast_gan, "dpgan", ["--epsilon", "5"])
    assert main(["sample", gan, "-n", "300", "--out", str(tmp_path / "s.npz")]) == 0
    out = tmp_path / "ev"
    code = main(
        [
            "evaluate",
            gan,
            dp,
            "--out",
            str(out),
            "-n",
            "300",
            "--max-members",
            "30",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--classifier-passes",
            "1000",
            "--no-progress",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "| gan |" in text and "| dpgan |" in text and "FD-LeNet" in text
    metrics = json.loads((out / "metrics.json").read_text())
    assert [m["name"] for m in metrics["models"]] == ["gan", "dpgan"]
    assert [r["model"] for r in metrics["stats_table"]] == ["real", "real holdout", "gan", "dpgan"]
    assert "fingerprint" not in json.dumps(metrics)
    assert "check" not in metrics["models"][1]["card"]["data"]
    dpm = metrics["models"][1]
    assert dpm["card"]["private"] and 0 < dpm["epsilon"] <= 5.01
    assert dpm["privacy"]["white_box"] and dpm["privacy"]["mia"]["white_box"]["n_members"] == 30
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 6 and 'src="http' not in html

    out2 = tmp_path / "ev2"
    assert (
        main(
            [
                "evaluate",
                "--synthetic",
                str(tmp_path / "s.npz"),
                "--data",
                small_digits,
                "--out",
                str(out2),
                "--max-members",
                "30",
                "--cache-dir",
                str(tmp_path / "cache"),
                "--classifier-passes",
                "1000",
                "--no-progress",
            ]
        )
        == 0
    )
    m2 = json.loads((out2 / "metrics.json").read_text())
    assert m2["models"][0]["n_synthetic"] == 300 and m2["models"][0]["card"] is None
    assert m2["feature_extractor"]["cached"]  # same reference set: the extractor was reused
    assert np.isfinite(m2["models"][0]["fidelity"]["fd_lenet"])


def test_evaluate_cli_errors_name_the_fix(tmp_path, capsys):
    assert main(["evaluate", "--out", str(tmp_path / "x")]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err
    assert (
        main(
            [
                "evaluate",
                "--synthetic",
                str(tmp_path / "missing.npz"),
                "--data",
                "digits",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err


def test_audit_cli(tmp_path, small_digits, fast_gan, capsys):
    cfg = [f"--set={k}={v}" for k, v in fast_gan.items() if k not in ("epochs", "batch_size")]
    assert (
        main(
            [
                "audit",
                "--data",
                small_digits,
                "--method",
                "dpgan",
                "--epsilon",
                "2",
                "--canaries",
                "20",
                "--out",
                str(tmp_path / "a"),
                "--epochs",
                "2",
                "--batch-size",
                "32",
                "--no-progress",
                *cfg,
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "accountant's epsilon" in text and "empirical lower bound" in text
    r = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert r["canaries"] == 20 and r["epsilon_lower_bound"] <= r["accountant_epsilon"]
