"""`evaluate` with a holdout that is a separate set (--holdout PATH): membership inference then
measures distribution shift as well as membership, and every report says so."""

import json

import numpy as np

from privsynth.data import load_dataset
from privsynth.evaluate import evaluate
from privsynth.evaluate.pipeline import MIA_SHIFT_WARNING
from privsynth.report.markdown import summary


def _npz(path, images, labels, names):
    np.savez(path, images=images, labels=labels, class_names=names)
    return str(path)


def _evaluate(tmp_path, data, holdout, name):
    d = load_dataset("digits")
    return evaluate(
        synthetic=_npz(
            tmp_path / "synthetic.npz", d.images[600:700], d.labels[600:700], d.class_names
        ),
        data=data,
        holdout=holdout,
        out=tmp_path / name,
        n_synthetic=100,
        max_members=20,
        cache_dir=str(tmp_path / "cache"),
        classifier_passes=200,
        classifiers=("lenet",),
        progress=False,
    )


def test_membership_inference_with_a_separate_holdout_warns_of_distribution_shift(tmp_path):
    d = load_dataset("digits")
    train = _npz(tmp_path / "train.npz", d.images[:200], d.labels[:200], d.class_names)
    test = _npz(tmp_path / "test.npz", d.images[1000:1080], d.labels[1000:1080], d.class_names)
    result = _evaluate(tmp_path, train, test, "ev")
    assert result["warnings"] == [MIA_SHIFT_WARNING]
    assert result["dataset"]["holdout_random_split"] is False
    saved = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert saved["warnings"] == [MIA_SHIFT_WARNING]
    html = (tmp_path / "ev" / "report.html").read_text()
    mia = html[html.index("<h2>Membership inference</h2>") :]
    assert "distribution shift" in mia[: mia.index("<table")]  # before the attack figures
    text = summary(result)
    section = text[text.index("### Membership inference") :]
    assert "**Warning:**" in section and "distribution shift" in section


def test_random_split_holdout_has_no_shift_warning(tmp_path):
    d = load_dataset("digits")
    data = _npz(tmp_path / "all.npz", d.images[:250], d.labels[:250], d.class_names)
    result = _evaluate(tmp_path, data, 0.2, "ev")
    assert result["warnings"] == [] and result["dataset"]["holdout_random_split"] is True
    assert "distribution shift" not in summary(result)
    assert "distribution shift" not in (tmp_path / "ev" / "report.html").read_text()


def test_run_trained_with_a_separate_holdout_warns_of_distribution_shift(tmp_path, fast_gan_flags):
    from privsynth.cli import main

    d = load_dataset("digits")
    train = _npz(tmp_path / "train.npz", d.images[:200], d.labels[:200], d.class_names)
    test = _npz(tmp_path / "test.npz", d.images[1000:1080], d.labels[1000:1080], d.class_names)
    out = tmp_path / "run"
    args = ["--data", train, "--holdout", test, "--out", str(out), "--no-progress"]
    assert main(["train", "--method", "dpgan", *args, *fast_gan_flags]) == 0
    result = evaluate(
        [out],
        n_synthetic=100,
        max_members=20,
        cache_dir=str(tmp_path / "cache"),
        classifier_passes=200,
        classifiers=("lenet",),
        progress=False,
    )
    assert result["warnings"] == [MIA_SHIFT_WARNING]
