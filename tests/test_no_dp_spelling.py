"""A run without DP is recognised by one field, ``"private": false``, in every file privsynth
writes; none of them carries a fake epsilon ("inf", "infinity") for it, and displays say "no DP"."""

import json
import math
import re

import pytest

import privsynth
from privsynth.cli import main
from privsynth.evaluate.pipeline import evaluate
from privsynth.nodp import is_private
from privsynth.orchestrate.sweep import sweep
from privsynth.run import Run, read_card

FAKE = re.compile(r'"inf(inity)?"|\bInfinity\b', re.IGNORECASE)


@pytest.fixture
def plain_run(tmp_path, tiny_dataset, fast_gan):
    return privsynth.train(tiny_dataset, "gan", tmp_path / "g", config=fast_gan, progress=False)


def test_card_says_private_false_without_an_epsilon(plain_run, capsys):
    text = (plain_run.path / "card.json").read_text()
    assert not FAKE.search(text) and not re.search(r"\binfinity\b", text)
    card = json.loads(text)
    assert card["private"] is False and card["privacy"]["epsilon"] is None
    assert not is_private(card) and not plain_run.private and math.isinf(plain_run.epsilon)
    assert main(["info", str(plain_run.path)]) == 0
    assert "no DP" in capsys.readouterr().out


def test_old_cards_spelling_infinity_still_load(plain_run):
    path = plain_run.path / "card.json"
    card = json.loads(path.read_text())
    card["privacy"]["epsilon"] = "infinity"
    path.write_text(json.dumps(card))
    assert read_card(plain_run.path)["privacy"]["epsilon"] is None
    assert math.isinf(Run.load(plain_run.path).epsilon)


def test_evaluation_json_and_report(plain_run, tiny_dataset, tmp_path, capsys):
    out = tmp_path / "ev"
    evaluate(
        [plain_run.path],
        data=tiny_dataset,
        out=out,
        n_synthetic=60,
        max_members=20,
        n_fidelity=60,
        cache_dir=str(tmp_path / "cache"),
        progress=False,
        classifier_passes=200,
        classifiers=("lenet",),
    )
    text = (out / "metrics.json").read_text()
    assert not FAKE.search(text)
    row = json.loads(text)["models"][0]
    assert row["private"] is False and row["epsilon"] is None
    assert "no DP" in (out / "report.html").read_text()


def test_sweep_rows(tmp_path, tiny_dataset):
    config = {"n_features": 32, "steps": 5, "batch_size": 30, "g_width": 8, "z_dim": 8}
    out = tmp_path / "sw"
    table = sweep(
        tiny_dataset,
        ["dpmerf"],
        [math.inf],
        out,
        configs={"dpmerf": config},
        eval_epochs=1,
        n_synthetic=30,
        progress=False,
    )
    (row,) = table["rows"]
    assert not row["private"] and row["epsilon"] is None and row["epsilon_spent"] is None
    assert table["epsilons"] == []
    for name in ("sweep.json", "cells/dpmerf-epsinf/eval.json"):
        assert not FAKE.search((out / name).read_text())
    assert "| dpmerf | no DP | ∞ |" in (out / "sweep.md").read_text()
