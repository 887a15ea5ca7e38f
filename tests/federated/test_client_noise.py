"""Client-level DP: the server's noise is in the model that is saved, in every aggregation mode;
dropouts do not thin it; SecAgg+'s quantisation keeps the clip bound."""

import json
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

from .dropout import DroppingGrid

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
    nodes = [{} for _ in range(owners)]
    grid = DroppingGrid(nodes, cfg, drop=drop) if drop else InProcessGrid(nodes, cfg)
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
    # the owners clip to C minus SecAgg+'s quantisation margin sqrt(d) * 2c/Q (secure.py)
    clip = 1.0 - np.sqrt(u.size) * 2 * 8.0 / 2**22
    assert released[0] == pytest.approx(2 / 3 * clip, abs=1e-5)


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


def test_client_dp_round_with_fewer_owners_than_declared_m_is_noised_for_m(
    tmp_path, tiny_fed, monkeypatch
):
    """m = 4 owners per round is declared (client-owners); only 2 connect and reply. The released
    weights carry noise sigma*C/4 (not sigma*C/2 from the count of connected owners)."""
    from privsynth.federated import task

    released = []
    real_finalize = task.finalize

    def spy(synth):
        released.append(task.get_arrays(synth))  # the global model, before after_federation
        return real_finalize(synth)

    monkeypatch.setattr(task, "finalize", spy)
    tiny_fed.update(epsilon=None, noise_multiplier=1.0, local_steps=1)
    run = federate(
        out=tmp_path / "m4",
        clients=2,
        rounds=1,
        mode="inprocess",
        aggregation="secagg",
        client_noise=1000.0,
        extra_run_config={"client-owners": 4},
        **tiny_fed,
    )
    cfg = json.loads((tmp_path / "m4" / "federation.json").read_text())["run_config"]
    initial = task.get_arrays(task.build_model(cfg))
    noise = np.concatenate([(released[-1][k] - initial[k]).ravel() for k in initial])
    assert np.std(noise) == pytest.approx(1000.0 / 4, rel=0.05)  # the owners' deltas: norm <= C
    cl = run.card["privacy"]["client_level"]
    assert cl["sampled_per_round"] == 4 and cl["noise_std_on_model"] == pytest.approx(250.0)


def test_secagg_owners_clip_to_c_minus_the_quantisation_margin(monkeypatch):
    """SecAgg+'s stochastic rounding moves each of d values by < 2c/Q: owners clip to
    C - sqrt(d)*2c/Q so that the quantised update's norm stays <= C; the noise stays sigma*C/m."""
    from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

    from privsynth.federated.secure import QUANTIZATION_RANGE, quantised_clip

    sent = []
    real_mod = client_app.fixedclipping_mod

    def spy(msg, ctx, call_next):
        sent.append(float(msg.content.config_records["fitins.config"][KEY_CLIPPING_NORM]))
        return real_mod(msg, ctx, call_next)

    monkeypatch.setattr(client_app, "fixedclipping_mod", spy)
    d = 2000
    u = np.full(d, 1.0)  # norm 44.7: clipped
    released = _secagg_update(monkeypatch, u, owners=2, noise=1e-9)
    margin = np.sqrt(d) * 2 * 8.0 / QUANTIZATION_RANGE  # c = secagg-clip-range 8 (pyproject)
    assert sent and all(c + margin <= 1.0 + 1e-12 for c in sent)
    assert np.linalg.norm(released) <= 1.0  # the mean of two quantised updates, each <= C
    clip, noise, m = quantised_clip(1.0, 3.0, d, 8.0, QUANTIZATION_RANGE)
    assert m == pytest.approx(margin) and clip + m == pytest.approx(1.0)
    assert noise * clip == pytest.approx(3.0 * 1.0)  # noise std sigma*C for sensitivity C
