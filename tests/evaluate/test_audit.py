import numpy as np
import pytest

from privsynth.evaluate.audit import audit, audit_dataset, make_canaries


def test_included_canaries_land_in_the_training_split(tiny_dataset):
    from privsynth.data import split

    idx, labels, included, rest = make_canaries(tiny_dataset, 20, seed=1)
    assert (labels != tiny_dataset.labels[idx]).all()  # every canary is mislabeled
    ds, n_holdout = audit_dataset(tiny_dataset, idx, labels, included, rest, 0.2, 0)
    train = split(ds, n_holdout, 0).train
    canary_rows = {tiny_dataset.images[i].tobytes() for i in idx[included]}
    in_train = {ds.images[i].tobytes() for i in train}
    assert canary_rows <= in_train and len(ds) == len(rest) + included.sum()


def test_audit_sees_a_memorising_model(tmp_path, memoriser, digits_parts):
    r = audit(
        "digits", memoriser, tmp_path / "a", canaries=60, progress=False, seed=0, n_synthetic=5000
    )
    assert not r["private"] and r["accountant_epsilon"] is None
    assert r["epsilon_lower_bound"] > 1.0  # clearly positive: the audit sees leakage
    assert r["per_attack"]["gan_leaks"]["correct"] == r["per_attack"]["gan_leaks"]["guesses"]
    assert (tmp_path / "a" / "audit.json").exists()


def _dp_audit(tmp_path, data, canaries, config, epsilon):
    r = audit(
        data,
        "dpgan",
        tmp_path / "dp",
        epsilon=epsilon,
        canaries=canaries,
        config=config,
        progress=False,
        seed=0,
    )
    assert r["private"] and r["bound_within_claim"]
    assert 0 <= r["epsilon_lower_bound"] <= r["accountant_epsilon"]
    assert "white_box" in r["per_attack"]
    return r


def test_dp_audit_never_exceeds_the_claim(tmp_path, tiny_dataset, fast_gan):
    _dp_audit(tmp_path, tiny_dataset, 20, fast_gan, 1.0)


@pytest.mark.slow
def test_dp_audit_never_exceeds_the_claim_long(tmp_path):
    _dp_audit(tmp_path, "digits", 200, {"epochs": 30, "batch_size": 128, "n_d": 2}, 1.0)


def _numbered_dataset(n: int = 200):
    """Every image carries its own index in its first two pixels: rows can be traced back."""
    from privsynth.data import ImageDataset

    images = np.zeros((n, 1, 8, 8), np.uint8)
    images[:, 0, 0, 0], images[:, 0, 0, 1] = np.arange(n) % 256, np.arange(n) // 256
    return ImageDataset(images, np.arange(n) % 3, ["a", "b", "c"], name="numbered")


def test_non_canary_training_set_does_not_depend_on_which_canaries_are_included(monkeypatch):
    """Steinke-Nasr-Jagielski: between the audit's possible worlds only the canaries change, so
    the images the trainer trains on, canaries aside, must be the same for every inclusion draw."""
    import privsynth.evaluate.audit as audit_module
    import privsynth.orchestrate.trainer
    from privsynth.data import split

    data = _numbered_dataset()
    idx = np.arange(0, 40, 2)  # 20 canaries
    canary_labels = (data.labels[idx] + 1) % 3

    class Captured(Exception):
        pass

    def trained_on(included):
        monkeypatch.setattr(
            audit_module,
            "make_canaries",
            lambda ds, count, seed: (
                idx,
                canary_labels,
                included,
                np.setdiff1d(np.arange(len(ds)), idx),
            ),
        )
        seen = {}

        def fake_train(request):
            data = request.data
            seen.update(dataset=data.source, holdout=data.holdout, split_seed=data.split_seed)
            raise Captured

        monkeypatch.setattr(privsynth.orchestrate.trainer, "train", fake_train)
        with pytest.raises(Captured):
            audit(data, "dpgan", "unused", canaries=len(idx), progress=False)
        ds = seen["dataset"]
        train = split(ds, seen["holdout"], seen["split_seed"]).train
        rows = ds.images[train, 0, 0, 0].astype(int) + 256 * ds.images[train, 0, 0, 1].astype(int)
        assert set(idx[included]) <= set(rows.tolist())  # the included canaries are trained on
        return set(rows.tolist()) - set(idx.tolist())

    rng = np.random.default_rng(0)
    worlds = [np.zeros(20, bool), np.ones(20, bool), rng.random(20) < 0.5, rng.random(20) < 0.5]
    base = trained_on(worlds[0])
    assert len(base) == 144  # 180 non-canaries, 20% held out
    for included in worlds[1:]:
        assert trained_on(included) == base
