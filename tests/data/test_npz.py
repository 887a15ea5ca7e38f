"""NPZ loader: every key convention and layout, float 0-1, round trip, bad arrays."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from privsynth.data import load_dataset
from privsynth.errors import DataError

RNG = np.random.default_rng(3)
IMAGES = RNG.integers(0, 256, size=(9, 1, 5, 5), dtype=np.uint8)   # N C H W
LABELS = np.array([0, 1, 2] * 3)


@pytest.mark.parametrize("keys", [("x", "y"), ("images", "labels"),
                                  ("train_images", "train_labels")])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC", "NHW"])
def test_keys_and_layouts(tmp_path, keys, layout):
    arr = {"NCHW": IMAGES, "NHWC": IMAGES.transpose(0, 2, 3, 1), "NHW": IMAGES[:, 0]}[layout]
    np.savez(tmp_path / "d.npz", **{keys[0]: arr, keys[1]: LABELS})
    data = load_dataset(tmp_path / "d.npz")
    np.testing.assert_array_equal(data.images, IMAGES)
    np.testing.assert_array_equal(data.labels, LABELS)


def test_rgb_nhwc(tmp_path):
    rgb = RNG.integers(0, 256, size=(6, 7, 7, 3), dtype=np.uint8)
    np.savez(tmp_path / "rgb.npz", images=rgb, labels=np.array([0, 1] * 3))
    data = load_dataset(tmp_path / "rgb.npz")
    assert data.image_shape == (3, 7, 7)
    np.testing.assert_array_equal(data.images, rgb.transpose(0, 3, 1, 2))


def test_float_unit_range(tmp_path):
    np.savez(tmp_path / "f.npz", x=IMAGES.astype(np.float32) / 255.0, y=LABELS)
    data = load_dataset(tmp_path / "f.npz")
    assert data.images.dtype == np.uint8
    np.testing.assert_array_equal(data.images, IMAGES)


def test_medmnist_labels_column(tmp_path):
    np.savez(tmp_path / "m.npz", train_images=IMAGES[:, 0], train_labels=LABELS[:, None])
    np.testing.assert_array_equal(load_dataset(tmp_path / "m.npz").labels, LABELS)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(images=arrays(np.uint8, st.tuples(st.integers(2, 6), st.sampled_from([1, 3]),
                                         st.integers(1, 5), st.integers(1, 5))),
       data=st.data())
def test_roundtrip_property(tmp_path, images, data):
    n = images.shape[0]
    labels = np.array(data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    labels[:2] = [0, 1]  # at least two classes
    np.savez(tmp_path / "p.npz", images=images, labels=labels)
    loaded = load_dataset(tmp_path / "p.npz")
    np.testing.assert_array_equal(loaded.images, images)
    np.testing.assert_array_equal(loaded.labels, labels)


@pytest.mark.parametrize("where", ["images", "labels"])
def test_nan(tmp_path, where):
    images, labels = IMAGES.astype(np.float32) / 255, LABELS.astype(np.float64)
    (images if where == "images" else labels).flat[3] = np.nan
    np.savez(tmp_path / "nan.npz", x=images, y=labels)
    with pytest.raises(DataError, match="NaN") as e:
        load_dataset(tmp_path / "nan.npz")
    assert "\n" not in str(e.value)


def test_count_mismatch(tmp_path):
    np.savez(tmp_path / "c.npz", x=IMAGES, y=LABELS[:5])
    with pytest.raises(DataError, match="9 images but 5 labels"):
        load_dataset(tmp_path / "c.npz")


def test_unknown_keys(tmp_path):
    np.savez(tmp_path / "k.npz", pixels=IMAGES, classes=LABELS)
    with pytest.raises(DataError, match="expected x/y, images/labels"):
        load_dataset(tmp_path / "k.npz")


def test_single_class(tmp_path):
    np.savez(tmp_path / "one.npz", x=IMAGES, y=np.zeros(9))
    with pytest.raises(DataError, match="one class"):
        load_dataset(tmp_path / "one.npz")


def test_not_an_npz(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="cannot read NPZ"):
        load_dataset(tmp_path / "bad.npz")


def test_pickled_object_arrays_are_refused(tmp_path):
    obj = np.empty(9, dtype=object)
    obj[:] = [np.zeros((2, 2))] * 9
    np.savez(tmp_path / "obj.npz", x=obj, y=LABELS)
    with pytest.raises(DataError):
        load_dataset(tmp_path / "obj.npz")
