"""RunSpend with a lead release (the warm-up's central images) before the DP-SGD steps: booked
before it is drawn, in every booking after, counted once across segments."""

from __future__ import annotations

import pytest

from privsynth.privacy import Ledger
from privsynth.privacy.accounting import epsilon_from_history
from privsynth.privacy.ledger.spend import RunSpend, history_take

LEAD = [(3.0, 1.0, 1)]
SGD = (1.1, 0.1, 40)
DELTA = 1e-5


def _spend(ledger, prefix=()):
    return RunSpend(
        ledger,
        "f" * 64,
        "toy",
        run_id="r1",
        method="dpvae",
        out="/x",
        kind="train",
        limit=None,
        force=False,
        accountant="rdp",
        chunk=10,
        prefix=prefix,
    )


def _segment(ledger, seg):
    (ds,) = ledger.datasets()
    return next(s for s in ds["runs"]["r1"]["segments"] if s["id"] == seg)


def test_history_take():
    assert history_take([(1.0, 1.0, 1), (2.0, 0.1, 5)], 3) == [(1.0, 1.0, 1), (2.0, 0.1, 2)]
    assert history_take([(1.0, 1.0, 1)], 0) == []


def test_lead_is_booked_before_the_plan_and_ahead_counts_dp_steps(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite")
    spend = _spend(ledger)
    spend.set_lead(LEAD, DELTA)
    spend.book_lead()  # no reservation yet (a fixed-sigma run): it reserves the release itself
    seg = _segment(ledger, spend.segment)
    assert seg["epsilon"] == pytest.approx(epsilon_from_history(LEAD, DELTA, "rdp"))
    assert seg["delta"] == DELTA
    spend.plan(*SGD, DELTA)
    # Reserved: the whole plan; booked ahead: the release plus one interval of 10 DP-SGD steps.
    seg = _segment(ledger, spend.segment)
    whole = [*LEAD, SGD]
    assert seg["reserved_epsilon"] == pytest.approx(epsilon_from_history(whole, DELTA, "rdp"))
    assert spend.booked == [*LEAD, (1.1, 0.1, 10)]
    spend.checkpoint([*LEAD, (1.1, 0.1, 10)])
    assert spend.booked == [*LEAD, (1.1, 0.1, 20)]
    spend.abort("interrupted")  # killed: settles to the booking, which covers what ran
    seg = _segment(ledger, spend.segment)
    assert seg["status"] == "interrupted"
    assert seg["epsilon"] == pytest.approx(
        epsilon_from_history([*LEAD, (1.1, 0.1, 20)], DELTA, "rdp")
    )


def test_a_killed_release_is_settled_not_cancelled(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite")
    spend = _spend(ledger)
    spend.set_lead(LEAD, DELTA)
    spend.reserve_target(2.0, DELTA)
    spend.book_lead()
    spend.abort("interrupted")  # killed while pretraining, before the DP plan
    seg = _segment(ledger, spend.segment)
    assert seg["status"] == "interrupted" and seg["epsilon"] > 0


def test_a_resumed_segment_does_not_book_the_release_again(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite")
    spend = _spend(ledger)
    spend.set_lead(LEAD, DELTA, released=LEAD)  # an earlier segment drew it
    spend.book_lead()
    assert spend.segment is None  # nothing to book yet
    spend.plan(*SGD, DELTA)
    assert spend.booked == [(1.1, 0.1, 10)]
    spend.finish([*LEAD, SGD])
    seg = _segment(ledger, spend.segment)
    # The run's whole history in one accountant: the release (once) and the DP-SGD steps.
    assert seg["epsilon"] == pytest.approx(epsilon_from_history([*LEAD, SGD], DELTA, "rdp"))
    assert seg["accounting"]["booked"] == [list(h) for h in (*LEAD, SGD)]


def test_a_resumed_segment_books_the_whole_run_and_carries_what_ran_past_the_checkpoint(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite")
    first = _spend(ledger)
    first.plan(*SGD, DELTA)
    first.checkpoint([(1.1, 0.1, 10)])  # booked ahead: 20 steps
    first.abort("interrupted")
    resumed = _spend(ledger, prefix=[(1.1, 0.1, 10)])  # resumes from the step-10 checkpoint
    assert resumed.carried == [(1.1, 0.1, 10)]  # steps 10-19 may have run: they stay
    resumed.plan(*SGD, DELTA)
    resumed.finish([SGD])
    whole = epsilon_from_history([(1.1, 0.1, 10), SGD], DELTA, "rdp")
    (ds,) = ledger.datasets()
    assert ds["runs"]["r1"]["epsilon"] == pytest.approx(whole) == ds["epsilon_spent"]
    assert ds["delta_spent"] == DELTA
    # A checkpoint that is not a prefix of what the run booked skips nothing of it.
    foreign = _spend(ledger, prefix=[(0.7, 0.2, 5)])
    assert {h[:2] for h in foreign.carried} == {(1.1, 0.1)}
    assert sum(h[2] for h in foreign.carried) == 10 + 40  # the carried 10 and the 40-step lineage
