"""Within-class spread and the plain-words collapse flags: they fire on a collapsed synthetic
set and stay silent on real data."""

import numpy as np
import pytest

from privsynth.data import load_dataset
from privsynth.evaluate.diversity import collapse_flags, within_class_diversity


@pytest.fixture(scope="module")
def halves():
    d = load_dataset("digits")
    perm = np.random.default_rng(0).permutation(len(d))
    a, b = perm[:800], perm[800:1600]
    return (d.images[a], d.labels[a]), (d.images[b], d.labels[b]), d.class_names


def collapse(images, labels, seed=0):
    """A mode-collapsed generator: one image per class, repeated with faint pixel noise."""
    rng = np.random.default_rng(seed)
    mode = {k: images[np.flatnonzero(labels == k)[0]].astype(int) for k in np.unique(labels)}
    noisy = [np.clip(mode[k] + rng.integers(-3, 4, mode[k].shape), 0, 255) for k in labels]
    return np.stack(noisy).astype(np.uint8)


def test_real_data_is_not_flagged(halves):
    (xa, ya), (xb, yb), names = halves
    div = within_class_diversity(xa, ya, xb, yb, 10)
    assert 0.85 < div["ratio_mean"] < 1.15 and div["collapsed_classes"] == []
    floor = {"recall": 0.97, "coverage": 0.9}
    assert collapse_flags(div, floor, floor, names) == []


def test_dim_but_varied_images_are_not_taken_for_collapse(halves):
    """A DP-VAE draws varied but dim digits: the spread must not confuse brightness with variety."""
    (xa, ya), (xb, yb), _ = halves
    dim = (xb.astype(np.float64) * 0.4).round().astype(np.uint8)
    div = within_class_diversity(xa, ya, dim, yb, 10)
    assert 0.85 < div["ratio_mean"] < 1.15 and collapse_flags(div) == []


def test_collapsed_set_is_flagged_in_plain_words(halves):
    (xa, ya), (xb, yb), names = halves
    div = within_class_diversity(xa, ya, collapse(xb, yb), yb, 10)
    assert div["ratio_mean"] < 0.2 and len(div["collapsed_classes"]) == 10
    assert [c["class"] for c in div["per_class"]] == list(range(10))
    flags = collapse_flags(div, {"recall": 0.01, "coverage": 0.02}, {"recall": 0.97}, names)
    assert flags[0].startswith("mode collapse: synthetic images of a class are ")
    assert "x less varied than real ones (10 of 10 classes below half" in flags[0]
    assert flags[1].startswith("low recall") and "recall 0.010" in flags[1]


def test_one_collapsed_class_is_named(halves):
    (xa, ya), (xb, yb), names = halves
    synth = xb.copy()
    three = yb == 3
    synth[three] = collapse(xb[three], yb[three])
    div = within_class_diversity(xa, ya, synth, yb, 10)
    assert div["collapsed_classes"] == [3] and div["least_varied_class"] == 3
    (flag,) = collapse_flags(div, class_names=names)
    assert "1 of 10 classes" in flag and "class '3'" in flag


def test_noise_is_not_called_collapse_but_low_recall(halves):
    """Random pixels are "varied"; recall (what real variety is reproduced) catches them."""
    (xa, ya), (_, yb), _ = halves
    noise = np.random.default_rng(0).integers(0, 256, (len(yb), 1, 8, 8), dtype=np.uint8)
    div = within_class_diversity(xa, ya, noise, yb, 10)
    assert div["collapsed_classes"] == []
    (flag,) = collapse_flags(div, {"recall": 0.0, "coverage": 0.0}, {"recall": 0.97})
    assert flag.startswith("low recall")


def test_low_recall_without_a_real_reference_uses_an_absolute_floor():
    div = {"per_class": [], "collapsed_classes": [], "ratio_mean": 1.0}
    assert collapse_flags(div, {"recall": 0.05, "coverage": 0.1}) and not collapse_flags(
        div, {"recall": 0.5, "coverage": 0.5}
    )


def test_classes_with_too_few_images_are_skipped():
    x = np.random.default_rng(0).integers(0, 256, (6, 1, 4, 4), dtype=np.uint8)
    div = within_class_diversity(x, np.array([0, 0, 0, 1, 1, 1]), x[:4], np.array([0, 0, 0, 1]), 2)
    assert np.isnan(div["per_class"][1]["ratio"]) and div["least_varied_class"] == 0
