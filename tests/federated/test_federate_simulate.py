"""Flower's simulation engine (Ray): many virtual owners, K at a time, the same apps and card."""

import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from privsynth.cli import main
from privsynth.errors import ConfigError
from privsynth.federated import federate, simulate
from privsynth.privacy import Ledger

try:
    import tomllib
except ImportError:  # Python 3.10 (flwr brings tomli)
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _saved_max_abs(out) -> float:
    return max(float(np.abs(v).max()) for v in load_file(str(out / "weights.safetensors")).values())


def _bookings(location) -> list[tuple]:
    """Every owner's ledger segment: whose data, what was booked, and how it ended."""
    return sorted(
        (d["name"], s["method"], s["kind"], s["status"], round(s["epsilon"], 9), s["delta"])
        for d in Ledger(str(location)).datasets()
        for r in d["runs"].values()
        for s in r["segments"]
    )


def _shape(card: dict) -> dict:
    """The card's structure: which fields each section has (values differ by the noise draw)."""
    return {k: sorted(v) if isinstance(v, dict) else type(v).__name__ for k, v in card.items()}


def test_simulated_owners_release_client_level_noise_and_book_like_inprocess(tmp_path, tiny_fed):
    """20 owners on Ray, 2 at a time; sigma = 1000, C = 1, m = 20: noise of std 50 on every
    weight of the saved model (weights of order 1 without it). Card and ledger as in-process."""
    tiny_fed.update(epsilon=None, noise_multiplier=1.0, local_steps=1)
    common = dict(clients=20, rounds=1, client_noise=1000.0, **tiny_fed)
    sim = federate(
        out=tmp_path / "sim",
        mode="simulate",
        sim_parallel=2,
        ledger=tmp_path / "sim.sqlite",
        **common,
    )
    assert _saved_max_abs(tmp_path / "sim") > 100
    cl = sim.card["privacy"]["client_level"]
    assert cl["noise_std_on_model"] == pytest.approx(50.0)
    assert sim.card["federated"]["owners_reporting"] == 20
    log = (tmp_path / "sim" / "federation" / "simulation.log").read_text()
    assert "Constructed ActorPool with: 2 actors" in log  # Ray ran the owners, 2 at a time

    ref = federate(
        out=tmp_path / "inproc", mode="inprocess", ledger=tmp_path / "inproc.sqlite", **common
    )
    assert _shape(sim.card) == _shape(ref.card)
    assert _shape(sim.card["privacy"]) == _shape(ref.card["privacy"])
    assert (
        sim.card["privacy"]["sample_level"]["per_owner"]
        == (ref.card["privacy"]["sample_level"]["per_owner"])
    )
    assert cl["epsilon"] == pytest.approx(ref.card["privacy"]["client_level"]["epsilon"])
    booked = _bookings(tmp_path / "sim.sqlite")
    assert len(booked) == 20 and booked == _bookings(tmp_path / "inproc.sqlite")


def test_simulation_that_cannot_fit_memory_is_refused_naming_sim_parallel(
    tmp_path, tiny_fed, monkeypatch
):
    """Room for the server and 3.5 owners: 8 at a time is refused with the K that fits, before
    Ray starts or --out is written; with no room for one owner the message says so."""
    tiny_fed.update(epsilon=None, noise_multiplier=1.0)
    seen = {}

    def room_for_three_and_a_half() -> int:
        cfg = seen["cfg"]
        model = simulate._model_bytes(cfg)
        owner = simulate.owner_peak_bytes(cfg, model, tiny_fed["config"]["batch_size"])
        return int(simulate.server_bytes(cfg, model, 20) + 3.5 * owner)

    real_check = simulate.check_memory

    def check(cfg, *args):
        seen["cfg"] = cfg
        return real_check(cfg, *args)

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray started")

    monkeypatch.setattr(simulate, "check_memory", check)
    monkeypatch.setattr(simulate, "available_memory", room_for_three_and_a_half)
    monkeypatch.setattr(simulate, "run_simulated", no_ray)
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"20 owners, 8 at a time.*--sim-parallel 3 ") as err:
        federate(out=out, clients=20, rounds=1, mode="simulate", sim_parallel=8, **tiny_fed)
    assert "\n" not in str(err.value) and not out.exists()

    monkeypatch.setattr(simulate, "available_memory", lambda: 2**20)
    with pytest.raises(ConfigError, match="even one owner at a time does not fit"):
        federate(out=out, clients=20, rounds=1, mode="simulate", sim_parallel=1, **tiny_fed)


def test_cli_simulate_without_ray_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # an uninstalled package: its import fails
    out = tmp_path / "f"
    rc = main(["federate", "--simulate", "--clients", "100", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "pip install 'privsynth[simulation]'" in err
    assert not out.exists()


def test_cli_sim_parallel_needs_simulate(tmp_path, capsys):
    rc = main(["federate", "--sim-parallel", "4", "--out", str(tmp_path / "f")])
    assert rc == 2 and "--simulate" in capsys.readouterr().err


def test_simulation_extra_brings_ray_through_flower_and_ci_installs_it():
    """Ray comes from Flower's own `simulation` extra (its pinned version); `test` includes it."""
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    simulation = [d.replace(" ", "") for d in extras["simulation"]]
    assert "privsynth[federated]" in simulation
    assert any(d.startswith("flwr[simulation]") for d in simulation)
    assert "privsynth[simulation]" in extras["test"]
