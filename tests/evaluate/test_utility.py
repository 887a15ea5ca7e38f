"""The utility protocol: fixed schedule, both classifiers, n synthetic honoured, and a trained
model that cannot depend on the holdout."""

import numpy as np
import pytest
import torch

from privsynth.errors import ConfigError
from privsynth.evaluate import utility
from privsynth.evaluate.classifier import fixed_epochs, random_shift
from privsynth.evaluate.utility import (
    augmentation,
    balanced_labels,
    balanced_subset,
    imbalance_split,
    trtr,
    tstr,
)


@pytest.mark.parametrize("classifier", ["lenet", "resnet"])
def test_both_classifiers_learn_with_the_fixed_schedule(digits_parts, classifier):
    (x, y), _, _, (xt, yt) = digits_parts
    r = tstr(x, y, xt, yt, 10, classifier=classifier, passes=1500)
    assert r["accuracy"] > 0.6 and r["classifier"] == classifier and len(r["per_class"]) == 10
    assert r["epochs"] == fixed_epochs(300, 1500) == 5 and r["images_seen"] == 1500
    assert r["n_train"] == 300 and r["n_test"] == 300 and "last epoch" in r["selection"]


def test_every_synthetic_image_is_used_at_least_once():
    assert fixed_epochs(60_000, 12_000) == 1 and fixed_epochs(8_000, 12_000) == 2
    assert fixed_epochs(100, 12_000, hi=20) == 20  # capped


def test_unknown_classifier_names_the_choices(digits_parts):
    (x, y), _, _, (xt, yt) = digits_parts
    with pytest.raises(ConfigError, match="choose from"):
        tstr(x, y, xt, yt, 10, classifier="vgg")


def test_trained_model_never_depends_on_the_holdout(digits_parts, monkeypatch):
    """Spy on training and prediction: the classifier is trained on the synthetic images alone
    (never on memory shared with the holdout), the holdout is read once, after training, and a
    different holdout (other images, shuffled labels) leaves the trained weights bit-identical."""
    (xs, ys), _, (xa, ya), (xb, yb) = digits_parts
    calls, models = [], []
    real_train, real_predict = utility.train_fixed, utility.predict

    def spy_train(images, labels, *a, **kw):
        calls.append(("train", images, labels))
        models.append(real_train(images, labels, *a, **kw))
        return models[-1]

    def spy_predict(model, images):
        calls.append(("predict", images, None))
        return real_predict(model, images)

    monkeypatch.setattr(utility, "train_fixed", spy_train)
    monkeypatch.setattr(utility, "predict", spy_predict)
    for holdout, labels in ((xa, ya), (xb, np.random.default_rng(1).permutation(yb))):
        calls.clear()
        tstr(xs, ys, holdout, labels, 10, passes=600)
        assert [c[0] for c in calls] == ["train", "predict"]
        _, train_x, train_y = calls[0]
        assert train_x is xs and train_y is ys
        assert not np.shares_memory(train_x, holdout) and calls[1][1] is holdout
    first, second = (m.state_dict() for m in models)
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_collapsed_set_gets_the_same_schedule_as_a_varied_one(digits_parts):
    """No validation split to be fooled by: the schedule depends on the set's size alone."""
    (x, y), _, _, (xt, yt) = digits_parts
    collapsed = np.stack([x[np.flatnonzero(y == k)[0]] for k in y])
    a = tstr(x, y, xt, yt, 10, passes=900)
    b = tstr(collapsed, y, xt, yt, 10, passes=900)
    assert (a["epochs"], a["images_seen"]) == (b["epochs"], b["images_seen"])
    assert a["accuracy"] > b["accuracy"]  # one image per class generalises worse
    ref = trtr(x, y, xt, yt, 10, passes=900)
    assert ref["epochs"] == a["epochs"] and ref["classifier"] == "lenet"


def test_balanced_labels_and_subset():
    labels = balanced_labels(1003, 10, seed=3)
    counts = np.bincount(labels, minlength=10)
    assert len(labels) == 1003 and counts.max() - counts.min() <= 1
    skewed = np.r_[np.zeros(500, np.int64), np.ones(50, np.int64), np.full(50, 2)]
    idx = balanced_subset(skewed, 120, 3)
    assert len(idx) == 120 and np.bincount(skewed[idx]).tolist() == [40, 40, 40]
    assert len(balanced_subset(skewed, 10_000, 3)) == 600  # never more than there is


def test_random_shift_moves_images_and_fills_black():
    x = torch.arange(2 * 25, dtype=torch.float32).reshape(2, 1, 5, 5)
    y = random_shift(x, 1, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and not torch.equal(x, y)
    for a, b in zip(x, y, strict=True):
        rows = [
            r
            for r in range(-1, 2)
            for c in range(-1, 2)
            if torch.equal(
                b[0, max(0, r) : 5 + min(0, r), max(0, c) : 5 + min(0, c)],
                a[0, max(0, -r) : 5 - max(0, r), max(0, -c) : 5 - max(0, c)],
            )
        ]
        assert rows and (b == -1).sum() in (0, 5, 9)


def test_imbalance_and_augmentation(digits_parts):
    (x, y), (xs, ys), _, (xt, yt) = digits_parts
    idx, minority = imbalance_split(y, 10, keep=0.1)
    assert minority == [5, 6, 7, 8, 9]
    counts = np.bincount(y[idx], minlength=10)
    assert all(counts[k] <= max(1, int(0.1 * (y == k).sum())) for k in minority)
    r = augmentation(x, y, xs, ys, xt, yt, 10, passes=1000)
    assert r["n_synthetic_added"] > 0
    assert set(r["minority_accuracy"]) == {"imbalanced_real", "real_plus_synthetic"}
    assert r["real_plus_synthetic"]["selection"] == utility.PROTOCOL
