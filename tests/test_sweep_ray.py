"""`privsynth sweep --ray`: the cells train as Ray tasks and the sweep ends as a `--jobs` one does
(same table, same ledger entries); without Ray, or with a cluster and a one-machine ledger, it
stops before training with one line naming the fix."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

from privsynth.cli import main
from privsynth.errors import BudgetError
from privsynth.privacy.ledger import Ledger

CELL = ["--set", "dpmerf:steps=5", "--set", "dpmerf:n_features=16"]
CELL += ["--set", "dpkernel:steps=5", "--set", "dpkernel:n_features=16"]


@pytest.fixture(scope="module")
def local_ray():
    """Ray on this machine with 2 CPUs (the sweep uses a Ray it finds initialised)."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    ray.init(
        address="local",
        num_cpus=2,
        object_store_memory=80 * 1024**2,
        include_dashboard=False,
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()


def sweep_cli(data, out, ledger, *extra) -> int:
    return main(
        [
            "sweep",
            "--data",
            str(data),
            "--methods",
            "dpmerf,dpkernel",
            "--epsilons",
            "3,inf",
            "--out",
            str(out),
            "--eval-epochs",
            "1",
            "--n-synthetic",
            "30",
            "--delta",
            "1e-3",
            "--ledger",
            str(ledger),
            "--no-progress",
            *CELL,
            *extra,
        ]
    )


def ledger_entries(path) -> list[tuple]:
    """(cell folder, method, epsilon, delta, status) of every run booked in the ledger."""
    return sorted(
        (os.path.basename(run["out"]), run["method"], run["epsilon"], run["delta"], run["status"])
        for d in Ledger(path).datasets()
        for run in d["runs"].values()
    )


def same_table(rows) -> list[tuple]:
    keys = ("method", "run_method", "epsilon", "epsilon_spent", "n_synthetic", "skipped_training")
    return [tuple(r[k] for k in keys) for r in rows]


def test_ray_sweep_matches_a_jobs_sweep(tmp_path, tiny_dataset, local_ray):
    data = tmp_path / "tiny.npz"
    np.savez(data, x=tiny_dataset.images, y=tiny_dataset.labels, class_names=["0", "1", "2"])
    on_ray, on_jobs = tmp_path / "ray", tmp_path / "jobs"
    assert sweep_cli(data, on_ray, tmp_path / "ray.sqlite", "--ray", "auto") == 0
    assert sweep_cli(data, on_jobs, tmp_path / "jobs.sqlite", "--jobs", "2") == 0

    ray_rows = json.loads((on_ray / "sweep.json").read_text())["rows"]
    jobs_rows = json.loads((on_jobs / "sweep.json").read_text())["rows"]
    assert len(ray_rows) == 4 and same_table(ray_rows) == same_table(jobs_rows)
    assert all(r["epsilon_spent"] <= 3.03 for r in ray_rows if r["epsilon"] == 3.0)
    # each private cell booked once, as the --jobs sweep's did, by a Ray worker process
    entries = ledger_entries(tmp_path / "ray.sqlite")
    assert [e[0] for e in entries] == ["dpkernel-eps3", "dpmerf-eps3"]
    assert entries == ledger_entries(tmp_path / "jobs.sqlite")
    for cell in ("dpmerf-eps3", "dpkernel-epsinf"):
        card = json.loads((on_ray / "cells" / cell / "card.json").read_text())
        assert card["status"] == "complete"
    assert (on_ray / "sweep.png").exists() and "dpkernel" in (on_ray / "sweep.md").read_text()


def test_a_refused_cell_fails_with_its_own_error_after_the_others(tmp_path, local_ray):
    from privsynth.orchestrate.sweep_ray import train_cells

    def _cell(cell, fail, threads):  # local: Ray ships it by value (workers lack tests/)
        if fail:
            raise BudgetError(f"{cell}: over budget")
        return cell, float(threads)

    cells = [(tmp_path / "a", True), (tmp_path / "b", False)]
    with pytest.raises(BudgetError, match="over budget"):
        train_cells("auto", _cell, cells, num_cpus=2, cpus_per_cell=1, gpus_per_cell=0)
    ok = train_cells("auto", _cell, cells[1:], num_cpus=2, cpus_per_cell=1, gpus_per_cell=0)
    assert ok == {tmp_path / "b": 1.0} and local_ray.is_initialized()  # the caller's Ray stays


def test_ray_missing_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    assert main(["sweep", "--data", "digits", "--out", str(tmp_path / "s"), "--ray", "auto"]) == 2
    err = capsys.readouterr().err
    assert ".[ray]" in err and err.count("\n") == 1
    assert not (tmp_path / "s").exists()


def test_ray_cluster_refuses_a_one_machine_ledger(tmp_path, capsys):
    args = ["sweep", "--data", "digits", "--out", str(tmp_path / "s")]
    assert main([*args, "--ray", "10.0.0.1:6379", "--ledger", str(tmp_path / "l.sqlite")]) == 2
    assert "postgresql://" in capsys.readouterr().err
    assert main([*args, "--ray", "auto", "--ray-cpus-per-cell", "0"]) == 2
    assert "--ray-cpus-per-cell" in capsys.readouterr().err


def test_second_sweep_into_a_busy_folder_is_refused(tmp_path, capsys):
    from privsynth.lock import hold_output

    out = tmp_path / "s"
    with hold_output(out, "privsynth sweep"):
        assert main(["sweep", "--data", "digits", "--out", str(out)]) == 2
    assert "in use by another run (privsynth sweep" in capsys.readouterr().err
