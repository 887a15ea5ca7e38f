"""Flower's simulation engine (Ray): many virtual owners, K at a time, the same apps and card."""

import importlib.machinery
import sys
import types
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


def _bookings(location) -> list[dict]:
    """Every owner's ledger segment for the run."""
    return [
        s
        for d in Ledger(str(location)).datasets()
        for r in d["runs"].values()
        for s in r["segments"]
    ]


def _shape(card: dict) -> dict:
    """The card's structure: which fields each section has (values differ by the run)."""
    return {k: sorted(v) if isinstance(v, dict) else type(v).__name__ for k, v in card.items()}


def test_simulated_owners_release_client_level_noise_and_book_like_inprocess(tmp_path, tiny_fed):
    """20 owners on Ray, 2 at a time; sigma = 1000, C = 1, m = 20: noise of std 50 on every
    weight of the saved model (weights of order 1 without it). The card has in-process mode's
    fields, and every owner booked its own spend, as in-process owners do."""
    tiny_fed.update(epsilon=None, noise_multiplier=1.0, local_steps=1)
    sim = federate(
        out=tmp_path / "sim",
        clients=20,
        rounds=1,
        client_noise=1000.0,
        mode="simulate",
        sim_parallel=2,
        ledger=tmp_path / "sim.sqlite",
        **tiny_fed,
    )
    assert _saved_max_abs(tmp_path / "sim") > 100
    cl = sim.card["privacy"]["client_level"]
    assert cl["noise_std_on_model"] == pytest.approx(50.0)
    log = (tmp_path / "sim" / "federation" / "simulation.log").read_text()
    assert "Constructed ActorPool with: 2 actors" in log  # Ray ran the owners, 2 at a time

    # the same federation of 2 owners in-process: the same card fields and ledger bookings
    ref = federate(
        out=tmp_path / "inproc",
        clients=2,
        rounds=1,
        client_noise=1000.0,
        mode="inprocess",
        ledger=tmp_path / "inproc.sqlite",
        **tiny_fed,
    )
    assert _shape(sim.card) == _shape(ref.card)
    for section in ("privacy", "federated"):
        assert _shape(sim.card[section]) == _shape(ref.card[section])
    assert sim.card["federated"]["owners_reporting"] == 20
    per_owner = sim.card["privacy"]["sample_level"]["per_owner"]
    assert sorted(o["partition"] for o in per_owner) == list(range(20))
    booked, ref_booked = _bookings(tmp_path / "sim.sqlite"), _bookings(tmp_path / "inproc.sqlite")
    assert len(booked) == 20 and sorted(booked[0]) == sorted(ref_booked[0])
    assert {(b["method"], b["kind"], b["status"]) for b in booked} == {
        (b["method"], b["kind"], b["status"]) for b in ref_booked
    }
    assert sorted(b["epsilon"] for b in booked) == pytest.approx(
        sorted(o["epsilon"] for o in per_owner)
    )


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


def test_parallel_owners_never_exceed_the_owners():
    assert simulate.parallel_owners(8, 3) == 3
    assert 1 <= simulate.parallel_owners(None, 3) <= 3
    with pytest.raises(ConfigError, match="--sim-parallel must be >= 1"):
        simulate.parallel_owners(0, 3)


def test_cli_simulate_without_ray_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # an uninstalled package: its import fails
    out = tmp_path / "f"
    rc = main(["federate", "--simulate", "--clients", "100", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "pip install 'privsynth[simulation]'" in err
    assert not out.exists()


def test_simulation_refuses_a_process_already_connected_to_ray(tmp_path, tiny_fed, monkeypatch):
    """Flower would reuse that Ray session, ignoring K, and shut it down at the end."""
    connected = types.ModuleType("ray")
    connected.__spec__ = importlib.machinery.ModuleSpec("ray", None)
    connected.is_initialized = lambda: True
    monkeypatch.setitem(sys.modules, "ray", connected)
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"already connected to Ray.*ray\.shutdown\(\)"):
        federate(out=out, clients=20, rounds=1, mode="simulate", **tiny_fed)
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
