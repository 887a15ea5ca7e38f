"""The ledger database on its own, on SQLite and on a real PostgreSQL server (`ledger_location`):
reserve-and-check in one transaction, budgets only set on purpose, segments never forgotten."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from privsynth.errors import BudgetError, CheckpointError, ConfigError
from privsynth.privacy import Ledger
from privsynth.privacy.ledger import counted


def test_reserve_counts_until_settled_then_what_ran(ledger_location):
    led = Ledger(ledger_location)
    seg = led.reserve("fp", "data", run_id="r1", epsilon=4.0, delta=1e-5, method="dpgan")
    assert led.spent("fp").epsilon == pytest.approx(4.0)  # running: its reservation counts
    led.book(seg, epsilon=1.5, delta=1e-5)
    assert led.spent("fp").epsilon == pytest.approx(4.0)  # still running: never below the plan
    led.settle(seg, "complete", epsilon=3.0, delta=1e-5)
    again = Ledger(ledger_location)  # a new connection reads what was committed
    assert again.spent("fp").epsilon == pytest.approx(3.0)
    (ds,) = again.datasets()
    assert ds["runs"]["r1"]["status"] == "complete" and ds["segments"] == 1


def test_budget_refuses_unless_forced_and_force_is_recorded(ledger_location):
    led = Ledger(ledger_location)
    led.set_budget("fp", 10.0, name="data", reason="DPO sign-off")
    old = led.reserve("fp", "data", run_id="old", epsilon=6.0, delta=1e-5)
    led.settle(old, "complete", epsilon=6.0, delta=1e-5)
    with pytest.raises(
        BudgetError,
        match=r"spent epsilon 6 of the dataset's budget in the "
        r"ledger, 10 .*needs 5 more.*set-budget.*--force",
    ):
        led.reserve("fp", "data", run_id="new", epsilon=5.0, delta=1e-5)
    assert led.spent("fp").epsilon == pytest.approx(6.0)  # the refused reservation left nothing
    seg = led.reserve("fp", "data", run_id="new", epsilon=5.0, delta=1e-5, force=True)
    (ds,) = led.datasets()
    assert ds["runs"]["new"]["segments"][0]["forced"] == 1 and seg


def test_a_runs_budget_only_checks_never_rewrites(ledger_location):
    led = Ledger(ledger_location)
    with pytest.raises(BudgetError, match="this run's --budget, 2"):
        led.reserve("fp", "data", run_id="a", epsilon=3.0, delta=0.0, limit=2.0)
    assert led.datasets() == []  # a refused --budget 2 saved nothing, least of all a budget
    led.reserve("fp", "data", run_id="b", epsilon=3.0, delta=0.0, limit=20.0)
    assert led.datasets()[0]["budget"] is None  # nor is a --budget 20 that passed
    led.set_budget("fp", 5.0, reason="policy")
    # A run's --budget 20 cannot raise the dataset's 5; a run can only be stricter.
    with pytest.raises(BudgetError, match="dataset's budget in the ledger, 5"):
        led.reserve("fp", "data", run_id="c", epsilon=3.0, delta=0.0, limit=20.0)
    with pytest.raises(BudgetError, match="this run's --budget, 4"):
        led.reserve("fp", "data", run_id="c", epsilon=1.5, delta=0.0, limit=4.0)
    led.set_budget("fp", 8.0, reason="more data collected")
    led.reserve("fp", "data", run_id="c", epsilon=3.0, delta=0.0)
    log = led.datasets()[0]["budget_log"]
    assert [(e["old"], e["new"], e["reason"]) for e in log] == [
        (None, 5.0, "policy"),
        (5.0, 8.0, "more data collected"),
    ]
    assert all(e["who"] and e["at"] for e in log)


@pytest.mark.parametrize("budget", [0.0, -2.0, float("nan"), float("inf")])
def test_budgets_must_be_finite_positive(tmp_path, budget):
    led = Ledger(tmp_path / "l.sqlite")
    with pytest.raises(ConfigError, match="--budget must be a finite epsilon > 0"):
        led.reserve("fp", "data", run_id="r", epsilon=1.0, delta=0.0, limit=budget)
    with pytest.raises(ConfigError, match="finite epsilon > 0"):
        led.set_budget("fp", budget, reason="x")
    assert not (tmp_path / "l.sqlite").exists()


def _reserve_in_child(location: str, start, done, results, i: int) -> None:
    import time

    from privsynth.privacy.ledger.store import Tx

    read = Tx.spends

    def slow_read(self, *args):  # widen the window between the check and the write
        rows = read(self, *args)
        time.sleep(0.3)
        return rows

    Tx.spends = slow_read
    try:
        Ledger(location).spent("fp")  # connected and schema ready before the race starts
        start.wait(timeout=60)
        Ledger(location).reserve("fp", "data", run_id=f"run-{i}", epsilon=4.0, delta=0.0)
        results.put("reserved")
    except BudgetError:
        results.put("refused")
    done.wait(timeout=60)  # stay alive (a running segment) until every process has tried


def test_runs_started_together_cannot_all_pass(ledger_location):
    """Four processes check and reserve at the same instant under a budget two of them fit:
    exactly two pass, because the check and the reservation are one locked transaction."""
    import multiprocessing as mp

    Ledger(ledger_location).set_budget("fp", 10.0, name="data", reason="test")
    ctx = mp.get_context("fork")
    start, done, results = ctx.Barrier(4), ctx.Barrier(4), ctx.Queue()
    procs = [
        ctx.Process(target=_reserve_in_child, args=(ledger_location, start, done, results, i))
        for i in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    outcomes = sorted(results.get(timeout=10) for _ in procs)
    assert outcomes == ["refused", "refused", "reserved", "reserved"]
    assert Ledger(ledger_location).spent("fp").epsilon == pytest.approx(8.0)


def test_a_killed_process_settles_to_what_it_booked(ledger_location):
    """A process that dies without settling (SIGKILL, power loss) keeps its booking (steps run
    plus one checkpoint interval), found by the next booking on the same dataset."""
    code = (
        "import os, sys; from privsynth.privacy import Ledger; led = Ledger(sys.argv[1]); "
        "s = led.reserve('fp', 'data', run_id='killed', epsilon=9.0, delta=1e-5); "
        "led.book(s, epsilon=2.0, delta=1e-5); os._exit(9)"
    )
    subprocess.run([sys.executable, "-c", code, ledger_location], check=False, timeout=120)
    led = Ledger(ledger_location)
    assert led.spent("fp").epsilon == pytest.approx(9.0)  # a running reservation, for now
    led.reserve("fp", "data", run_id="next", epsilon=1.0, delta=1e-5)
    (ds,) = led.datasets()
    (killed,) = ds["runs"]["killed"]["segments"]
    assert killed["status"] == "abandoned" and counted(killed).epsilon == pytest.approx(2.0)
    assert led.spent("fp").epsilon == pytest.approx(3.0)


def test_listing_settles_a_process_killed_outright(ledger_location, capsys):
    """A process the kernel killed (OOM) leaves a running reservation: the next ledger access,
    even a listing, settles it to what it booked instead of showing it as running."""
    from privsynth.cli import main

    code = (
        "import os, sys; from privsynth.privacy import Ledger; led = Ledger(sys.argv[1]); "
        "s = led.reserve('fp', 'data', run_id='oom', epsilon=9.0, delta=1e-5); "
        "led.book(s, epsilon=2.0, delta=1e-5); os._exit(9)"
    )
    subprocess.run([sys.executable, "-c", code, ledger_location], check=False, timeout=120)
    assert main(["ledger", "--ledger", ledger_location]) == 0
    assert "running" not in capsys.readouterr().out
    (ds,) = Ledger(ledger_location).datasets()
    (killed,) = ds["runs"]["oom"]["segments"]
    assert killed["status"] == "abandoned" and counted(killed).epsilon == pytest.approx(2.0)


def test_liveness_check_never_signals_a_process_on_windows(monkeypatch):
    """On Windows os.kill(pid, 0) terminates the process: the check asks the kernel instead."""
    from privsynth.privacy.ledger import store

    def kill(*_):
        raise AssertionError("os.kill on Windows would terminate the process")

    asked = []
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(store.os, "kill", kill)
    monkeypatch.setattr(store, "_windows_pid_alive", lambda pid: asked.append(pid) or False)
    assert store.process_alive(store.this_host(), os.getpid() + 1) is False
    assert asked == [os.getpid() + 1]


def test_a_json_path_asks_for_a_database(tmp_path):
    with pytest.raises(ConfigError, match=r"pass a \.sqlite path"):
        Ledger(tmp_path / "privacy-ledger.json")


def test_damaged_sqlite_names_the_fix(tmp_path):
    (tmp_path / "l.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(CheckpointError, match="restore it from a backup"):
        Ledger(tmp_path / "l.sqlite").spent("fp")


def test_unreachable_postgres_is_one_line_naming_the_fix():
    with pytest.raises(
        ConfigError,
        match=r"cannot reach the PostgreSQL ledger "
        r"postgresql://u:\*\*\*@127.0.0.1:9/x .*check the URL",
    ):
        Ledger("postgresql://u:secret@127.0.0.1:9/x").spent("fp")


def test_missing_psycopg_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'privsynth\[postgres\]'"):
        Ledger("postgresql+psycopg://localhost/ledger")


def test_where_the_ledger_lives(monkeypatch, tmp_path, _own_ledger):
    from privsynth.privacy import default_location, resolve_location

    # The test suite itself never books into the real per-user ledger.
    assert resolve_location() == str(_own_ledger) == os.environ["PRIVSYNTH_LEDGER"]
    assert resolve_location("explicit.sqlite") == "explicit.sqlite"
    monkeypatch.delenv("PRIVSYNTH_LEDGER")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert default_location() == tmp_path / "xdg" / "privsynth" / "ledger.sqlite"
    assert resolve_location() == str(default_location())


def test_a_resumed_segment_supersedes_its_runs_booking(ledger_location):
    """Whole-run segments (what a run books, ``scope: run``) of one run count once: the latest
    books the run's composition of all its segments. Budgets add up runs, not segments."""
    led = Ledger(ledger_location)
    led.set_budget("fp", 5.0, name="data", reason="DPO sign-off")
    run = {"scope": "run"}
    first = led.reserve("fp", "data", run_id="r1", epsilon=3.0, delta=1e-5, accounting=run)
    led.settle(first, "interrupted", epsilon=3.0, delta=1e-5)  # killed: booked stays counted
    assert led.spent("fp").epsilon == pytest.approx(3.0)
    # The resume reserves the whole run (4 <= 5): accepted, not 3 + 4.
    second = led.reserve("fp", "data", run_id="r1", epsilon=4.0, delta=1e-5, accounting=run)
    assert led.spent("fp") == pytest.approx(type(led.spent("fp"))(4.0, 1e-5))
    led.cancel(second)  # refused before its first step: the killed booking counts again
    assert led.spent("fp").epsilon == pytest.approx(3.0)
    second = led.reserve("fp", "data", run_id="r1", epsilon=4.0, delta=1e-5, accounting=run)
    led.settle(second, "complete", epsilon=3.5, delta=1e-5)
    (ds,) = led.datasets()
    entry = ds["runs"]["r1"]
    assert (entry["epsilon"], entry["delta"], entry["status"]) == (3.5, 1e-5, "complete")
    assert ds["epsilon_spent"] == 3.5 and ds["delta_spent"] == 1e-5
    assert [s.get("superseded", False) for s in entry["segments"]] == [True, False]
    # Another run adds up (basic composition across runs) and is checked against the sum.
    with pytest.raises(BudgetError, match="spent epsilon 3.5 .*1 other run"):
        led.reserve("fp", "data", run_id="r2", epsilon=2.0, delta=1e-5, accounting=run)


def test_force_over_a_budget_warns_and_marks_the_segment(ledger_location):
    from privsynth.privacy.checks import PrivacyWarning

    led = Ledger(ledger_location)
    led.set_budget("fp", 1.0, name="data", reason="DPO sign-off")
    with pytest.warns(PrivacyWarning, match="--force: .*booked anyway, marked forced"):
        led.reserve("fp", "data", run_id="r1", epsilon=2.0, delta=1e-5, force=True)
    led.reserve("fp", "data", run_id="r2", epsilon=0.5, delta=1e-5, limit=9.0, force=True)
    (ds,) = led.datasets()
    # Only the segment --force let past a budget is marked (r2 fits its own --budget 9: the
    # dataset's 1 is exceeded, so it is forced too); a run that fits is not.
    assert ds["runs"]["r1"]["forced"] and ds["runs"]["r2"]["forced"]
    led.reserve("fp3", "data3", run_id="r3", epsilon=2.0, delta=1e-5, force=True)
    assert not next(d for d in led.datasets() if d["fingerprint"] == "fp3")["runs"]["r3"]["forced"]
