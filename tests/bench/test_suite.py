"""bench/suite.py at smoke size on the embedded digits: the split is drawn once and disjoint,
validation runs never read the holdout, a dirty tree is refused, a holdout cell is scored once,
and the generated table's mean / sd are the rows'."""

from __future__ import annotations

import json
import statistics
import subprocess
from pathlib import Path

import numpy as np
import pytest

from .test_bench_smoke import load

TINY = [
    "--methods", "dpmerf", "--epsilons", "10", "--n-synthetic", "60", "--passes", "240",
    "--n-fidelity", "60", "--in-process",
]  # fmt: skip
SET = ["--set", "dpmerf:steps=5", "--set", "dpmerf:n_features=16", "--set", "dpmerf:g_width=8",
       "--set", "dpmerf:z_dim=8", "--set", "dpmerf:batch_size=30"]  # fmt: skip


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    """A committed git work tree standing in for the project's (its state is what rows name)."""
    r = tmp_path / "repo"
    r.mkdir()
    _git(r, "init", "-q")
    (r / "code.py").write_text("x = 1\n")
    _git(r, "add", "-A")
    _git(r, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "c")
    return r


def test_suite_protocol_split_validation_holdout_once_and_table(
    tmp_path, repo, capsys, monkeypatch
):
    suite = load("suite")
    scored_sets = []  # every set the evaluation reads as its real test data
    real_reference = suite.utility.Reference

    def spy(train, hold, *a, **kw):
        scored_sets.append(hold.images)
        return real_reference(train, hold, *a, **kw)

    monkeypatch.setattr(suite.utility, "Reference", spy)
    res, out = repo / "results", tmp_path / "runs"  # rows written in the tree do not dirty it
    common = ["--dataset", "digits", "--results", str(res), "--out", str(out), "--repo", str(repo)]
    common += TINY

    # a dirty tree is refused before anything is written
    (repo / "code.py").write_text("x = 2\n")
    assert suite.main([*common, *SET, "--seeds", "0"]) == 2
    assert "uncommitted changes" in capsys.readouterr().err
    assert not res.exists()
    _git(repo, "checkout", "code.py")

    # validation runs: two seeds
    assert suite.main([*common, *SET, "--seeds", "0,1"]) == 0
    split = json.loads((res / "splits" / "digits.json").read_text())
    parts = {k: set(split[k]) for k in ("train", "validation", "holdout")}
    assert not parts["train"] & parts["validation"] and not parts["train"] & parts["holdout"]
    assert not parts["validation"] & parts["holdout"]
    assert sum(map(len, parts.values())) == 1797 and split["split_seed"] == suite.SPLIT_SEED
    assert split["protocol"] == suite.PROTOCOL
    before = (res / "splits" / "digits.json").read_bytes()
    d = suite.load("digits")
    assert suite.splits("digits", d, res) == split  # read back, never redrawn
    assert (res / "splits" / "digits.json").read_bytes() == before

    rows = suite.read_rows(res, "validation")
    assert sorted(r["seed"] for r in rows) == [0, 1]
    hold_sha = suite._indices_sha(split["holdout"])
    for r in rows:  # scored on the validation rows, never the holdout's
        assert r["scored_on"]["split"] == "validation"
        assert r["scored_on"]["indices_sha256"] == suite._indices_sha(split["validation"])
        assert r["scored_on"]["indices_sha256"] != hold_sha
        assert len(r["commit"]) == 40 and r["dirty"] is False
        assert r["config"]["steps"] == 5 and r["protocol"] == suite.PROTOCOL
        assert r["split_seed"] == suite.SPLIT_SEED and "cpu_count" in r["machine"]
    # training saw private-train + validation only: its data files hold no holdout image
    hold_imgs = {x.tobytes() for x in d.images[split["holdout"]]}
    seen = [np.load(p)["x"] for p in (out / "data").glob("digits-*.npz")]
    assert len(seen) == 2
    train_val_imgs = {x.tobytes() for i in ("train", "validation") for x in d.images[split[i]]}
    assert not ({x.tobytes() for s in seen for x in s} & (hold_imgs - train_val_imgs))

    only_holdout = hold_imgs - train_val_imgs
    assert len(scored_sets) == 2
    assert all(not ({x.tobytes() for x in imgs} & only_holdout) for imgs in scored_sets)

    # the table: mean / sd over the two seeds
    table = suite.markdown(rows)
    tstr = [r["tstr"]["lenet"] for r in rows]
    line = next(x for x in table.splitlines() if "| digits | dpmerf |" in x)
    assert f"{statistics.fmean(tstr):.3f} ± {statistics.stdev(tstr):.3f}" in line
    recall = [r["prdc"]["recall"] for r in rows]
    assert f"{statistics.fmean(recall):.3f} ± {statistics.stdev(recall):.3f}" in line

    # freeze, score the holdout once; a second scoring of the same cell is refused
    assert suite.main([*common, *SET, "--freeze", "v1"]) == 0
    hold = [*common, "--score", "holdout", "--defaults", "v1", "--seeds", "0"]
    assert suite.main(hold) == 0
    assert {x.tobytes() for x in scored_sets[-1]} >= only_holdout  # this one reads it
    (h,) = suite.read_rows(res, "holdout")
    assert h["scored_on"]["indices_sha256"] == hold_sha and h["defaults"] == "v1"
    assert h["config"] == rows[0]["config"]
    capsys.readouterr()
    assert suite.main(hold) == 2
    assert "holdout already scored" in capsys.readouterr().err
    assert len(suite.read_rows(res, "holdout")) == 1

    # a dirty row is written only when asked, and the table refuses it unless labelled
    (repo / "code.py").write_text("x = 3\n")
    assert suite.main([*common, *SET, "--seeds", "1", "--allow-dirty"]) == 0
    rows = suite.read_rows(res, "validation")
    assert sum(r["dirty"] for r in rows) == 1 and len(rows) == 3
    with pytest.raises(suite.SuiteError, match="dirty work tree"):
        suite.markdown(rows)
    assert "(dirty)" in suite.markdown(rows, allow_dirty=True)


def test_suite_public_data_names_its_cell_and_row_and_stays_off_the_holdout(tmp_path, repo, capsys):
    """--public-data METHOD=PATH pretrains that method's cells (train's --public-data): the row
    records the set, the cell and row names differ from the plain cell's, the table labels it,
    and the holdout refuses it (a frozen default set names no public data)."""
    suite = load("suite")
    rng = np.random.default_rng(5)
    public = tmp_path / "public.npz"
    np.savez(
        public,
        images=rng.integers(0, 17, (160, 1, 8, 8), dtype=np.uint8),
        labels=np.arange(160) % 10,
    )
    res, out = repo / "results", tmp_path / "runs"
    common = ["--dataset", "digits", "--results", str(res), "--out", str(out), "--repo", str(repo)]
    common += ["--methods", "dpvae", "--epsilons", "10", "--seeds", "0", "--n-synthetic", "60"]
    common += ["--passes", "240", "--n-fidelity", "60", "--in-process"]
    common += ["--set", "dpvae:epochs=1", "--set", "dpvae:width=8", "--set", "dpvae:z_dim=4"]
    assert suite.main(common) == 0
    assert suite.main([*common, "--public-data", f"dpvae={public}"]) == 0
    rows = suite.read_rows(res, "validation")
    plain, warmed = sorted(rows, key=lambda r: "public_data" in r)
    assert warmed["public_data"] == str(public) and "public_data" not in plain
    assert warmed["config"] == plain["config"] and warmed["cell"] != plain["cell"]
    assert len(list((res / "validation" / "digits").glob("*.json"))) == 2
    card = json.loads((Path(warmed["cell"]) / "card.json").read_text())
    assert card["privacy"]["warmup"]["public_data"]["spent_epsilon"] == 0.0
    assert "public_data" not in json.loads((Path(plain["cell"]) / "card.json").read_text())[
        "privacy"
    ].get("warmup", {})
    table = suite.markdown(rows)
    assert "| digits | dpvae + public public.npz |" in table and "| digits | dpvae |" in table

    capsys.readouterr()
    assert suite.main([*common, "--public-data", "dpvae"]) == 2
    assert "METHOD=PATH" in capsys.readouterr().err
    hold = [c for c in common if not c.startswith("dpvae:") and c != "--set"]
    hold += ["--score", "holdout", "--defaults", "v1", "--public-data", f"dpvae={public}"]
    assert suite.main(hold) == 2
    assert "--public-data applies to validation runs" in capsys.readouterr().err


def test_a_sampling_time_option_reuses_the_trained_cell_and_its_row_records_it(tmp_path, repo):
    """``contrast`` acts only at sampling: a trial of it samples the cell the plain config trained
    (no second training), its grid and row say which value ran, and the figures differ."""
    suite = load("suite")
    res, out = repo / "results", tmp_path / "runs"
    common = ["--dataset", "digits", "--results", str(res), "--out", str(out), "--repo", str(repo)]
    common += [*TINY, "--seeds", "0", *SET]
    assert suite.main(common) == 0
    cells = sorted((out / "cells").glob("*/*"))
    weights = (cells[0] / "weights.safetensors").stat().st_mtime_ns
    assert suite.main([*common, "--set", "dpmerf:contrast=2.0"]) == 0
    assert sorted((out / "cells").glob("*/*")) == cells  # the same one cell, not retrained
    assert (cells[0] / "weights.safetensors").stat().st_mtime_ns == weights
    assert (cells[0] / "utility_grid-contrast=2.0.png").exists()
    plain, sharp = sorted(
        suite.read_rows(res, "validation"), key=lambda r: "contrast" in r["config"]
    )
    assert sharp["config"]["contrast"] == 2.0 and "contrast" not in plain["config"]
    assert sharp["cell"] == plain["cell"] and sharp["fd"] != plain["fd"]


def test_reference_cache_is_retrained_when_the_classifier_schedule_changes(tmp_path, monkeypatch):
    """The cached TRTR belongs to the schedule it was trained with: when a protocol trains the
    evaluation classifiers longer (colour sets from protocol 3), a reference cached under the
    shorter schedule is not read back."""
    from privsynth.data import load_dataset
    from privsynth.evaluate import classifier
    from privsynth.evaluate import utility as evaluate_utility

    utility = load("utility")
    digits = load_dataset("digits")
    train, hold = digits.subset(np.arange(0, 300)), digits.subset(np.arange(300, 400))
    fits = []
    real_trtr = evaluate_utility.trtr

    def counting_trtr(*a, **kw):
        fits.append(kw["classifier"])
        return real_trtr(*a, **kw)

    monkeypatch.setattr(evaluate_utility, "trtr", counting_trtr)
    first = utility.Reference(train, hold, tmp_path, 60, 240).info
    assert len(fits) == 2  # LeNet and ResNet
    assert utility.Reference(train, hold, tmp_path, 60, 240).info == first and len(fits) == 2

    # the same data, passes and seed, but a schedule that runs twice the epochs
    real_epochs = classifier.fixed_epochs
    monkeypatch.setattr(classifier, "fixed_epochs", lambda *a, **kw: 2 * real_epochs(*a, **kw))
    second = utility.Reference(train, hold, tmp_path, 60, 240).info
    assert len(fits) == 4
    assert second["key"]["schedules"] != first["key"]["schedules"]
    assert second["trtr"]["lenet"]["epochs"] == 2 * first["trtr"]["lenet"]["epochs"]
