"""`privsynth sample`: a PNG folder the folder loader reads back, or an .npz."""

from __future__ import annotations

import numpy as np

from privsynth.cli import main
from privsynth.data import load_dataset


def test_sample_png_folder_loads_back(tmp_path, trained_run, capsys):
    out = tmp_path / "synth"
    assert (
        main(
            [
                "sample",
                str(trained_run["out"]),
                "-n",
                "12",
                "--out",
                str(out),
                "--labels",
                "0,2",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    assert "wrote 12 images" in capsys.readouterr().out
    back = load_dataset(out)
    assert back.images.shape == (12, 1, 8, 8)
    # Only the drawn classes get a sub-folder: the folder loader refuses empty class folders.
    assert sorted(p.name for p in out.iterdir()) == ["0", "2"]
    assert back.class_names == ["0", "2"] and back.class_counts().tolist() == [6, 6]


def test_sample_npz(tmp_path, trained_run):
    out = tmp_path / "synth.npz"
    assert main(["sample", str(trained_run["out"]), "-n", "9", "--out", str(out)]) == 0
    with np.load(out, allow_pickle=False) as z:
        assert z["images"].shape == (9, 1, 8, 8) and z["images"].dtype == np.uint8
        assert z["class_names"].tolist() == ["0", "1", "2"]
        labels = z["labels"]
    back = load_dataset(out)
    assert len(back) == 9 and set(labels.tolist()) <= {0, 1, 2}


def test_sample_same_seed_same_images(tmp_path, trained_run):
    for name in ("a.npz", "b.npz"):
        assert (
            main(
                [
                    "sample",
                    str(trained_run["out"]),
                    "-n",
                    "5",
                    "--seed",
                    "7",
                    "--out",
                    str(tmp_path / name),
                ]
            )
            == 0
        )
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    np.testing.assert_array_equal(a["images"], b["images"])


def test_sample_errors(tmp_path, trained_run, capsys):
    assert main(["sample", str(tmp_path), "-n", "5", "--out", str(tmp_path / "x.npz")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(["sample", str(trained_run["out"]), "-n", "0", "--out", str(tmp_path / "y")]) == 2
    assert "argument -n: must be >= 1" in capsys.readouterr().err
    assert (
        main(
            [
                "sample",
                str(trained_run["out"]),
                "-n",
                "3",
                "--labels",
                "9",
                "--out",
                str(tmp_path / "z"),
            ]
        )
        == 2
    )
    assert "not a class of this run" in capsys.readouterr().err
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    assert main(["sample", str(trained_run["out"]), "-n", "3", "--out", str(full)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert not (tmp_path / "y").exists() and not (tmp_path / "z").exists()
