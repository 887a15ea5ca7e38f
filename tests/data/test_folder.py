"""Image-folder loader: one sub-folder per class, PNG/JPEG, grayscale/RGB, resizing, bad folders."""

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
    data = load_dataset(root)
    assert data.images.shape == (9, 3, 6, 6)
    assert data.class_counts().tolist() == [3, 3, 3]


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
    with pytest.raises(DataError, match="no PNG/JPEG images"):
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
