"""Real processes: a SuperLink and SuperNodes on 127.0.0.1, driven by `flwr run` (the CLI path)."""

import json
import os
from pathlib import Path

import pytest

from privsynth import Run
from privsynth.cli import main
from privsynth.federated import federate

from .conftest import TINY_GAN


def test_cli_federate_runs_a_real_local_deployment(tmp_path, capsys):
    out = tmp_path / "fed"
    sets = [f"--set={k}={v}" for k, v in TINY_GAN.items()]
    rc = main(
        [
            "federate",
            "--data",
            "digits",
            "--clients",
            "2",
            "--rounds",
            "1",
            "--local-steps",
            "2",
            "--accountant",
            "rdp",
            "--epsilon",
            "10",
            "--out",
            str(out),
            "--timeout",
            "400",
            *sets,
        ]
    )
    assert rc == 0
    run = Run.load(out)
    assert run.card["federated"]["owners_reporting"] == 2
    assert run.card["privacy"]["sample_level"]["per_owner"][0]["epsilon"] <= 10.0 * 1.01
    assert run.card["federated"]["bytes_up_per_round"] > 0
    for i in range(2):  # each owner really was its own SuperNode process
        assert (
            "Start `flwr-clientapp` process"
            in (out / "federation" / f"supernode-{i}.log").read_text()
        )
    assert "sample level" in capsys.readouterr().out


def test_cli_federate_bad_input_exits_2(tmp_path, capsys):
    rc = main(["federate", "--clients", "1", "--out", str(tmp_path / "x")])
    assert rc == 2
    assert "clients" in capsys.readouterr().err


@pytest.mark.slow
def test_secagg_round_survives_one_of_five_owners_crashing(tmp_path, monkeypatch):
    """5 SuperNodes under SecAgg+; owner 3's ClientApp process exits after the key exchange
    (mid-round). The round still aggregates the 4 survivors' masked updates."""
    from privsynth.federated import launch

    here = str(Path(__file__).resolve().parent)  # the SuperNodes import faulty_client from here
    monkeypatch.setenv("PYTHONPATH", here + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # owner 3 crashes in round 1 (tests/federated/faulty_client.py)
    monkeypatch.setattr(launch, "CLIENT_APP", "faulty_client:app")
    run = federate(
        data="digits",
        method="dpgan",
        out=tmp_path / "fed",
        clients=5,
        rounds=2,
        local_steps=3,
        aggregation="secagg",
        accountant="rdp",
        config=dict(TINY_GAN),
        timeout=900,
    )
    per_round = run.card["federated"]["per_round"]
    assert per_round["1"]["owners"] == 4
    assert per_round["2"]["owners"] == 5
    assert (
        json.loads((tmp_path / "fed" / "federation.json").read_text())["run_config"]["aggregation"]
        == "secagg"
    )
