"""The ServerApp and ClientApp code, run in-process (no SuperLink): plain, SecAgg+, CKKS."""

import numpy as np
import pytest

from privsynth import Run
from privsynth.errors import ConfigError
from privsynth.federated import federate
from privsynth.privacy.accounting import epsilon_from_history

from .dropout import drop_in_federate


def _weights(run):
    return {k: v.numpy() for k, v in run.synthesizer.state_dict().items()}


def test_plain_fedavg_with_sample_level_dp(tmp_path, tiny_fed):
    run = federate(out=tmp_path / "run", clients=3, rounds=2, mode="inprocess", **tiny_fed)
    loaded = Run.load(tmp_path / "run")
    pv = loaded.card["privacy"]["sample_level"]
    assert pv["owners_reporting"] == 3
    for owner in pv["per_owner"]:
        # each owner ran rounds x local_steps DP-SGD steps; epsilon recomputed from its history
        assert sum(s for _, _, s in owner["history"]) == 2 * 2
        assert owner["epsilon"] == pytest.approx(
            epsilon_from_history(owner["history"], owner["delta"], "rdp")
        )
        assert owner["epsilon"] <= 10.0 * 1.01
    assert loaded.epsilon == max(o["epsilon"] for o in pv["per_owner"])
    assert "sample level" in loaded.card["privacy"]["guarantee"]
    assert loaded.card["federated"]["global_momentum"] == 0.0  # dpgan: momentum off
    images, labels = run.sample(20, labels=[3] * 20)
    assert images.shape == (20, 1, 8, 8) and images.dtype == np.uint8
    train, holdout = loaded.load_data()  # the split is recorded like `privsynth train`'s
    assert len(train) + len(holdout) == 1797
    assert _ledger_methods().count("dpgan-federated") == 3  # each owner booked its own spend


def test_ckks_matches_plain_fedavg(tmp_path, tiny_fed):
    """Same seeds: the CKKS run's final model differs from plaintext FedAvg only by CKKS error."""
    tiny_fed.update(epsilon=None, noise_multiplier=1.0)  # fixed sigma: no calibration needed
    plain = federate(out=tmp_path / "plain", clients=2, rounds=2, mode="inprocess", **tiny_fed)
    ckks = federate(
        out=tmp_path / "ckks", clients=2, rounds=2, mode="inprocess", aggregation="ckks", **tiny_fed
    )
    a, b = _weights(plain), _weights(ckks)
    assert max(np.abs(a[k] - b[k]).max() for k in a) < 1e-3
    assert ckks.card["privacy"]["aggregation"] == "ckks"
    assert not (tmp_path / "ckks" / "federation" / "keys" / "ckks-secret.bin").exists()


def test_secagg_survives_a_dropout_and_adds_client_level_dp(tmp_path, tiny_fed, monkeypatch):
    """5 owners under SecAgg+; owner 2 vanishes after sharing its keys; the round completes
    from the 4 survivors. Client-level DP (clipping before masking + server noise) on top."""
    tiny_fed.update(epsilon=None, noise_multiplier=1.0)
    drop_in_federate(monkeypatch, {2: "collect_masked_vectors"})
    run = federate(
        out=tmp_path / "run",
        clients=5,
        rounds=1,
        mode="inprocess",
        aggregation="secagg",
        client_epsilon=20.0,
        client_delta=1e-3,
        **tiny_fed,
    )
    fed = run.card["federated"]
    assert fed["per_round"]["1"]["owners"] == 4
    cl = run.card["privacy"]["client_level"]
    assert cl["epsilon"] == pytest.approx(20.0, rel=0.02)
    assert "client level" in run.card["privacy"]["guarantee"]
    assert run.card["privacy"]["sample_level"]["owners_reporting"] == 4


def test_client_level_epsilon_agrees_with_flowers_accountant(tmp_path, tiny_fed):
    tiny_fed["epsilon"] = None
    run = federate(
        out=tmp_path / "run", clients=2, rounds=2, mode="inprocess", client_noise=2.0, **tiny_fed
    )
    cl = run.card["privacy"]["client_level"]
    assert cl["epsilon_flower_rdp"] == pytest.approx(cl["epsilon"], rel=0.05)
    assert run.card["privacy"]["unit"].startswith("one data owner")


def test_bad_federation_options(tmp_path, tiny_fed):
    with pytest.raises(ConfigError, match="clients"):
        federate(out=tmp_path / "a", clients=1, rounds=1, mode="inprocess", **tiny_fed)
    tiny_fed["config"]["batch_size"] = 10_000
    with pytest.raises(ConfigError, match="batch size"):
        federate(out=tmp_path / "c", clients=2, rounds=1, mode="inprocess", **tiny_fed)


def test_dpvae_federates_under_secagg(tmp_path, tiny_fed):
    """The VAE's whole model is the private module: every owner books rounds x local-steps."""
    tiny_fed.update(method="dpvae", config={"batch_size": 32, "width": 8, "z_dim": 4})
    run = federate(
        out=tmp_path / "vae",
        clients=2,
        rounds=2,
        mode="inprocess",
        aggregation="secagg",
        **tiny_fed,
    )
    loaded = Run.load(tmp_path / "vae")
    assert loaded.card["method"] == "dpvae"
    pv = loaded.card["privacy"]["sample_level"]
    assert [sum(s for _, _, s in o["history"]) for o in pv["per_owner"]] == [4, 4]
    assert 0 < loaded.epsilon <= 10.0 * 1.01
    images, _ = run.sample(6, labels=[1] * 6)
    assert images.shape == (6, 1, 8, 8) and images.dtype == np.uint8
    assert _ledger_methods().count("dpvae-federated") == 2


@pytest.mark.parametrize("aggregation", ["plain", "secagg"])
def test_owners_send_no_losses_and_the_card_records_none(
    tmp_path, tiny_fed, monkeypatch, aggregation
):
    """A loss on private batches is not DP: it must not leave the owner, nor reach the card."""
    from privsynth.federated import inprocess

    replies, real = [], inprocess.client_app
    monkeypatch.setattr(
        inprocess, "client_app", lambda msg, ctx: replies.append(real(msg, ctx)) or replies[-1]
    )
    tiny_fed.update(epsilon=None, noise_multiplier=1.0)
    run = federate(
        out=tmp_path / "run",
        clients=2,
        rounds=1,
        mode="inprocess",
        aggregation=aggregation,
        **tiny_fed,
    )
    sent = [
        key
        for r in replies
        for rec in r.content.values()
        if hasattr(rec, "keys")
        for key in rec.keys()
    ]
    assert "num-examples" in sent or "fitres.num_examples" in sent  # the records were read
    assert not [k for k in sent if "loss" in k]
    assert "loss" not in str(run.card["federated"]["per_round"])
    assert "losses" in run.card["privacy"]["not_protected"]


def _ledger_methods() -> list[str]:
    """The method of every run in the ledger every verb finds ($PRIVSYNTH_LEDGER here)."""
    from privsynth.privacy import Ledger

    return [r["method"] for d in Ledger().datasets() for r in d["runs"].values()]
