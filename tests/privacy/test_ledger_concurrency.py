"""Two runs sharing one ledger at once: neither overwrites the other's spend."""

from __future__ import annotations

import json

import pytest

from privsynth.errors import BudgetError
from privsynth.privacy import Ledger


def test_interleaved_runs_keep_both_spends(tmp_path):
    path = tmp_path / "privacy-ledger.json"
    a, b = Ledger(path), Ledger(path)  # both opened before either writes, as two processes would
    a.record("fp", "data", "run-a", epsilon=1.0, delta=1e-5)
    b.record("fp", "data", "run-b", epsilon=2.0, delta=1e-5)
    a.record("fp", "data", "run-a", epsilon=1.5, delta=1e-5)  # run-a's next checkpoint
    runs = json.loads(path.read_text())["datasets"]["fp"]["runs"]
    assert {k: v["epsilon"] for k, v in runs.items()} == {"run-a": 1.5, "run-b": 2.0}
    assert Ledger(path).spent("fp").epsilon == pytest.approx(3.5)


def test_budget_check_sees_spends_recorded_after_opening(tmp_path):
    path = tmp_path / "privacy-ledger.json"
    mine, other = Ledger(path), Ledger(path)
    mine.check("fp", "data", "mine", planned_epsilon=4.0, budget=10)  # fits: nothing spent yet
    other.record("fp", "data", "other", epsilon=7.0, delta=1e-5)
    with pytest.raises(BudgetError, match="spent epsilon=7"):
        mine.check("fp", "data", "mine", planned_epsilon=4.0, budget=None)
    # The budget given to check() is stored in the file, not only in memory.
    assert json.loads(path.read_text())["datasets"]["fp"]["budget"] == 10
