import numpy as np
import pytest

from privsynth.data import load_dataset
from privsynth.errors import ConfigError
from privsynth.federated.partition import dirichlet, iid, label_histogram, partition


def _labels(n=1000, k=10, seed=0):
    return np.random.default_rng(seed).integers(0, k, n)


def test_iid_is_a_disjoint_cover():
    labels = _labels()
    parts = iid(labels, 5, seed=1)
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == list(range(len(labels)))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_dirichlet_is_disjoint_seeded_and_skewed():
    labels = _labels()
    a = dirichlet(labels, 5, alpha=0.3, seed=3)
    assert sorted(np.concatenate(a).tolist()) == list(range(len(labels)))
    assert all(len(p) >= 10 for p in a)
    b = dirichlet(labels, 5, alpha=0.3, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=False))

    def top_class_share(parts):
        return np.mean([np.bincount(labels[p], minlength=10).max() / len(p) for p in parts])

    # label skew: an owner's most common class dominates far more than under IID
    assert top_class_share(a) > top_class_share(iid(labels, 5, seed=3)) + 0.1


def test_partition_of_a_dataset_keeps_images_and_labels():
    data = load_dataset("digits")
    owners = partition(data, 3, "dirichlet", alpha=0.5, seed=0)
    assert sum(len(o) for o in owners) == len(data)
    hist = np.asarray(label_histogram(owners))
    assert np.array_equal(hist.sum(0), data.class_counts())


@pytest.mark.parametrize("kwargs", [dict(n_owners=0), dict(n_owners=5000)])
def test_bad_owner_counts_name_the_fix(kwargs):
    with pytest.raises(ConfigError, match="clients"):
        iid(_labels(), **kwargs)


def test_bad_alpha_and_scheme():
    with pytest.raises(ConfigError, match="alpha"):
        dirichlet(_labels(), 3, alpha=0)
    with pytest.raises(ConfigError, match="scheme"):
        partition(load_dataset("digits"), 3, "shards")
