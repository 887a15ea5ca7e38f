"""`sweep --budget` and `federate --budget` check the dataset's budget before any work."""

from __future__ import annotations

from privsynth.cli import main


def test_sweep_budget_stops_before_a_cell_trains(tmp_path, tiny_npz, capsys):
    ledger = tmp_path / "budget-ledger.sqlite"
    code = main(
        [
            "sweep",
            "--data",
            str(tiny_npz),
            "--methods",
            "dpmerf",
            "--epsilons",
            "3",
            "--out",
            str(tmp_path / "sw"),
            "--eval-epochs",
            "1",
            "--no-progress",
            "--set",
            "dpmerf:steps=5",
            "--set",
            "dpmerf:n_features=16",
            "--ledger",
            str(ledger),
            "--budget",
            "2",
        ]
    )
    assert code == 2
    assert "BudgetError" in capsys.readouterr().err
    assert not list((tmp_path / "sw").glob("cells/*/weights.safetensors"))


def test_federate_budget_checks_every_owner_first(tmp_path, tiny_npz, capsys):
    out = tmp_path / "fed"
    code = main(
        [
            "federate",
            "--data",
            str(tiny_npz),
            "--out",
            str(out),
            "--inprocess",
            "--clients",
            "2",
            "--rounds",
            "1",
            "--local-steps",
            "1",
            "--epsilon",
            "5",
            "--batch-size",
            "8",
            "--ledger",
            str(tmp_path / "budget-ledger.sqlite"),
            "--budget",
            "2",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "BudgetError" in err and "plans 5" in err
    assert not out.exists()
