import pytest

from privsynth.evaluate.audit import audit, audit_dataset, make_canaries


def test_included_canaries_land_in_the_training_split(tiny_dataset):
    from privsynth.data import split

    idx, labels, included, rest = make_canaries(tiny_dataset, 20, seed=1)
    assert (labels != tiny_dataset.labels[idx]).all()  # every canary is mislabeled
    ds = audit_dataset(tiny_dataset, idx, labels, included, rest, 0.2, 0)
    train = split(ds, 0.2, 0).train
    canary_rows = {tiny_dataset.images[i].tobytes() for i in idx[included]}
    in_train = {ds.images[i].tobytes() for i in train}
    assert canary_rows <= in_train and len(ds) == len(rest) + included.sum()


def test_audit_sees_a_memorising_model(tmp_path, memoriser, digits_parts):
    r = audit("digits", memoriser, tmp_path / "a", canaries=60, progress=False, seed=0,
              n_synthetic=5000)
    assert r["accountant_epsilon"] == "infinity"
    assert r["epsilon_lower_bound"] > 1.0  # clearly positive: the audit sees leakage
    assert r["per_attack"]["gan_leaks"]["correct"] == r["per_attack"]["gan_leaks"]["guesses"]
    assert (tmp_path / "a" / "audit.json").exists()


def _dp_audit(tmp_path, data, canaries, config, epsilon):
    r = audit(data, "dpgan", tmp_path / "dp", epsilon=epsilon, canaries=canaries,
              config=config, progress=False, seed=0)
    assert r["private"] and r["bound_within_claim"]
    assert 0 <= r["epsilon_lower_bound"] <= r["accountant_epsilon"]
    assert "white_box" in r["per_attack"]
    return r


def test_dp_audit_never_exceeds_the_claim(tmp_path, tiny_dataset, fast_gan):
    _dp_audit(tmp_path, tiny_dataset, 20, fast_gan, 1.0)


@pytest.mark.slow
def test_dp_audit_never_exceeds_the_claim_long(tmp_path):
    _dp_audit(tmp_path, "digits", 200, {"epochs": 30, "batch_size": 128, "n_d": 2}, 1.0)
