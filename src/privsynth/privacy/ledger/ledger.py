"""The `Ledger`: where it lives, reserving a segment under every budget it touches, booking and
settling it, and setting budgets (the rules: the `privsynth.privacy.ledger` package docstring)."""

from __future__ import annotations

import datetime as _dt
import getpass
import json
import math
import os
import socket
import sys
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import BudgetError, ConfigError
from ..checks import PrivacyWarning
from .counting import RUNNING, Spend, counts, run_scoped
from .keys import DatasetRef, key_of, overlaps, resolve_key
from .queries import dataset_listing
from .store import Store, Tx, process_alive, redact, this_host

ENV_VAR = "PRIVSYNTH_LEDGER"


def default_location() -> Path:
    """The per-user ledger file for this platform (used when neither --ledger nor
    ``PRIVSYNTH_LEDGER`` is given)."""
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or home / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return base / "privsynth" / "ledger.sqlite"


def resolve_location(location: str | os.PathLike[str] | None = None) -> str:
    return str(location) if location else os.environ.get(ENV_VAR) or str(default_location())


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def _check_budget(value: float | None, flag: str) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{flag} must be a finite epsilon > 0, got {value}")


class Ledger:
    """One ledger database. Opening it does not create it; the first write does."""

    def __init__(self, location: str | os.PathLike[str] | None = None):
        self.location = resolve_location(location)
        self.store = Store(self.location)

    def __repr__(self) -> str:
        return f"Ledger({self.shown!r})"

    @property
    def shown(self) -> str:
        return redact(self.location)

    # --- dataset keys ---------------------------------------------------------------------------
    def key(self, dataset: DatasetRef, *, create: bool = True) -> str | None:
        """The dataset's key in this ledger: HMAC-SHA256 of its content digest under the ledger's
        secret (a string is taken as a key already). Without ``create`` a ledger that does not
        exist yet gives None (nothing was ever booked on anything)."""
        if isinstance(dataset, str):
            return dataset
        if not create and not self.store.exists():
            return None
        with self.store.transaction() as tx:
            return key_of(tx, dataset)

    # --- segments: reserve, book, settle ----------------------------------------------------
    def reserve(
        self,
        fingerprint: DatasetRef,
        name: str,
        *,
        run_id: str,
        epsilon: float,
        delta: float,
        method: str = "",
        out: str = "",
        kind: str = "train",
        limit: float | None = None,
        force: bool = False,
        accounting: dict | None = None,
        segment: str | None = None,
    ) -> str:
        """Check the budget and reserve ``(epsilon, delta)`` in one locked transaction; the
        segment id, or `BudgetError` with nothing written.

        The budgets: the dataset's (`set_budget`), a run's ``limit`` (``--budget``: a run may
        only be stricter) and those of every dataset sharing a record with it, each against the
        spends of all datasets sharing a record with *it*. ``segment`` re-reserves an existing
        segment (the exact plan replacing a target). Book before the first private step: a
        process found dead later settles to what it booked, and until it books that is nothing."""
        _check_budget(limit, "--budget")
        with self.store.transaction() as tx:
            now = _now()
            ask = _Ask(
                resolve_key(tx, fingerprint, name, now),
                name,
                run_id,
                float(epsilon),
                segment,
                whole_run=(accounting or {}).get("scope") == "run",
            )
            forced = self._refuse_or_force(self._bounds(tx, ask, limit, now), ask, force)
            values = dict(
                reserved_epsilon=float(epsilon),
                reserved_delta=float(delta),
                accounting=json.dumps(accounting or {}),
                updated=now,
            )
            if segment is not None:
                if forced:  # once forced, a segment stays marked (a re-reservation never unmarks)
                    values["forced"] = 1
                tx.update_spend(segment, **values)
                return segment
            values["forced"] = int(forced)
            segment = uuid.uuid4().hex[:16]
            tx.insert_spend(
                {
                    **values,
                    "id": segment,
                    "fingerprint": ask.key,
                    "run_id": run_id,
                    "kind": kind,
                    "method": method,
                    "out": out,
                    "status": RUNNING,
                    "epsilon": 0.0,
                    "delta": 0.0,
                    "host": this_host(),
                    "pid": os.getpid(),
                    "started": now,
                    "note": "",
                }
            )
            return segment

    def _bounds(self, tx: Tx, ask: _Ask, limit: float | None, now: str) -> list[_Bound]:
        """Every budget the reservation must fit (locked): the dataset's, the run's ``limit``
        and those of the datasets sharing a record with it, each with what it is charged now."""
        graph = overlaps(tx)
        mine = graph.get(ask.key, {ask.key})
        # Locked in sorted order: two runs locking overlapping datasets cannot deadlock.
        budgets = {k: tx.lock_dataset(k, ask.name, now) for k in sorted(mine)}
        names = dict(tx.run("SELECT fingerprint, name FROM datasets"))
        self._settle_dead(tx, mine)
        bounds = []
        for k in sorted(mine, key=lambda k: k != ask.key):
            rows = [r for r in self._charged(tx, graph.get(k, {k})) if r["id"] != ask.segment]
            ours = [
                r
                for r in rows
                if ask.whole_run
                and r["fingerprint"] == ask.key
                and r["run_id"] == ask.run_id
                and run_scoped(r)
            ]
            each = counts(rows)
            # A whole-run segment replaces its run's earlier booking: the run counts what it
            # reserves now (never less than it counted before), the other runs what they count.
            before = max((each[r["id"]].epsilon for r in ours), default=0.0)
            spent = sum(e.epsilon for e in each.values()) - before
            whose = (
                "the dataset's budget in the ledger"
                if k == ask.key
                else f"the budget of dataset '{names.get(k, k[:12])}' ({k[:12]}), which "
                "shares records with it"
            )
            limits = [(budgets[k], whose)]
            if k == ask.key:
                limits.append((limit, "this run's --budget"))
            for bound, which in limits:
                if bound is not None:
                    bounds.append(_Bound(bound, which, spent, before, rows, ours, k))
        return bounds

    def _refuse_or_force(self, bounds: list[_Bound], ask: _Ask, force: bool) -> bool:
        """Raise `BudgetError` naming the most exceeded budget, or with ``force`` warn and
        return True (the row is marked forced); False when every budget fits."""
        over = [b for b in bounds if b.spent + ask.need(b.before) > b.bound + 1e-9]
        if not over:
            return False
        b = max(over, key=lambda b: b.spent + ask.need(b.before) - b.bound)
        runs = len({r["run_id"] for r in b.rows} - ({ask.run_id} if b.ours else set()))
        running = sum(r["status"] == RUNNING for r in b.rows if r not in b.ours)
        message = (
            f"dataset '{ask.name}' ({ask.key[:12]}) has spent epsilon {b.spent:.4g} of "
            f"{b.which}, {b.bound:g} (basic composition of {runs} other run(s)"
            f"{f', {running} segment(s) still running' if running else ''}; ledger "
            f"{self.shown}); this run needs {ask.need(b.before) - b.before:.4g} more"
            f"{f' (it has {b.before:.4g} booked from earlier segments)' if b.ours else ''}"
        )
        if not force:
            raise BudgetError(
                f"{message}. Lower --epsilon, raise the budget with `privsynth ledger "
                f"set-budget {b.key[:12]} EPS`, or pass --force"
            )
        # --force is never silent: one line on stderr, `forced` on the row.
        warnings.warn(
            f"--force: {message}; booked anyway, marked forced in the ledger",
            PrivacyWarning,
            stacklevel=4,
        )
        return True

    def book(
        self, segment: str, *, epsilon: float, delta: float, accounting: dict | None = None
    ) -> None:
        """A running segment's spend so far (never more than its reservation is counted while
        it runs; this is what it settles to if its process dies)."""
        self._update(segment, accounting, epsilon=float(epsilon), delta=float(delta))

    def settle(
        self,
        segment: str,
        status: str,
        *,
        epsilon: float,
        delta: float,
        accounting: dict | None = None,
        note: str = "",
    ) -> None:
        """End a segment: from now on it counts ``(epsilon, delta)``, what really ran."""
        self._update(
            segment,
            accounting,
            status=status,
            epsilon=float(epsilon),
            delta=float(delta),
            note=note,
        )

    def _update(self, segment: str, accounting: dict | None, **values: Any) -> None:
        if accounting is not None:
            values["accounting"] = json.dumps(accounting)
        with self.store.transaction() as tx:
            tx.update_spend(segment, **values, updated=_now())

    def cancel(self, segment: str) -> None:
        """Drop a reservation whose process never touched the data (refused before any step)."""
        with self.store.transaction() as tx:
            tx.run("DELETE FROM spends WHERE id = ? AND status = ?", (segment, RUNNING))

    @staticmethod
    def _charged(tx: Tx, keys: set[str]) -> list[dict[str, Any]]:
        """The segments booked on any of ``keys``."""
        marks = ", ".join("?" for _ in keys)
        return tx.spends(f"WHERE fingerprint IN ({marks})", tuple(sorted(keys)))

    @staticmethod
    def _settle_dead(tx: Tx, keys: set[str] | None = None) -> None:
        """Running segments (on ``keys``, default all) whose process on this machine is gone
        settle to what they booked (their last checkpoint plus one checkpoint interval: an upper
        bound on what ran)."""
        for r in tx.spends("WHERE status = ?", (RUNNING,)):
            if (keys is None or r["fingerprint"] in keys) and process_alive(
                r["host"], r["pid"]
            ) is False:
                tx.update_spend(
                    r["id"],
                    status="abandoned",
                    updated=_now(),
                    note="its process ended without settling; booked up to its last "
                    "checkpoint plus one checkpoint interval",
                )

    # --- budgets ------------------------------------------------------------------------------
    def set_budget(
        self,
        fingerprint: DatasetRef,
        budget: float | None,
        *,
        name: str = "",
        reason: str = "",
        who: str | None = None,
    ) -> float | None:
        """Set (or with None remove) a dataset's epsilon budget; logged. Returns the old one."""
        _check_budget(budget, "the budget")
        who = who or f"{getpass.getuser()}@{socket.gethostname()}"
        with self.store.transaction() as tx:
            now = _now()
            fingerprint = resolve_key(tx, fingerprint, name, now)
            old = tx.lock_dataset(fingerprint, name or fingerprint[:12], now)
            tx.run("UPDATE datasets SET budget = ? WHERE fingerprint = ?", (budget, fingerprint))
            tx.run(
                "INSERT INTO budget_log (id, fingerprint, old_budget, new_budget, at, who, "
                "reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (uuid.uuid4().hex[:16], fingerprint, old, budget, now, who, reason or ""),
            )
        return old

    # --- reading --------------------------------------------------------------------------------
    def spent(self, fingerprint: DatasetRef) -> Spend:
        """What the dataset is charged under basic composition (running segments at their
        reservation): the segments booked on it and on every dataset sharing a record with it."""
        if not self.store.exists():
            return Spend(0.0, 0.0)
        with self.store.transaction(write=False) as tx:
            key = key_of(tx, fingerprint)
            rows = self._charged(tx, overlaps(tx).get(key, {key}))
        each = counts(rows).values()
        return Spend(sum(c.epsilon for c in each), sum(c.delta for c in each))

    def run_segments(self, fingerprint: DatasetRef, run_id: str) -> list[dict[str, Any]]:
        """One run's segments on a dataset, oldest first (``accounting`` decoded). Reading only."""
        if not self.store.exists():
            return []
        with self.store.transaction(write=False) as tx:
            rows = tx.spends(
                "WHERE fingerprint = ? AND run_id = ?", (key_of(tx, fingerprint), run_id)
            )
        for r in rows:
            r["accounting"] = json.loads(r["accounting"] or "{}")
        return rows

    def settle_stale(self) -> None:
        """Settle every running segment whose process on this machine is gone (killed by the
        kernel, power loss) to what it booked, so no listing shows a dead run as running."""
        if not self.store.exists():
            return
        with self.store.transaction() as tx:
            self._settle_dead(tx)

    def datasets(self) -> list[dict[str, Any]]:
        """Every dataset with its budget, basic-composition spend, runs (segments grouped by run)
        and the budget log. Reading only: never creates the ledger."""
        if not self.store.exists():
            return []
        with self.store.transaction(write=False) as tx:
            sets = tx.run(
                "SELECT fingerprint, name, budget, created FROM datasets "
                "ORDER BY created, fingerprint"
            )
            spends = tx.spends()
            log = tx.run(
                "SELECT fingerprint, old_budget, new_budget, at, who, reason "
                "FROM budget_log ORDER BY at, id"
            )
            graph = overlaps(tx)
        return dataset_listing(sets, spends, log, graph)

    def find(self, prefix: str) -> dict[str, Any]:
        """The dataset whose fingerprint starts with ``prefix`` (at least 6 characters)."""
        matches = [d for d in self.datasets() if d["fingerprint"].startswith(prefix.lower())]
        if len(prefix) < 6 or len(matches) != 1:
            found = "no dataset" if not matches else f"{len(matches)} datasets"
            raise ConfigError(
                f"{found} in ledger {self.shown} match fingerprint '{prefix}'; "
                "give 6+ leading characters as `privsynth ledger` prints them, "
                "or --data PATH"
            )
        return matches[0]


@dataclass(frozen=True)
class _Ask:
    """A reservation being checked: the dataset's key, the run, the epsilon it asks for."""

    key: str
    name: str
    run_id: str
    epsilon: float
    segment: str | None
    whole_run: bool

    def need(self, before: float) -> float:
        """What the run counts once reserved: never less than it counted before."""
        return max(self.epsilon, before)


@dataclass(frozen=True)
class _Bound:
    """One budget a reservation must fit, and what it is charged with already."""

    bound: float
    which: str
    spent: float  # what the other runs (and segments) count
    before: float  # what this run counted before this reservation
    rows: list[dict[str, Any]]
    ours: list[dict[str, Any]]
    key: str
