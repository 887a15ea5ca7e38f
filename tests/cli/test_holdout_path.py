"""An official train/test split: `--holdout PATH`, a hint for the parent folder, `--name`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from privsynth.cli import main
from privsynth.data import load_dataset
from privsynth.run import Run, same_data


@pytest.fixture
def official_split(tmp_path, make_tiny, image_folder):
    d = make_tiny(n=120, k=3)
    names = ["x", "y", "z"]
    image_folder(tmp_path / "png" / "train", d.images[:90], d.labels[:90], names)
    image_folder(tmp_path / "png" / "test", d.images[90:], d.labels[90:], names)
    return tmp_path / "png" / "train", tmp_path / "png" / "test"


def test_train_on_an_official_split(tmp_path, capsys, official_split, fast_gan_flags):
    train_dir, test_dir = official_split
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--method",
                "dpgan",
                "--data",
                str(train_dir),
                "--holdout",
                str(test_dir),
                "--out",
                str(out),
                "--no-progress",
                *fast_gan_flags,
            ]
        )
        == 0
    )
    card = json.loads((out / "card.json").read_text())
    parts = json.loads((out / "split.json").read_text())  # the owner's split; the card has no count
    assert len(parts["train"]) == 90 and len(parts["holdout"]) == 30
    assert card["data"]["name"] == "png"  # not "train"
    assert card["train"]["holdout"] == str(test_dir.resolve())
    # The data check is the trainable data alone: the same as training with a random split.
    assert same_data(card["data"]["check"], load_dataset(train_dir))
    # Evaluation reloads exactly the official split.
    train, hold = Run.load(out).load_data()
    np.testing.assert_array_equal(hold.images, load_dataset(test_dir).images)
    np.testing.assert_array_equal(train.images, load_dataset(train_dir).images)
    assert "png" in capsys.readouterr().out


def test_name_flag_and_parent_hint(tmp_path, capsys, official_split, fast_gan_flags):
    train_dir, test_dir = official_split
    out = tmp_path / "named"
    assert (
        main(
            [
                "train",
                "--method",
                "dpgan",
                "--data",
                str(train_dir),
                "--holdout",
                "0.25",
                "--name",
                "Chest X-ray",
                "--out",
                str(out),
                "--no-progress",
                *fast_gan_flags,
            ]
        )
        == 0
    )
    assert Run.load(out).card["data"]["name"] == "Chest X-ray"
    assert "# dpgan on Chest X-ray" in (out / "README.md").read_text()
    capsys.readouterr()
    assert (
        main(
            [
                "train",
                "--method",
                "dpgan",
                "--data",
                str(train_dir.parent),
                "--out",
                str(tmp_path / "p"),
                *fast_gan_flags,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert f"pass --data {train_dir} --holdout {test_dir}" in err


def test_holdout_must_match_the_data(
    tmp_path, capsys, official_split, fast_gan_flags, make_tiny, image_folder
):
    train_dir, _ = official_split
    d = make_tiny(n=20, k=2)
    other = image_folder(tmp_path / "other", d.images, d.labels, ["x", "q"])
    assert (
        main(
            [
                "train",
                "--method",
                "dpgan",
                "--data",
                str(train_dir),
                "--holdout",
                str(other),
                "--out",
                str(tmp_path / "r"),
                *fast_gan_flags,
            ]
        )
        == 2
    )
    assert "pass the same --classes list for both" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
