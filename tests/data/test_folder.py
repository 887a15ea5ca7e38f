"""Image-folder loader: one sub-folder per class, PNG/JPEG, grayscale/RGB as a declared input,
declared class lists, split folders, names, resizing, bad folders."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from privsynth.data import load_dataset
from privsynth.errors import DataError


def make_folder(root, classes=("cat", "dog"), per_class=3, size=(6, 6), mode="L", ext=".png"):
    rng = np.random.default_rng(4)
    shape = size[::-1] if mode == "L" else (*size[::-1], 3)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, shape, dtype=np.uint8)
            Image.fromarray(pixels, mode).save(root / c / f"{i}{ext}")
    return root


def test_grayscale_png(tmp_path):
    root = make_folder(tmp_path / "gray")
    data = load_dataset(root)
    assert data.images.shape == (6, 1, 6, 6)
    assert data.class_names == ["cat", "dog"]
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    expected = np.asarray(Image.open(root / "dog" / "1.png"))
    np.testing.assert_array_equal(data.images[4, 0], expected)


def test_rgb_jpeg(tmp_path):
    root = make_folder(tmp_path / "rgb", mode="RGB", ext=".jpg", classes=("a", "b", "c"))
    data = load_dataset(root, channels=3)
    assert data.images.shape == (9, 3, 6, 6)
    assert data.class_counts().tolist() == [3, 3, 3]


def test_one_colour_image_does_not_change_the_architecture(tmp_path):
    # It used to turn the whole folder RGB (3-channel model); now the channel count is declared.
    root = make_folder(tmp_path / "g")
    Image.fromarray(np.full((6, 6, 3), [200, 10, 10], np.uint8), "RGB").save(root / "cat" / "x.png")
    with pytest.raises(DataError, match="x.png: 1 colour image.*--channels 3"):
        load_dataset(root)
    assert load_dataset(root, channels=1).image_shape == (1, 6, 6)  # explicit: to gray
    assert load_dataset(root, channels=3).image_shape == (3, 6, 6)


def test_gray_saved_as_rgb_is_grayscale(tmp_path):
    root = make_folder(tmp_path / "g", mode="RGB")
    for f in root.rglob("*.png"):
        a = np.asarray(Image.open(f))
        Image.fromarray(np.repeat(a[..., :1], 3, axis=2), "RGB").save(f)
    assert load_dataset(root).image_shape == (1, 6, 6)


def test_declared_classes(tmp_path):
    root = make_folder(tmp_path / "f")
    data = load_dataset(root, classes=("dog", "cat", "eel"))  # order and an absent class kept
    assert data.class_names == ["dog", "cat", "eel"]
    assert data.class_counts().tolist() == [3, 3, 0]
    with pytest.raises(DataError, match=r"\['dog'\] are not in --classes"):
        load_dataset(root, classes=("cat", "eel"))


def test_split_folders_get_a_hint(tmp_path):
    make_folder(tmp_path / "png" / "train")
    make_folder(tmp_path / "png" / "test")
    with pytest.raises(
        DataError, match="splits test/, train/ — not classes; pass --data .*train --holdout .*test"
    ):
        load_dataset(tmp_path / "png")


def test_name_defaults_to_the_parent_of_a_split_folder(tmp_path):
    make_folder(tmp_path / "chest-xray" / "train")
    assert load_dataset(tmp_path / "chest-xray" / "train").name == "chest-xray"
    assert load_dataset(make_folder(tmp_path / "scans")).name == "scans"
    assert load_dataset(tmp_path / "scans", name="My scans").name == "My scans"


def test_mixed_sizes_need_image_size(tmp_path):
    root = make_folder(tmp_path / "mixed", classes=("a",), size=(6, 6))
    make_folder(root, classes=("b",), size=(9, 7))
    with pytest.raises(DataError, match="--image-size"):
        load_dataset(root)
    data = load_dataset(root, image_size=8)
    assert data.images.shape == (6, 1, 8, 8)


def test_image_size_resizes_uniform_folder(tmp_path):
    data = load_dataset(make_folder(tmp_path / "f", size=(16, 16)), image_size=8)
    assert data.image_shape == (1, 8, 8)


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match="does not exist; pass 'digits'"):
        load_dataset(tmp_path / "nope")


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="0 class sub-folder"):
        load_dataset(tmp_path / "empty")


def test_class_folders_without_images(tmp_path):
    (tmp_path / "e" / "a").mkdir(parents=True)
    (tmp_path / "e" / "b").mkdir()
    with pytest.raises(DataError, match="no PNG/JPEG/TIFF/DICOM images"):
        load_dataset(tmp_path / "e")


def test_one_empty_class(tmp_path):
    root = make_folder(tmp_path / "f")
    (root / "zebra").mkdir()
    with pytest.raises(DataError, match=r"\['zebra'\] hold no images"):
        load_dataset(root)


def test_single_class_folder(tmp_path):
    root = make_folder(tmp_path / "one", classes=("only",))
    with pytest.raises(DataError, match="1 class sub-folder.*need >= 2"):
        load_dataset(root)


def test_corrupt_image(tmp_path):
    root = make_folder(tmp_path / "c")
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match="broken.png: corrupt.*fix or remove") as e:
        load_dataset(root)
    assert "\n" not in str(e.value)


def test_unknown_file_format(tmp_path):
    (tmp_path / "data.csv").write_text("1,2,3\n")
    with pytest.raises(DataError, match="unknown data format"):
        load_dataset(tmp_path / "data.csv")
