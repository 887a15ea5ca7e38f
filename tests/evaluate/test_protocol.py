"""`evaluate` end to end on a collapsed synthetic set: n synthetic honoured class-balanced, both
classifiers side by side, collapse flagged next to the Fréchet figures (metrics, Markdown, HTML)
and not on the real floor, and no classifier ever trained on a holdout image."""

import json

import numpy as np

from privsynth.data import load_dataset, split
from privsynth.evaluate import evaluate, utility
from privsynth.report.markdown import summary


def test_evaluate_flags_collapse_and_reports_both_classifiers(tmp_path, monkeypatch):
    d = load_dataset("digits")
    data = d.subset(np.arange(400), name="digits-400")
    parts = split(data, 0.2, 0)
    train, hold = data.subset(parts.train), data.subset(parts.holdout)
    # collapsed "generator": every image of a class is the same training image (333 of them)
    labels = np.arange(333) % 10
    first = {k: train.images[np.flatnonzero(train.labels == k)[0]] for k in range(10)}
    np.savez(tmp_path / "collapsed.npz", images=np.stack([first[k] for k in labels]), labels=labels)

    holdout_rows = {x.tobytes() for x in hold.images} - {x.tobytes() for x in train.images}
    trained_on = []
    real_train_fixed = utility.train_fixed

    def spy(images, labels, *a, **kw):
        trained_on.append((kw.get("classifier", a[1] if len(a) > 1 else "lenet"), len(images)))
        assert not np.shares_memory(images, hold.images)
        assert not holdout_rows & {x.tobytes() for x in images}, "trained on a holdout image"
        return real_train_fixed(images, labels, *a, **kw)

    monkeypatch.setattr(utility, "train_fixed", spy)
    out = tmp_path / "ev"
    result = evaluate(
        synthetic=str(tmp_path / "collapsed.npz"),
        data=data,
        out=out,
        n_synthetic=200,
        max_members=30,
        cache_dir=str(tmp_path / "cache"),
        classifier_passes=800,
        progress=False,
    )

    (m,) = result["models"]
    assert m["n_synthetic"] == 200  # n honoured, class-balanced
    u = m["utility"]
    assert set(u["tstr"]) == set(u["trtr"]) == {"lenet", "resnet"}
    assert u["tstr"]["resnet"]["n_train"] == 200 and u["trtr"]["lenet"]["n_train"] == len(train)
    assert all(
        r["selection"] == utility.PROTOCOL for r in (*u["tstr"].values(), *u["trtr"].values())
    )
    # TRTR x2, TSTR x2, augmentation (imbalanced real, real + synthetic): six trainings
    assert {(c, n) for c in ("lenet", "resnet") for n in (200, 320)} <= set(trained_on)
    assert len(trained_on) == 6

    assert m["fidelity"]["diversity"]["ratio_mean"] < 0.1
    assert m["collapse_flags"][0].startswith("mode collapse")
    assert result["real_floor"]["collapse_flags"] == []  # real vs real: nothing flagged
    assert result["real_floor"]["diversity"]["collapsed_classes"] == []

    text = summary(result)
    assert "within-class spread syn/real" in text and "mode collapse: synthetic images" in text
    assert "| TSTR LeNet | TSTR ResNet | TRTR LeNet | TRTR ResNet |" in text
    html = (out / "report.html").read_text()
    assert "mode collapse: synthetic images of a class are (nearly) all the same image" in html
    assert "TSTR ResNet" in html
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["format"] == "privsynth-evaluation/2"
    assert saved["models"][0]["collapse_flags"] == m["collapse_flags"]
    # the fidelity space is named in the file: grey images keep the LeNet space
    assert saved["feature_space"]["name"] == "lenet"
    assert saved["feature_space"]["version"].startswith("fidelity-space/")
