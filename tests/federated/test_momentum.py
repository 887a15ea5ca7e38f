"""Global momentum applied by the owners (federated/task.with_momentum) is FedAvgM's update."""

import numpy as np

from privsynth.federated import task


def test_owners_momentum_equals_fedavgm_server_momentum():
    """Owners that each add beta * (last global step) make the FedAvg average follow exactly
    Flower's FedAvgM (server lr 1): v <- beta v + (w - mean), w <- w - v."""
    rng = np.random.default_rng(0)
    beta, owners, rounds = 0.9, 3, 5
    w0 = {"a": rng.normal(size=(4, 3)).astype(np.float32)}
    deltas = [
        [{"a": rng.normal(size=(4, 3)).astype(np.float32)} for _ in range(owners)]
        for _ in range(rounds)
    ]
    # FedAvgM on the server (flwr.serverapp.strategy.FedAvgM's formula)
    w_ref, v = w0["a"].astype(np.float64), None
    # momentum applied by the owners
    w, before = dict(w0), None
    for r in range(rounds):
        mean = np.mean([w_ref + d["a"] for d in deltas[r]], axis=0)
        g = w_ref - mean
        v = g if v is None else beta * v + g
        w_ref = w_ref - v
        replies = [task.with_momentum({"a": w["a"] + d["a"]}, w, before, beta) for d in deltas[r]]
        before, w = w, {"a": np.mean([x["a"] for x in replies], axis=0)}
        np.testing.assert_allclose(w["a"], w_ref, rtol=1e-5, atol=1e-5)


def test_owner_without_the_previous_global_adds_nothing():
    new = {"a": np.ones(3, np.float32)}
    now = {"a": np.full(3, 2.0, np.float32)}
    assert task.with_momentum(new, now, None, 0.9) is new
    assert task.with_momentum(new, now, {"a": np.zeros(3, np.float32)}, 0.0) is new
    out = task.with_momentum(new, now, {"a": np.zeros(3, np.float32)}, 0.5)
    np.testing.assert_allclose(out["a"], 2.0)


def test_global_model_round_trips_through_owner_state_without_pickle():
    arrays = {"g.w": np.arange(6, dtype=np.float32).reshape(2, 3), "d.b": np.zeros(2, np.float32)}
    back = task.unpack_arrays(task.pack_arrays(arrays))
    assert set(back) == set(arrays)
    for k in arrays:
        np.testing.assert_array_equal(back[k], arrays[k])


def _tiny_vae_federation(tmp_path, name, aggregation, momentum):
    from privsynth.federated import federate

    run = federate(
        data="digits",
        method="vae",  # no DP: seeded loaders, so two runs differ only by what is tested
        out=tmp_path / name,
        clients=2,
        rounds=5,
        local_steps=1,
        config={"batch_size": 32, "width": 8, "z_dim": 4},
        aggregation=aggregation,
        mode="inprocess",
        extra_run_config={"global-momentum": momentum},
    )
    assert run.card["federated"]["global_momentum"] == momentum  # the card says what ran
    return {k: v.numpy() for k, v in run.synthesizer.state_dict().items()}


def test_momentum_reaches_the_global_model_and_is_the_same_under_secagg(tmp_path):
    plain = _tiny_vae_federation(tmp_path, "plain", "plain", 0.9)
    secagg = _tiny_vae_federation(tmp_path, "secagg", "secagg", 0.9)
    without = _tiny_vae_federation(tmp_path, "none", "plain", 0.0)
    gap_secagg = max(np.abs(plain[k] - secagg[k]).max() for k in plain)
    gap_momentum = max(np.abs(plain[k] - without[k]).max() for k in plain)
    # SecAgg+ only quantizes the same sum: its deviation from plain is a small fraction of what
    # momentum changes (both runs are non-DP; SecAgg+'s quantization is their only difference)
    assert 4 * gap_secagg < gap_momentum
