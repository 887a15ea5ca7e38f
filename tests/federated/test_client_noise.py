"""Client-level DP: the server's noise is in the model that is saved, in every aggregation mode;
dropouts do not thin it; SecAgg+'s quantisation keeps the clip bound."""

from pathlib import Path

import numpy as np
import pytest
from flwr.app import Message
from flwr.clientapp import ClientApp
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat
from safetensors.numpy import load_file

try:
    import tomllib
except ImportError:  # Python 3.10 (flwr brings tomli)
    import tomli as tomllib

from privsynth.federated import client_app, federate, inprocess
from privsynth.federated.inprocess import InProcessGrid, server_context
from privsynth.federated.secure import run_secagg

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _saved_max_abs(out: Path) -> float:
    return max(float(np.abs(v).max()) for v in load_file(str(out / "weights.safetensors")).values())


@pytest.mark.parametrize("aggregation", ["plain", "secagg", "ckks"])
def test_client_level_noise_reaches_the_saved_weights(tmp_path, tiny_fed, aggregation):
    """sigma = 1000, C = 1, m = 2: noise of std 500 on every weight of the saved model, against
    weights of order 1 without client-level DP."""
    tiny_fed.update(epsilon=None, noise_multiplier=1.0, local_steps=1)
    common = dict(clients=2, rounds=1, mode="inprocess", aggregation=aggregation, **tiny_fed)
    noisy = federate(out=tmp_path / "noisy", client_noise=1000.0, **common)
    federate(out=tmp_path / "quiet", **common)
    assert _saved_max_abs(tmp_path / "noisy") > 500
    assert _saved_max_abs(tmp_path / "quiet") < 20
    cl = noisy.card["privacy"]["client_level"]
    assert cl["noise_std_on_model"] == pytest.approx(500.0)
    assert aggregation in noisy.card["privacy"]["aggregation"]


# --- SecAgg+ with a stand-in owner: every owner sends the same known update ---------------------
def _stub_owners(update: np.ndarray) -> ClientApp:
    """A ClientApp whose train returns global + ``update``, through the real SecAgg+ mod (clipping,
    deltas, masking, quantisation), with FedAvg weight 1 as under client-level DP."""
    app = ClientApp()

    @app.train(mods=[client_app.secure_mod])
    def train(msg: Message, context) -> Message:
        fitins = compat.recorddict_to_fitins(msg.content, keep_input=True)
        new = [a + update for a in parameters_to_ndarrays(fitins.parameters)]
        fitres = compat.FitRes(
            status=compat.Status(code=compat.Code.OK, message=""),
            parameters=ndarrays_to_parameters(new),
            num_examples=1,
            metrics={},
        )
        return Message(compat.fitres_to_recorddict(fitres, keep_input=False), reply_to=msg)

    return app


def _secagg_update(monkeypatch, update, owners, noise, drop=None) -> np.ndarray:
    """One SecAgg+ round from the ServerApp's code, with pyproject's run config (what `flwr run .`
    uses, outside the launcher) and client-level DP on; returns released - initial."""
    monkeypatch.setattr(inprocess, "client_app", _stub_owners(update))
    cfg = tomllib.loads(PYPROJECT.read_text())["tool"]["flwr"]["app"]["config"]
    cfg.update(
        {
            "aggregation": "secagg",
            "num-server-rounds": 1,
            "client-noise": noise,
            "client-clip": 1.0,
            "sampled-per-round": owners,
            "min-nodes": owners,
        }
    )
    grid = InProcessGrid([{} for _ in range(owners)], cfg, drop=drop)
    strategy = run_secagg(grid, server_context(cfg), [np.zeros_like(update)], cfg)
    return strategy.current[0]  # the initial model is 0


def test_secagg_keeps_a_unit_norm_update_within_quantisation_error(monkeypatch):
    """pyproject's max-weight (1e5) would scale each update by 1e-5 before quantising; with
    client-level DP the weights are 1 and max-weight must be 1."""
    rng = np.random.default_rng(0)
    u = rng.normal(size=2000)
    u /= np.linalg.norm(u)
    released = _secagg_update(monkeypatch, u, owners=2, noise=1e-9)
    # SecAgg+ quantises [-8, 8] to 2^22 levels: stochastic rounding error <= 3.8e-6 per value
    assert np.linalg.norm(released - u) < 1e-3


def test_secagg_dropout_keeps_the_planned_denominator(monkeypatch):
    """3 owners planned, 1 drops after the key exchange: the two survivors' deltas are divided by
    3, not 2, so the sum of clipped updates carries the noise sigma*C the accountant books."""
    u = np.zeros(2000)
    u[0] = 1.0
    released = _secagg_update(
        monkeypatch, u, owners=3, noise=1e-9, drop={2: "collect_masked_vectors"}
    )
    assert released[0] == pytest.approx(2 / 3, abs=1e-4)


def test_secagg_noise_std_is_sigma_c_over_planned_m_after_a_dropout(monkeypatch):
    """sigma = 3, C = 1, m = 3 planned, 2 survivors: the model's noise has std sigma*C/3 = 1."""
    u = np.zeros(20000)
    u[0] = 1e-3  # (Flower's clipping divides by the update's norm: it must not be 0)
    released = _secagg_update(
        monkeypatch, u, owners=3, noise=3.0, drop={2: "collect_masked_vectors"}
    )
    assert np.std(released) == pytest.approx(1.0, rel=0.03)


# --- CKKS: the strategy's arithmetic on ciphertexts ------------------------------------------
def test_ckks_client_level_dp_uses_the_planned_denominator_and_noises_the_sum(tmp_path):
    """3 owners planned, 2 answer with delta 0.5 everywhere; sigma = 3, C = 1: the decrypted model
    is 0 + (0.5 + 0.5) / 3 plus noise of std sigma*C/3 = 1 (not a mean over the 2 survivors)."""
    from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
    from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

    from privsynth.federated import encrypted
    from privsynth.federated.server_app import (
        EncryptedClientSideFixedClipping,
        EncryptedFedAvg,
        _aggregate_metrics,
    )

    secret_path, public_path = encrypted.make_keys(tmp_path)
    secret = encrypted.load_context(secret_path, need_secret=True)
    public = encrypted.load_context(public_path, need_secret=False)
    n = 5000
    inner = EncryptedFedAvg(
        public,
        ["w"],
        planned_owners=3,
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=2,
        min_available_nodes=2,
        train_metrics_aggr_fn=_aggregate_metrics,
    )
    strategy = EncryptedClientSideFixedClipping(inner, 3.0, 1.0, 3)
    grid = InProcessGrid([{} for _ in range(3)], {})
    server_context({})  # (sets Flower's process identity, which new messages read)
    sent = list(
        strategy.configure_train(
            1, ArrayRecord({"w": Array(np.zeros(n, np.float32))}), ConfigRecord({}), grid
        )
    )
    assert all(m.content["config"][KEY_CLIPPING_NORM] == 1.0 for m in sent)  # owners must clip
    payload = np.append(np.full(n, 0.5), 0.0)  # what an owner sends: [clipped delta, 0]
    blob, lengths = encrypted.pack(encrypted.encrypt(secret, payload))
    replies = [
        Message(
            RecordDict(
                {
                    "enc": ArrayRecord({"blob": Array(blob), "lengths": Array(lengths)}),
                    "metrics": MetricRecord({"num-examples": 1, "epsilon": 0.0}),
                }
            ),
            reply_to=m,
        )
        for m in sent[:2]  # the third owner dropped out
    ]
    agg, _ = strategy.aggregate_train(1, replies)
    total = encrypted.decrypt(secret, encrypted.unpack(agg["blob"].numpy(), agg["lengths"].numpy()))
    model = encrypted.average_from_sum(total)
    assert total[-1] == pytest.approx(3.0, abs=1e-4)  # the fixed denominator
    assert model.mean() == pytest.approx(1 / 3, abs=0.05)
    assert model.std() == pytest.approx(1.0, rel=0.05)


def test_ckks_owner_clips_its_delta_before_encrypting():
    start = {"a": np.zeros((3, 4), np.float32), "b": np.ones(5, np.float32)}
    new = {"a": np.full((3, 4), 2.0, np.float32), "b": np.ones(5, np.float32)}
    payload = client_app._clipped_delta_payload(new, start, ["a", "b"], clip=0.5)
    assert payload[-1] == 0.0 and np.linalg.norm(payload[:-1]) == pytest.approx(0.5)
