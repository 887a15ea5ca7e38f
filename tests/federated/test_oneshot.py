"""Federated DP-MERF (one noisy embedding sum) in-process: the noise the server's release carries
matches the central release's, reaches the generator's target, survives dropouts, and the run
folder reads like any other."""

import json
import re

import numpy as np
import pytest
import torch

from privsynth import Run
from privsynth.data import load_dataset, split
from privsynth.errors import ConfigError
from privsynth.federated import FederateRequest, federate
from privsynth.models.base import TrainContext
from privsynth.models.merf import MERFSynthesizer
from privsynth.privacy.accounting import PrivacySpec

TINY_MERF = {"n_features": 50, "steps": 3, "patience": 3, "g_width": 8, "z_dim": 8}
EPS = 5.0


@pytest.fixture
def captured(monkeypatch):
    """Every embedding the generator is trained on (what fit_released receives)."""
    seen: list[torch.Tensor] = []
    original = MERFSynthesizer.fit_released

    def spy(self, released, ctx):
        seen.append(released.clone())
        return original(self, released, ctx)

    monkeypatch.setattr(MERFSynthesizer, "fit_released", spy)
    return seen


def _exact_sum() -> torch.Tensor:
    """The noiseless S over the training split (= the sum of the owners' partitions)."""
    data = load_dataset("digits")
    train = data.subset(split(data, 0.2, 0).train)
    synth = MERFSynthesizer((1, 8, 8), 10, TINY_MERF)
    return synth.statistic(train, 1.0).float()


def _fed(tmp_path, name, **kw):
    args = dict(
        clients=3, mode="inprocess", aggregation="secagg", epsilon=EPS, config=dict(TINY_MERF)
    )
    return federate(data="digits", method="dpmerf", out=tmp_path / name, **{**args, **kw})


def test_secagg_release_noise_matches_the_central_release(tmp_path, captured):
    """t = n (threshold 1.0): the summed shares carry the central noise std; the central release
    at the same accountant (RDP) is drawn with the same std; both reach the generator."""
    exact = _exact_sum()
    run = _fed(tmp_path, "fed", extra_run_config={"secagg-threshold": 1.0})
    fed_std = float((captured[-1] - exact).std())
    noise = run.card["privacy"]["distributed_noise"]
    assert noise["threshold"] == 3 and noise["shares_in_sum"] == 3
    data = load_dataset("digits")
    train = data.subset(split(data, 0.2, 0).train)
    central = MERFSynthesizer((1, 8, 8), 10, TINY_MERF)
    spec = PrivacySpec(epsilon=EPS, delta=run.card["privacy"]["dp_sgd"]["delta"], accountant="rdp")
    central.fit(train, TrainContext(privacy=spec, progress=False))
    central_std = float((captured[-1] - exact).std())
    sigma = run.card["privacy"]["dp_sgd"]["noise_multiplier"]
    # 1010 entries pin each std down to ~2%; a 10% band is 4.5 of those (a ratio of the two
    # measured stds would be 3 and miss now and then)
    assert central_std == pytest.approx(sigma, rel=0.1)  # C = 1: std = sigma
    # shares are sized for t - 1 = 2: the 3-share sum carries sqrt(3/2) x the central std, and
    # an owner who subtracts its own share still faces the central std (the card's epsilon)
    assert fed_std == pytest.approx(sigma * np.sqrt(3 / 2), rel=0.1)
    assert noise["noise_std_released"] == pytest.approx(sigma * np.sqrt(3 / 2), rel=1e-3)
    assert noise["noise_std_against_an_owner"] == pytest.approx(sigma, rel=1e-3)
    assert noise["opendp_rho"] == pytest.approx(noise["opacus_rdp_rho"], rel=1e-3)


def test_dropout_to_the_threshold_keeps_the_central_noise_and_the_card_says_so(
    tmp_path, captured, monkeypatch
):
    """3 owners, t = 2 (Flower's 0.6 default); owner 1 vanishes after sharing its keys: the sum
    of the 2 survivors still carries std >= sigma C; the card states mechanism and assumptions."""
    from privsynth.federated.task import load_owner_data

    from .dropout import drop_in_federate

    drop_in_federate(monkeypatch, {1: "collect_masked_vectors"})
    run = _fed(tmp_path, "drop")
    cfg = json.loads((tmp_path / "drop" / "federation.json").read_text())["run_config"]
    synth = MERFSynthesizer((1, 8, 8), 10, TINY_MERF)
    survivors = sum(
        synth.statistic(load_owner_data({"partition-id": i, "num-partitions": 3}, cfg), 1.0)
        for i in (0, 2)
    )
    pv = run.card["privacy"]
    noise = pv["distributed_noise"]
    assert noise["threshold"] == 2 and noise["shares_in_sum"] == 2 and noise["owners_failed"] == 1
    sigma = pv["dp_sgd"]["noise_multiplier"]
    # t = 2: each share alone carries sigma C, so each survivor faces the central noise too
    std = float((captured[-1] - survivors.float()).std())
    assert std == pytest.approx(sigma * np.sqrt(2), rel=0.1)
    assert noise["noise_std_released"] >= sigma * 0.999
    assert noise["noise_std_against_an_owner"] == pytest.approx(sigma, rel=1e-3)
    assert pv["mechanism"]["name"] == "gaussian" and pv["mechanism"]["variant"] == "secagg"
    assert "distributed discrete Gaussian" in pv["mechanism"]["description"]
    assert any("honest-but-curious" in a for a in pv["assumptions"])
    assert any("at least t - 1" in a for a in pv["assumptions"])
    assert pv["epsilon"] <= EPS * 1.01 and pv["dp_sgd"]["accountant"] == "rdp"
    images, _ = Run.load(tmp_path / "drop").sample(10, labels=[2] * 10)
    assert images.shape == (10, 1, 8, 8) and images.dtype == np.uint8


def test_plain_fallback_every_owner_adds_the_full_noise(tmp_path, captured):
    exact = _exact_sum()
    run = _fed(tmp_path, "plain", aggregation="plain")
    std = float((captured[-1] - exact).std())
    sigma = run.card["privacy"]["dp_sgd"]["noise_multiplier"]
    assert std == pytest.approx(sigma * np.sqrt(3), rel=0.1)
    assert run.card["privacy"]["mechanism"]["variant"] == "plain"


@pytest.mark.parametrize("method", ["dpmerf", "dpkernel"])
def test_cli_federate_one_shot_then_info(tmp_path, capsys, method):
    from privsynth.cli import main

    out = tmp_path / "cli"
    sets = [a for k, v in TINY_MERF.items() for a in ("--set", f"{k}={v}")]
    argv = [
        "federate",
        "--method",
        method,
        "--data",
        "digits",
        "--clients",
        "3",
        "--secure-aggregation",
        "--inprocess",
        "--epsilon",
        "10",
        *sets,
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert method in text and "1438" not in text  # no exact count (add/remove-one)
    assert re.search(r"Gaussian\s+epsilon", text) and "honest owners" in text
    card = json.loads((out / "card.json").read_text())
    assert card["privacy"]["epsilon"] <= 10 * 1.01
    assert card["privacy"]["mechanism"]["variant"] == "secagg"
    (count,) = card["privacy"]["neighbouring"]["published_counts"]  # the sum's count feature
    assert count["release"] == method and f"(DP count from the {method} release)" in text
    assert (out / "samples.png").exists() and (out / "weights.safetensors").exists()


def test_an_owner_releases_only_once_per_run(tmp_path):
    """A second release request in the same run (e.g. a retried round) is refused by every
    owner: averaging two noisy releases would halve the noise variance."""
    from privsynth.federated.api import build_run_config
    from privsynth.federated.inprocess import InProcessGrid, server_context
    from privsynth.federated.oneshot import prepare_run_config
    from privsynth.federated.server_app import run_federation

    out = tmp_path / "twice"
    out.mkdir()
    request = FederateRequest.build(
        method="dpmerf",
        out=out,
        clients=2,
        rounds=1,
        local_steps=1,
        epsilon=EPS,
        accountant="rdp",
        config=dict(TINY_MERF),
    )
    cfg, nodes = build_run_config(request)
    prepare_run_config(cfg, nodes)
    grid = InProcessGrid(nodes, cfg)
    run_federation(grid, server_context(cfg))
    # in-process the owner's refusal surfaces as its exception; over a SuperLink the server
    # gets error replies only and stops with "no owner answered"
    with pytest.raises(ConfigError, match="already released|no owner answered"):
        run_federation(grid, server_context(cfg))


def test_ckks_release_noise_matches_the_central_release(tmp_path, captured, monkeypatch):
    """Under CKKS every owner's share is sized for all n = 3; the server adds ciphertexts only and
    one owner decrypts, once: the released sum carries the central noise std (C = 1: sigma)."""
    from privsynth.federated import encrypted

    decrypted = []
    real_decrypt = encrypted.decrypt
    monkeypatch.setattr(
        encrypted, "decrypt", lambda ctx, chunks: decrypted.append(1) or real_decrypt(ctx, chunks)
    )
    exact = _exact_sum()
    run = _fed(tmp_path, "ckks", aggregation="ckks")
    assert len(decrypted) == 1  # one owner, one decryption: the sum, never a single share
    pv = run.card["privacy"]
    noise = pv["distributed_noise"]
    assert noise["threshold"] == 3 == noise["owners"] and noise["shares_in_sum"] == 3
    sigma = pv["dp_sgd"]["noise_multiplier"]
    released = captured[-1]
    # the decrypted sum is exact: integer grid units (no CKKS error reaches the release)
    units = released.double() / noise["grid"]
    assert torch.equal(units, units.round())
    # shares sized for n - 1: an owner (it holds the key and its own share) faces sigma C
    assert float((released - exact).std()) == pytest.approx(sigma * np.sqrt(3 / 2), rel=0.1)
    assert noise["noise_std_against_an_owner"] == pytest.approx(sigma, rel=1e-3)
    assert noise["opendp_rho"] == pytest.approx(noise["opacus_rdp_rho"], rel=1e-3)
    assert pv["mechanism"]["variant"] == "ckks" and "CKKS" in pv["mechanism"]["description"]
    assert any("no owner colludes with the server" in a for a in pv["assumptions"])
    assert pv["epsilon"] <= EPS * 1.01 and pv["dp_sgd"]["accountant"] == "rdp"
    assert not (tmp_path / "ckks" / "federation" / "keys" / "ckks-secret.bin").exists()
    images, _ = run.sample(10, labels=[3] * 10)
    assert images.shape == (10, 1, 8, 8) and images.dtype == np.uint8


class _OneOwnerSilent:
    """A grid whose owner 1 never answers the CKKS release request (a dropout)."""

    def __init__(self, grid):
        self.grid = grid

    def __getattr__(self, name):
        return getattr(self.grid, name)

    def send_and_receive(self, messages, *, timeout=None):
        kept = [m for m in messages if m.metadata.dst_node_id != 1001]
        return self.grid.send_and_receive(kept, timeout=timeout)


def _ckks_config(tmp_path):
    from privsynth.federated.api import build_run_config
    from privsynth.federated.encrypted import make_keys
    from privsynth.federated.oneshot import prepare_run_config

    out = tmp_path / "drop"
    out.mkdir()
    request = FederateRequest.build(
        method="dpmerf",
        out=out,
        clients=3,
        rounds=1,
        local_steps=1,
        aggregation="ckks",
        epsilon=EPS,
        config=dict(TINY_MERF),
    )
    cfg, nodes = build_run_config(request)
    prepare_run_config(cfg, nodes)
    secret, public = make_keys(tmp_path / "keys")
    cfg["ckks-public"], cfg["ckks-secret"] = str(public), str(secret)
    return cfg, nodes


def test_ckks_dropout_releases_nothing_and_owners_refuse_a_partial_sum(tmp_path):
    """A sum of 2 of 3 shares would carry 2/3 of the central noise variance: the server stops
    before any decryption, and an owner asked to decrypt such a sum refuses."""
    from flwr.app import Array, ArrayRecord, Message, RecordDict

    from privsynth.errors import PrivacyError
    from privsynth.federated import encrypted
    from privsynth.federated.inprocess import InProcessGrid, server_context
    from privsynth.federated.server_app import run_federation

    cfg, nodes = _ckks_config(tmp_path)
    grid = InProcessGrid(nodes, cfg)
    with pytest.raises(ConfigError, match="only 2 of 3 owners.*nothing was released"):
        run_federation(_OneOwnerSilent(grid), server_context(cfg))
    assert not (tmp_path / "drop" / "card.json").exists()
    # a forged "sum" of two shares, sent for decryption: the encrypted count gives it away
    sec = encrypted.load_context(cfg["ckks-secret"], need_secret=True)
    pub = encrypted.load_context(cfg["ckks-public"], need_secret=False)
    two = encrypted.add(pub, [encrypted.encrypt(sec, np.array([5.0, 1.0]))] * 2)
    blob, lengths = encrypted.pack(two)
    content = RecordDict({"enc": ArrayRecord({"blob": Array(blob), "lengths": Array(lengths)})})
    msg = Message(content, message_type="query.decrypt", dst_node_id=1002)
    with pytest.raises(PrivacyError, match="holds 2 shares, not all 3"):
        grid.send_and_receive([msg])


def _config(method, clients, config):
    from privsynth.federated.api import build_run_config

    request = FederateRequest.build(
        method=method,
        out="unused",
        clients=clients,
        rounds=1,
        local_steps=1,
        aggregation="secagg",
        epsilon=EPS,
        config=config,
    )
    return build_run_config(request)


def test_owners_smaller_than_the_generator_batch_may_release():
    """dpmerf's batch_size counts generated images (no private batches): 10 owners of ~143
    digits each are fine; a DP-SGD batch of 200 still does not fit them."""
    cfg, nodes = _config("dpmerf", 10, {"batch_size": 200})
    assert len(nodes) == 10
    with pytest.raises(ConfigError, match="batch size 200 exceeds the smallest owner's 14"):
        _config("dpgan", 10, {"batch_size": 200})


def test_budget_check_prices_one_release_not_rounds_of_dp_sgd(tmp_path):
    """With a fixed sigma, the budget check of a one-shot federation plans the one release's
    epsilon (q = 1, one step), what each owner then books."""
    from privsynth.errors import BudgetError
    from privsynth.privacy.accounting import epsilon_from_history

    n_total = len(split(load_dataset("digits"), 0.2, 0).train)
    release = epsilon_from_history([(2.0, 1.0, 1)], 1 / (10 * n_total), "rdp")
    with pytest.raises(BudgetError, match=f"plans {release:g} "):
        _fed(
            tmp_path,
            "budget",
            epsilon=None,
            noise_multiplier=2.0,
            budget=release * 0.9,
            ledger=tmp_path / "ledger.db",
        )
    run = _fed(
        tmp_path,
        "fits",
        epsilon=None,
        noise_multiplier=2.0,
        budget=release * 1.01,
        ledger=tmp_path / "ledger.db",
    )
    assert run.epsilon == pytest.approx(release)
