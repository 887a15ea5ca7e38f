"""Every federated owner spends through its ledger like `privsynth train`: reserved under the
locked budget check before it trains (with or without --budget), booked by adding (one segment
per federation), its accountant history on its own disk across SuperNode restarts."""

import json

import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from privsynth.errors import BudgetError, ConfigError
from privsynth.federated import FederateRequest, federate
from privsynth.federated.api import build_run_config
from privsynth.federated.inprocess import InProcessGrid, server_context
from privsynth.federated.server_app import run_federation
from privsynth.federated.task import array_keys, build_model, get_arrays, load_owner_data
from privsynth.models.engine import DPSGD
from privsynth.privacy import Ledger
from privsynth.privacy.accounting import epsilon_from_history

from .conftest import TINY_GAN


def _config(tmp_path, rounds=1, clients=2):
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    request = FederateRequest.build(
        out=out,
        clients=clients,
        rounds=rounds,
        local_steps=2,
        noise_multiplier=1.0,
        accountant="rdp",
        config=dict(TINY_GAN),
    )
    cfg, nodes = build_run_config(request)
    cfg["federation-id"] = "fed-test"
    return cfg, nodes


def _counting(real_run, calls):
    def run(self, *a, **k):
        calls.append(1)
        return real_run(self, *a, **k)

    return run


def _key(cfg, node):
    return load_owner_data(node, cfg).source_fingerprint


def test_owner_with_nearly_spent_budget_is_refused_before_it_trains(
    tmp_path, tiny_fed, monkeypatch
):
    """No --budget: each owner's dataset budget in its ledger still binds, checked by the owner
    itself before its first private step (and by the launcher before any round)."""
    cfg, nodes = _config(tmp_path)
    ledger = Ledger()
    for node in nodes:  # a budget far below one federation's plan
        ledger.set_budget(_key(cfg, node), 0.01, name="digits")
    steps = []
    real_run = DPSGD.run
    monkeypatch.setattr(DPSGD, "run", _counting(real_run, steps))
    with pytest.raises(BudgetError, match="owner refuses to train"):
        run_federation(InProcessGrid(nodes, cfg), server_context(cfg))
    assert steps == []  # refused before any private step
    assert all(ledger.spent(_key(cfg, n)).epsilon == 0 for n in nodes)
    with pytest.raises(BudgetError, match="owner 1 of 2"):  # the launcher, without --budget
        federate(out=tmp_path / "run", clients=2, rounds=1, mode="inprocess", **tiny_fed)


def test_two_federations_on_one_owners_data_add_up(tmp_path, tiny_fed):
    kw = dict(clients=2, rounds=1, mode="inprocess", **tiny_fed)
    first = federate(out=tmp_path / "a", **kw)
    second = federate(out=tmp_path / "b", **kw)
    cfg = json.loads((tmp_path / "a" / "federation.json").read_text())["run_config"]
    key = _key(cfg, {"partition-id": 0, "num-partitions": 2})
    eps = [r.card["privacy"]["sample_level"]["per_owner"][0]["epsilon"] for r in (first, second)]
    assert Ledger().spent(key).epsilon == pytest.approx(sum(eps))


def _train_message(grid, cfg, server_round):
    synth = build_model(cfg)
    arrays = get_arrays(synth)
    content = RecordDict(
        {
            "arrays": ArrayRecord({k: Array(arrays[k]) for k in array_keys(synth)}),
            "config": ConfigRecord({"server-round": server_round}),
        }
    )
    return grid.create_message(content, "train", 1000, "g")


def _report(grid):
    msg = grid.create_message(RecordDict({"config": ConfigRecord({})}), "query.report", 1000, "g")
    (reply,) = grid.send_and_receive([msg])
    return reply.content


def test_owner_history_survives_a_supernode_restart(tmp_path):
    """Round 1 on one SuperNode, round 2 after a restart (a fresh Flower Context): the owner's
    history continues from its disk, so it reports and books both rounds' steps."""
    cfg, nodes = _config(tmp_path, rounds=2)
    first = InProcessGrid(nodes, cfg)
    (reply,) = first.send_and_receive([_train_message(first, cfg, 1)])
    assert not reply.has_error()
    restarted = InProcessGrid(nodes, cfg)  # every owner gets a fresh Context
    (reply,) = restarted.send_and_receive([_train_message(restarted, cfg, 2)])
    assert not reply.has_error()
    report = _report(InProcessGrid(nodes, cfg))
    history = json.loads(report["info"]["history"])["history"]
    assert sum(s for _, _, s in history) == 2 * 2  # both rounds' local steps
    delta = float(report["metrics"]["delta"])
    eps = epsilon_from_history(history, delta, "rdp")
    assert float(report["metrics"]["epsilon"]) == pytest.approx(eps)
    assert Ledger().spent(_key(cfg, nodes[0])).epsilon == pytest.approx(eps)
    # a third round would exceed the steps the owner's noise was planned for: refused
    again = InProcessGrid(nodes, cfg)
    with pytest.raises(ConfigError, match="planned DP-SGD steps"):
        again.send_and_receive([_train_message(again, cfg, 3)])


def test_one_shot_released_flag_survives_a_supernode_restart(tmp_path):
    """dpmerf releases once per owner and federation: after a restart (fresh Flower Contexts)
    the owners still refuse a second release (two noisy releases would average the noise)."""
    from privsynth.federated.oneshot import prepare_run_config

    out = tmp_path / "once"
    out.mkdir()
    request = FederateRequest.build(
        method="dpmerf",
        out=out,
        clients=2,
        rounds=1,
        local_steps=1,
        epsilon=5.0,
        accountant="rdp",
        config={"n_features": 50, "steps": 3, "patience": 3, "g_width": 8, "z_dim": 8},
    )
    cfg, nodes = build_run_config(request)
    prepare_run_config(cfg, nodes)
    cfg["federation-id"] = "fed-once"
    run_federation(InProcessGrid(nodes, cfg), server_context(cfg))
    with pytest.raises(ConfigError, match="already released|no owner answered"):
        run_federation(InProcessGrid(nodes, cfg), server_context(cfg))  # fresh Contexts
