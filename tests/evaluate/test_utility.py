import numpy as np

from privsynth.evaluate.utility import augmentation, imbalance_split, selected_accuracy


def test_selected_accuracy_learns_and_chooses_epochs(digits_parts):
    (x, y), _, _, (xt, yt) = digits_parts
    r = selected_accuracy(x, y, xt, yt, 10, passes=1500)
    assert r["accuracy"] > 0.6 and 1 <= r["epochs"] <= 10 and len(r["per_class"]) == 10


def test_imbalance_and_augmentation(digits_parts):
    (x, y), (xs, ys), _, (xt, yt) = digits_parts
    idx, minority = imbalance_split(y, 10, keep=0.1)
    assert minority == [5, 6, 7, 8, 9]
    counts = np.bincount(y[idx], minlength=10)
    assert all(counts[k] <= max(1, int(0.1 * (y == k).sum())) for k in minority)
    r = augmentation(x, y, xs, ys, xt, yt, 10, passes=2000)
    assert r["n_synthetic_added"] > 0
    assert set(r["minority_accuracy"]) == {"imbalanced_real", "real_plus_synthetic"}
