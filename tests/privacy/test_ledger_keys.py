"""Dataset keys in the ledger: keyed by the ledger's own secret (no key reveals the data to anyone
without the ledger), taken on the records (any re-encoding or re-ordering shares one budget), and
a dataset sharing records with a budgeted one is charged against that budget too."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from privsynth.data import ImageDataset, load_dataset
from privsynth.errors import BudgetError
from privsynth.privacy import Ledger


def _fill(led: Ledger, data, budget: float = 5.0) -> None:
    """Set ``data``'s budget and spend all of it."""
    led.set_budget(data, budget, name="private", reason="test")
    seg = led.reserve(data, "private", run_id="first", epsilon=budget, delta=0.0)
    led.settle(seg, "complete", epsilon=budget, delta=0.0)


def test_dataset_key_is_keyed_by_the_ledger_secret(tmp_path, ledger_location, tiny_dataset):
    one, two = Ledger(ledger_location), Ledger(tmp_path / "other.sqlite")
    key = one.key(tiny_dataset.content)
    assert key == Ledger(ledger_location).key(tiny_dataset.content)  # stable: the secret is kept
    assert key != two.key(tiny_dataset.content)  # another ledger, another secret, another key
    plain = {
        hashlib.sha256(tiny_dataset.images.tobytes()).hexdigest(),
        hashlib.sha256(tiny_dataset.content.digest).hexdigest(),
        tiny_dataset.content.digest.hex(),
        tiny_dataset.fingerprint,
    }
    assert key not in plain
    _fill(one, tiny_dataset.content)
    assert one.datasets()[0]["fingerprint"] == key  # what `privsynth ledger` shows


def test_same_pixels_as_npz_folder_or_permuted_share_one_budget(
    tmp_path, ledger_location, tiny_dataset, image_folder_writer
):
    led = Ledger(ledger_location)
    npz = tmp_path / "tiny.npz"
    names = tiny_dataset.class_names
    np.savez(npz, images=tiny_dataset.images, labels=tiny_dataset.labels, class_names=names)
    folder = image_folder_writer(tmp_path / "png", tiny_dataset.images, tiny_dataset.labels, names)
    perm = np.random.default_rng(1).permutation(len(tiny_dataset))
    shuffled = tmp_path / "shuffled.npz"
    # rows permuted and the class indices renumbered: the class *names* stay with each image
    order = names[::-1]
    relabelled = np.array([order.index(names[k]) for k in tiny_dataset.labels[perm]])
    np.savez(shuffled, images=tiny_dataset.images[perm], labels=relabelled, class_names=order)
    _fill(led, load_dataset(npz).content)
    for copy in (folder, shuffled):
        with pytest.raises(BudgetError, match="spent epsilon 5 of the dataset's budget"):
            led.reserve(load_dataset(copy).content, "copy", run_id="again", epsilon=0.5, delta=0.0)
    assert len(led.datasets()) == 1  # one dataset, one budget


def test_a_superset_is_charged_against_the_subsets_budget(ledger_location, tiny_dataset):
    from tests.conftest import make_tiny_dataset

    led = Ledger(ledger_location)
    subset = tiny_dataset.subset(np.arange(40))
    _fill(led, subset.content)
    other = make_tiny_dataset(n=30, seed=7)
    superset = ImageDataset(
        np.concatenate([tiny_dataset.images, other.images]),
        np.concatenate([tiny_dataset.labels, other.labels]),
        tiny_dataset.class_names,
    )
    with pytest.raises(BudgetError, match=r"budget of dataset 'private' \(\w+\), which shares"):
        led.reserve(superset.content, "bigger", run_id="b", epsilon=0.5, delta=0.0)
    # a disjoint dataset keeps its own budget
    seg = led.reserve(other.content, "other", run_id="c", epsilon=0.5, delta=0.0)
    assert seg
    # and what the superset spends (forced past the budget) counts against the subset's
    led.reserve(superset.content, "bigger", run_id="d", epsilon=1.0, delta=0.0, force=True)
    assert led.spent(subset.content).epsilon == pytest.approx(6.0)
    shown = {d["name"]: d for d in led.datasets()}
    keys = {name: d["fingerprint"] for name, d in shown.items()}
    assert shown["bigger"]["shares_records_with"] == sorted([keys["private"], keys["other"]])
    assert shown["private"]["shares_records_with"] == [keys["bigger"]]
    assert shown["private"]["epsilon_charged"] == pytest.approx(6.0)
