import json

import numpy as np

from privsynth.cli import main
from privsynth.orchestrate.sweep import sweep

CONFIGS = {
    "dpmerf": {"n_features": 32, "steps": 10, "batch_size": 30, "g_width": 8, "z_dim": 8},
    "dpvae": {"epochs": 1, "batch_size": 32, "width": 8, "z_dim": 4},
}


def test_sweep_writes_table_and_plot_and_resumes(tmp_path, tiny_dataset):
    out = tmp_path / "sw"
    table = sweep(
        tiny_dataset,
        ["dpmerf", "dpvae"],
        [5.0, float("inf")],
        out,
        configs=CONFIGS,
        eval_epochs=1,
        progress=False,
    )
    assert len(table["rows"]) == 4
    assert {(r["method"], r["run_method"]) for r in table["rows"]} == {
        ("dpmerf", "dpmerf"),
        ("dpvae", "dpvae"),
        ("dpvae", "vae"),
    }
    for r in table["rows"]:
        assert 0.0 <= r["tstr_accuracy"] <= 1.0 and np.isfinite(r["frechet_lenet"])
        assert r["epsilon_spent"] is None if not r["private"] else r["epsilon_spent"] <= 5.05
        assert not r["skipped_training"]
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "train-on-real" in (out / "sweep.md").read_text().lower().replace(" ", "-")
    ids = {
        p.name: json.loads((p / "card.json").read_text())["run_id"]
        for p in (out / "cells").iterdir()
        if p.is_dir()
    }

    again = sweep(
        tiny_dataset,
        ["dpmerf", "dpvae"],
        [5.0, float("inf")],
        out,
        configs=CONFIGS,
        eval_epochs=1,
        progress=False,
    )
    assert all(r["skipped_training"] for r in again["rows"])
    assert ids == {
        p.name: json.loads((p / "card.json").read_text())["run_id"]
        for p in (out / "cells").iterdir()
        if p.is_dir()
    }
    assert [r["tstr_accuracy"] for r in again["rows"]] == [
        r["tstr_accuracy"] for r in table["rows"]
    ]


def test_sweep_cli_end_to_end_and_bad_epsilon(tmp_path, tiny_dataset, capsys):
    data = tmp_path / "tiny.npz"
    np.savez(data, x=tiny_dataset.images, y=tiny_dataset.labels, class_names=["0", "1", "2"])
    code = main(
        [
            "sweep",
            "--data",
            str(data),
            "--methods",
            "dpmerf",
            "--epsilons",
            "3,inf",
            "--out",
            str(tmp_path / "cli"),
            "--eval-epochs",
            "1",
            "--no-progress",
            "--set",
            "dpmerf:steps=5",
            "--set",
            "dpmerf:n_features=16",
            "--jobs",
            "2",
        ]
    )
    assert code == 0 and (tmp_path / "cli" / "sweep.png").exists()
    # both cells were trained by the two worker processes, then evaluated here
    rows = json.loads((tmp_path / "cli" / "sweep.json").read_text())["rows"]
    assert [(r["private"], r["epsilon"]) for r in rows] == [(True, 3.0), (False, None)]
    assert not any(r["skipped_training"] for r in rows) and rows[0]["epsilon_spent"] <= 3.03
    assert main(["sweep", "--data", str(data), "--out", str(tmp_path / "bad"), "--jobs", "0"]) == 2
    assert (
        main(["sweep", "--data", str(data), "--epsilons", "0,inf", "--out", str(tmp_path / "bad")])
        == 2
    )
    assert "--epsilons" in capsys.readouterr().err
