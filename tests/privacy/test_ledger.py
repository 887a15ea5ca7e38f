"""The ledger file on its own: set-not-add per run, budget checks, corrupt file."""

from __future__ import annotations

import pytest

from privsynth.errors import BudgetError, CheckpointError
from privsynth.privacy import Ledger


def test_record_sets_not_adds_and_persists(tmp_path):
    path = tmp_path / "ledger.json"
    led = Ledger(path)
    led.record("fp", "data", "run1", epsilon=1.0, delta=1e-5)
    led.record("fp", "data", "run1", epsilon=2.5, delta=1e-5)  # a later checkpoint of run1
    led.record("fp", "data", "run2", epsilon=1.0, delta=1e-5)
    again = Ledger(path)
    assert list(again.data["datasets"]["fp"]["runs"]) == ["run1", "run2"]
    assert again.spent("fp").epsilon == pytest.approx(3.5)
    assert again.spent("fp", exclude_run="run1").epsilon == pytest.approx(1.0)
    assert again.spent("fp").delta == pytest.approx(2e-5)


def test_budget_refuses_unless_forced(tmp_path):
    led = Ledger(tmp_path / "l.json")
    led.record("fp", "data", "old", epsilon=6.0, delta=1e-5)
    with pytest.raises(BudgetError, match="spent epsilon=6 of its budget 10.*--force"):
        led.check("fp", "data", "new", planned_epsilon=5.0, budget=10)
    led.check("fp", "data", "new", planned_epsilon=5.0, budget=10, force=True)
    led.check("fp", "data", "new", planned_epsilon=4.0, budget=None)  # budget remembered: fits
    # A resumed run is not charged twice for its own earlier spend.
    led.check("fp", "data", "old", planned_epsilon=9.0, budget=None)


def test_corrupt_ledger_names_the_fix(tmp_path):
    (tmp_path / "l.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="restore it from a backup"):
        Ledger(tmp_path / "l.json")
