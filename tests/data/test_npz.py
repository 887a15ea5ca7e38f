"""NPZ loader: every key convention and layout, declared pixel range and class list, round trip,
bad arrays and files."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from privsynth.data import load_dataset
from privsynth.errors import ConfigError, DataError

RNG = np.random.default_rng(3)
IMAGES = RNG.integers(0, 256, size=(9, 1, 5, 5), dtype=np.uint8)  # N C H W
LABELS = np.array([0, 1, 2] * 3)


@pytest.mark.parametrize(
    "keys", [("x", "y"), ("images", "labels"), ("train_images", "train_labels")]
)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC", "NHW"])
def test_keys_and_layouts(tmp_path, keys, layout):
    arr = {"NCHW": IMAGES, "NHWC": IMAGES.transpose(0, 2, 3, 1), "NHW": IMAGES[:, 0]}[layout]
    np.savez(tmp_path / "d.npz", **{keys[0]: arr, keys[1]: LABELS})
    data = load_dataset(tmp_path / "d.npz", classes=3)
    np.testing.assert_array_equal(data.images, IMAGES)
    np.testing.assert_array_equal(data.labels, LABELS)


def test_rgb_nhwc(tmp_path):
    rgb = RNG.integers(0, 256, size=(6, 7, 7, 3), dtype=np.uint8)
    np.savez(tmp_path / "rgb.npz", images=rgb, labels=np.array([0, 1] * 3))
    data = load_dataset(tmp_path / "rgb.npz", classes=2, channels=3)
    assert data.image_shape == (3, 7, 7)
    np.testing.assert_array_equal(data.images, rgb.transpose(0, 3, 1, 2))


def test_rgb_needs_declared_channels(tmp_path):
    rgb = RNG.integers(0, 256, size=(6, 7, 7, 3), dtype=np.uint8)
    np.savez(tmp_path / "rgb.npz", images=rgb, labels=np.array([0, 1] * 3))
    with pytest.raises(DataError, match="--channels 3"):
        load_dataset(tmp_path / "rgb.npz", classes=2)
    gray = load_dataset(tmp_path / "rgb.npz", classes=2, channels=1)  # explicit: luminance
    assert gray.image_shape == (1, 7, 7)


def test_float_unit_range(tmp_path):
    np.savez(tmp_path / "f.npz", x=IMAGES.astype(np.float32) / 255.0, y=LABELS)
    data = load_dataset(tmp_path / "f.npz", classes=3)
    assert data.images.dtype == np.uint8
    np.testing.assert_array_equal(data.images, IMAGES)


def test_float_scale_is_declared_not_guessed(tmp_path):
    # One bright pixel used to switch every image from x255 to x1: the range is now an input.
    x = IMAGES.astype(np.float32)
    np.savez(tmp_path / "f.npz", x=x, y=LABELS)
    with pytest.raises(DataError, match="outside the format range 0..1.*--pixel-range"):
        load_dataset(tmp_path / "f.npz", classes=3)
    data = load_dataset(tmp_path / "f.npz", classes=3, pixel_range=(0, 255))
    np.testing.assert_array_equal(data.images, IMAGES)
    dim = load_dataset(tmp_path / "f.npz", classes=3, pixel_range=(0, 510))
    np.testing.assert_array_equal(dim.images, np.rint(IMAGES / 2).astype(np.uint8))


def test_uint16_scaled_by_its_range(tmp_path):
    ramp = np.arange(9 * 25, dtype=np.uint16).reshape(9, 5, 5) * 291  # up to 65,184
    np.savez(tmp_path / "u16.npz", x=ramp, y=LABELS)
    data = load_dataset(tmp_path / "u16.npz", classes=3)
    np.testing.assert_array_equal(data.images[:, 0], np.rint(ramp / 257).astype(np.uint8))


def test_medmnist_labels_column(tmp_path):
    np.savez(tmp_path / "m.npz", train_images=IMAGES[:, 0], train_labels=LABELS[:, None])
    np.testing.assert_array_equal(load_dataset(tmp_path / "m.npz", classes=3).labels, LABELS)


def test_class_list_is_declared_or_stored_never_read_from_labels(tmp_path):
    np.savez(tmp_path / "l.npz", x=IMAGES, y=LABELS)
    with pytest.raises(DataError, match="class list is a public input.*--classes"):
        load_dataset(tmp_path / "l.npz")
    # A class no image carries stays in the declared list (one record cannot remove it) ...
    assert load_dataset(tmp_path / "l.npz", classes=4).class_names == ["0", "1", "2", "3"]
    named = load_dataset(tmp_path / "l.npz", classes=("cat", "dog", "eel"))
    assert named.class_names == ["cat", "dog", "eel"]
    # ... and a label outside it stops loading instead of adding a class.
    with pytest.raises(DataError, match="outside 0..1"):
        load_dataset(tmp_path / "l.npz", classes=2)
    np.savez(tmp_path / "s.npz", x=IMAGES, y=LABELS, class_names=["a", "b", "c"])
    assert load_dataset(tmp_path / "s.npz").class_names == ["a", "b", "c"]


def test_string_labels_are_names(tmp_path):
    np.savez(tmp_path / "t.npz", x=IMAGES, y=np.array(["no", "yes", "no"] * 3))
    data = load_dataset(tmp_path / "t.npz", classes=("no", "yes"))
    assert data.labels.tolist() == [0, 1, 0] * 3
    with pytest.raises(DataError, match=r"\['yes'\] are not in the class list"):
        load_dataset(tmp_path / "t.npz", classes=("no", "maybe"))


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    images=arrays(
        np.uint8,
        st.tuples(st.integers(2, 6), st.sampled_from([1, 3]), st.integers(1, 5), st.integers(1, 5)),
    ),
    data=st.data(),
)
def test_roundtrip_property(tmp_path, images, data):
    n = images.shape[0]
    labels = np.array(data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    labels[:2] = [0, 1]  # at least two classes
    np.savez(tmp_path / "p.npz", images=images, labels=labels)
    loaded = load_dataset(tmp_path / "p.npz", classes=2, channels=images.shape[1])
    np.testing.assert_array_equal(loaded.images, images)
    np.testing.assert_array_equal(loaded.labels, labels)


@pytest.mark.parametrize("where", ["images", "labels"])
def test_nan(tmp_path, where):
    images, labels = IMAGES.astype(np.float32) / 255, LABELS.astype(np.float64)
    (images if where == "images" else labels).flat[3] = np.nan
    np.savez(tmp_path / "nan.npz", x=images, y=labels)
    with pytest.raises(DataError, match="NaN") as e:
        load_dataset(tmp_path / "nan.npz", classes=3)
    assert "\n" not in str(e.value)


def test_count_mismatch(tmp_path):
    np.savez(tmp_path / "c.npz", x=IMAGES, y=LABELS[:5])
    with pytest.raises(DataError, match="9 images but 5 labels"):
        load_dataset(tmp_path / "c.npz", classes=3)


def test_unknown_keys(tmp_path):
    np.savez(tmp_path / "k.npz", pixels=IMAGES, classes=LABELS)
    with pytest.raises(DataError, match="expected x/y, images/labels"):
        load_dataset(tmp_path / "k.npz")


def test_single_class(tmp_path):
    np.savez(tmp_path / "one.npz", x=IMAGES, y=np.zeros(9), class_names=["only"])
    with pytest.raises(DataError, match="one class"):
        load_dataset(tmp_path / "one.npz")
    with pytest.raises(ConfigError, match="need >= 2 classes"):
        load_dataset(tmp_path / "one.npz", classes=1)


@pytest.mark.parametrize("content", [b"", b"not a zip file", bytes(range(256)) * 4])
def test_not_an_npz(tmp_path, content):
    # Random bytes used to reach numpy's pickle fallback ("allow_pickle=False"): say what it is.
    (tmp_path / "bad.npz").write_bytes(content)
    with pytest.raises(DataError, match="not an NPZ archive.*numpy.savez") as e:
        load_dataset(tmp_path / "bad.npz")
    assert "pickle" not in str(e.value)


def test_empty_archive(tmp_path):
    np.savez(tmp_path / "none.npz")
    with pytest.raises(DataError, match="found keys \\[\\]"):
        load_dataset(tmp_path / "none.npz")
    np.savez(tmp_path / "zero.npz", x=np.zeros((0, 4, 4), np.uint8), y=np.zeros(0))
    with pytest.raises(DataError, match="holds no images"):
        load_dataset(tmp_path / "zero.npz", classes=2)


def test_pickled_object_arrays_are_refused(tmp_path):
    obj = np.empty(9, dtype=object)
    obj[:] = [np.zeros((2, 2))] * 9
    np.savez(tmp_path / "obj.npz", x=obj, y=LABELS)
    with pytest.raises(DataError):
        load_dataset(tmp_path / "obj.npz", classes=3)
