"""The privacy ledger: what every run has spent on each dataset, in a database.

Where it lives (the first that applies):
  1. ``--ledger LOCATION`` (a ``ledger=`` argument): a file path (SQLite) or a
     ``postgresql://user@host/db`` URL, for a team that shares one budget across machines;
  2. the environment variable ``PRIVSYNTH_LEDGER`` (same forms);
  3. one default per user: ``$XDG_DATA_HOME/privsynth/ledger.sqlite`` (Linux, default
     ``~/.local/share``), ``~/Library/Application Support/privsynth/ledger.sqlite`` (macOS),
     ``%APPDATA%\\privsynth\\ledger.sqlite`` (Windows).
Every verb (train, sweep, federate, audit, ledger) finds it the same way, wherever it writes.

Key: HMAC-SHA256(the ledger's secret, the dataset's `Content` digest). The content is the
multiset of per-record digests (decoded pixels at the loaded resolution with the class name), so
any re-encoding, re-ordering or re-indexing of the same records shares one budget. The secret
(32 random bytes, created with the ledger, kept in its ``meta`` table) means a key reveals
nothing to anyone without the ledger. The ledger also keeps each key's records as keyed record
digests: a dataset that shares at least one record with another is charged against both budgets
(`related`), so a superset, a subset or any overlapping file cannot start a fresh budget.

Rows are *segments*: each process that touched a dataset for a run reserves its planned spend in
the same transaction as the budget check, books what ran at every checkpoint (one checkpoint
interval ahead, so a killed process is never under-booked) and settles when it ends. Segments are
never deleted once they touched data: a restarted or resumed run adds one, carrying the run's id.
A segment booked for its whole run (``accounting.scope == "run"``, what `RunSpend` writes) books
the run's accountant composition of everything the run ran so far, earlier segments included; it
*supersedes* the run's earlier segments, which stay listed but count nothing (a killed run's last
booking counts until a resumed segment supersedes it).

Composition rule (what budgets are checked against): each run counts its own accountant's
composition of all its segments; across runs, BASIC composition: the runs' epsilons on a dataset
add up and so do their deltas (valid for any mix of mechanisms). `tighter()` also offers the
Opacus accountant's composition of all runs' DP-SGD histories (labelled).
It covers only what privsynth ran: tuning on the private data elsewhere is not in it.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import hashlib
import hmac
import json
import math
import os
import socket
import sys
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from ..errors import BudgetError, ConfigError
from .checks import PrivacyWarning
from .ledger_store import Store, Tx, process_alive, redact, this_host

if TYPE_CHECKING:
    from ..data.dataset import Content

ENV_VAR = "PRIVSYNTH_LEDGER"
COMPOSITION_RULE = (
    "basic composition across runs: the epsilons of all runs booked on a dataset, or on any "
    "dataset sharing a record with it, add up, and so do their deltas (valid for any mix of "
    "mechanisms); each run counts its "
    "accountant's composition of everything it ran (all its segments, resumed ones "
    "included), once; budgets are checked against this sum"
)
# A dataset: its records (`Content`, keyed by the ledger) or a key the ledger already gave.
DatasetRef = Union["Content", str]
RECORD_HEX = 16  # keyed record digests kept as 64-bit prefixes: collisions need ~2**32 records
RUNNING = "running"


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
    if location:
        return str(location)
    return os.environ.get(ENV_VAR) or str(default_location())


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


@dataclass
class Spend:
    epsilon: float
    delta: float


def counted(row: dict[str, Any]) -> Spend:
    """What one segment counts for: its reservation while running, what it booked once settled."""
    if row["status"] == RUNNING:
        return Spend(
            max(row["reserved_epsilon"], row["epsilon"]), max(row["reserved_delta"], row["delta"])
        )
    return Spend(row["epsilon"], row["delta"])


def run_scoped(row: dict[str, Any]) -> bool:
    """Whether a segment booked its whole run (and so supersedes the run's earlier segments)."""
    acc = row["accounting"]
    if isinstance(acc, str):
        acc = json.loads(acc or "{}")
    return (acc or {}).get("scope") == "run"


def counts(rows: list[dict[str, Any]]) -> dict[str, Spend]:
    """What each segment counts for, by id (``rows`` in ledger order: started, id).

    A run's whole-run segments count once, on its latest one: each books the run's accountant
    composition of everything the run ran before it plus its own steps, so the latest covers
    the earlier ones. The largest of them is counted (a guard: a later segment never books less
    than an earlier one); the earlier ones count nothing. Other segments add up."""
    out: dict[str, Spend] = {}
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if run_scoped(r):
            runs.setdefault((r["fingerprint"], r["run_id"]), []).append(r)
        else:
            out[r["id"]] = counted(r)
    for members in runs.values():
        each = [counted(r) for r in members]
        whole = Spend(max(c.epsilon for c in each), max(c.delta for c in each))
        for r in members:
            out[r["id"]] = whole if r is members[-1] else Spend(0.0, 0.0)
    return out


def _check_budget(value: float | None, flag: str) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{flag} must be a finite epsilon > 0, got {value}")


class Ledger:
    """One ledger database. Opening it does not create it; the first write does."""

    def __init__(self, location: str | os.PathLike[str] | None = None):
        self.location = resolve_location(location)
        self.store = Store(self.location)

    def __repr__(self) -> str:
        return f"Ledger({redact(self.location)!r})"

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
            return _keyed(_secret(tx), dataset.digest)

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
        """Check the budget and reserve ``(epsilon, delta)`` in one locked transaction.

        The budget is the dataset's (set by `set_budget`) and, if given, ``limit`` (a run's
        ``--budget``): a run may only be stricter, never raise or rewrite the dataset's budget.
        ``segment`` re-reserves an existing segment (e.g. the exact plan replacing a target).
        Returns the segment id; raises `BudgetError` (nothing written) if it does not fit.
        Book (`book`) before the first private step: a process found dead later settles to
        what it booked, and until it books that is nothing.

        ``fingerprint`` is the dataset's `Content` (or its key): the budget of every booked
        dataset that shares a record with it is checked too, each against the spends of all
        datasets sharing a record with *it* (`privsynth.privacy.ledger` module docstring)."""
        _check_budget(limit, "--budget")
        with self.store.transaction() as tx:
            now = _now()
            fingerprint = resolve_key(tx, fingerprint, name, now)
            graph = overlaps(tx)
            mine = graph.get(fingerprint, {fingerprint})
            # Locked in sorted order: two runs locking overlapping datasets cannot deadlock.
            budgets = {k: tx.lock_dataset(k, name, now) for k in sorted(mine)}
            names = dict(tx.run("SELECT fingerprint, name FROM datasets"))
            for k in mine:
                self._settle_dead(tx, k)
            whole_run = (accounting or {}).get("scope") == "run"
            bounds = []
            for k in sorted(mine, key=lambda k: k != fingerprint):
                rows = [r for r in self._charged(tx, graph.get(k, {k})) if r["id"] != segment]
                ours = [
                    r
                    for r in rows
                    if whole_run
                    and r["fingerprint"] == fingerprint
                    and r["run_id"] == run_id
                    and run_scoped(r)
                ]
                each = counts(rows)
                # A whole-run segment replaces its run's earlier booking: the run counts what it
                # reserves now (never less than it counted before), the other runs what they count.
                before = max((each[r["id"]].epsilon for r in ours), default=0.0)
                spent = sum(e.epsilon for e in each.values()) - before
                whose = (
                    "the dataset's budget in the ledger"
                    if k == fingerprint
                    else f"the budget of dataset '{names.get(k, k[:12])}' ({k[:12]}), which "
                    "shares records with it"
                )
                limits = [(budgets[k], whose)]
                if k == fingerprint:
                    limits.append((limit, "this run's --budget"))
                for bound, which in limits:
                    if bound is not None:
                        bounds.append((bound, which, spent, before, rows, ours, k))
            forced = False
            need = lambda before: max(float(epsilon), before)
            over = [b for b in bounds if b[2] + need(b[3]) > b[0] + 1e-9]
            if over:
                bound, which, spent, before, rows, ours, k = max(
                    over, key=lambda b: b[2] + need(b[3]) - b[0]
                )
                runs = len({r["run_id"] for r in rows} - ({run_id} if ours else set()))
                running = sum(r["status"] == RUNNING for r in rows if r not in ours)
                message = (
                    f"dataset '{name}' ({fingerprint[:12]}) has spent epsilon {spent:.4g} of "
                    f"{which}, {bound:g} (basic composition of {runs} other run(s)"
                    f"{f', {running} segment(s) still running' if running else ''}; ledger "
                    f"{self.shown}); this run needs {need(before) - before:.4g} more"
                    f"{f' (it has {before:.4g} booked from earlier segments)' if ours else ''}"
                )
                if not force:
                    raise BudgetError(
                        f"{message}. Lower --epsilon, raise the budget with `privsynth ledger "
                        f"set-budget {k[:12]} EPS`, or pass --force"
                    )
                forced = True
                # --force is never silent: one line on stderr, `forced` on the row.
                warnings.warn(
                    f"--force: {message}; booked anyway, marked forced in the ledger",
                    PrivacyWarning,
                    stacklevel=3,
                )
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
                    "fingerprint": fingerprint,
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

    def book(
        self, segment: str, *, epsilon: float, delta: float, accounting: dict | None = None
    ) -> None:
        """A running segment's spend so far (never more than its reservation is counted while
        it runs; this is what it settles to if its process dies)."""
        values: dict[str, Any] = dict(epsilon=float(epsilon), delta=float(delta), updated=_now())
        if accounting is not None:
            values["accounting"] = json.dumps(accounting)
        with self.store.transaction() as tx:
            tx.update_spend(segment, **values)

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
        values: dict[str, Any] = dict(
            status=status, epsilon=float(epsilon), delta=float(delta), updated=_now(), note=note
        )
        if accounting is not None:
            values["accounting"] = json.dumps(accounting)
        with self.store.transaction() as tx:
            tx.update_spend(segment, **values)

    def cancel(self, segment: str) -> None:
        """Drop a reservation whose process never touched the data (refused before any step)."""
        with self.store.transaction() as tx:
            tx.run("DELETE FROM spends WHERE id = ? AND status = ?", (segment, RUNNING))

    @staticmethod
    def _charged(tx: Tx, keys: set[str]) -> list[dict[str, Any]]:
        """The segments booked on any of ``keys``."""
        marks = ", ".join("?" for _ in keys)
        return tx.spends(f"WHERE fingerprint IN ({marks})", tuple(sorted(keys)))

    def _settle_dead(self, tx: Tx, fingerprint: str) -> None:
        """Segments whose process on this machine is gone settle to what they booked (their
        last checkpoint plus one checkpoint interval: an upper bound on what ran)."""
        for r in tx.spends("WHERE fingerprint = ? AND status = ?", (fingerprint, RUNNING)):
            if process_alive(r["host"], r["pid"]) is False:
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
            if not isinstance(fingerprint, str):
                fingerprint = _keyed(_secret(tx), fingerprint.digest)
            rows = self._charged(tx, overlaps(tx).get(fingerprint, {fingerprint}))
        each = counts(rows).values()
        return Spend(sum(c.epsilon for c in each), sum(c.delta for c in each))

    def run_segments(self, fingerprint: DatasetRef, run_id: str) -> list[dict[str, Any]]:
        """One run's segments on a dataset, oldest first (``accounting`` decoded). Reading only."""
        if not self.store.exists():
            return []
        with self.store.transaction(write=False) as tx:
            if not isinstance(fingerprint, str):
                fingerprint = _keyed(_secret(tx), fingerprint.digest)
            rows = tx.spends("WHERE fingerprint = ? AND run_id = ?", (fingerprint, run_id))
        for r in rows:
            r["accounting"] = json.loads(r["accounting"] or "{}")
        return rows

    def settle_stale(self) -> None:
        """Settle every running segment whose process on this machine is gone (killed by the
        kernel, power loss) to what it booked, so no listing shows a dead run as running."""
        if not self.store.exists():
            return
        with self.store.transaction() as tx:
            running = tx.run("SELECT DISTINCT fingerprint FROM spends WHERE status = ?", (RUNNING,))
            for (key,) in running:
                self._settle_dead(tx, key)

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
        out = []
        for fp, name, budget, created in sets:
            rows = [r for r in spends if r["fingerprint"] == fp]
            each = counts(rows)
            runs: dict[str, dict] = {}
            for r in rows:
                mine = each[r["id"]]
                r["counted_epsilon"], r["counted_delta"] = mine.epsilon, mine.delta
                r["accounting"] = json.loads(r["accounting"] or "{}")
                run = runs.setdefault(
                    r["run_id"],
                    {"method": r["method"], "out": r["out"], "kind": r["kind"], "segments": []},
                )
                run["segments"].append(r)
                run["status"] = r["status"]
                run["forced"] = bool(
                    run.get("forced") or r["forced"] or r["accounting"].get("forced")
                )
                run["epsilon"] = sum(s["counted_epsilon"] for s in run["segments"])
                run["delta"] = sum(s["counted_delta"] for s in run["segments"])
            for run in runs.values():  # earlier whole-run segments: listed, counted in the last
                scoped = [s for s in run["segments"] if run_scoped(s)]
                for s in scoped[:-1]:
                    s["superseded"] = True
            out.append(
                {
                    "fingerprint": fp,
                    "name": name,
                    "budget": budget,
                    "created": created,
                    "epsilon_spent": sum(r["counted_epsilon"] for r in rows),
                    "delta_spent": sum(r["counted_delta"] for r in rows),
                    # what its budget is checked against: its spends and those of every
                    # dataset sharing a record with it
                    "shares_records_with": sorted(graph.get(fp, {fp}) - {fp}),
                    "epsilon_charged": sum(
                        c.epsilon
                        for c in counts(
                            [r for r in spends if r["fingerprint"] in graph.get(fp, {fp})]
                        ).values()
                    ),
                    "segments": len(rows),
                    "runs": runs,
                    "run_count": len(runs),
                    "budget_log": [
                        dict(zip(("old", "new", "at", "who", "reason"), e[1:], strict=True))
                        for e in log
                        if e[0] == fp
                    ],
                }
            )
        return out

    def summary(self) -> list[dict[str, Any]]:
        return self.datasets()

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


# --- dataset keys ---------------------------------------------------------------------------------
def _secret(tx: Tx) -> bytes:
    (row,) = tx.run("SELECT value FROM meta WHERE key = 'secret'")
    return bytes.fromhex(row[0])


def _keyed(secret: bytes, digest: bytes) -> str:
    return hmac.new(secret, b"dataset\x00" + digest, hashlib.sha256).hexdigest()


def _keyed_records(secret: bytes, content: "Content") -> str:
    """Each record's keyed digest (64-bit prefix), sorted and concatenated: what the ledger
    keeps to recognise records shared with another dataset, useless without the secret."""
    parts = {
        hmac.new(secret, b"record\x00" + r, hashlib.sha256).hexdigest()[:RECORD_HEX]
        for r in content.records
    }
    return "".join(sorted(parts))


def _record_set(text: str) -> set[str]:
    return {text[i : i + RECORD_HEX] for i in range(0, len(text), RECORD_HEX)}


def resolve_key(tx: Tx, dataset: DatasetRef, name: str, now: str) -> str:
    """The dataset's key in this ledger; a `Content` gets its dataset row and records stored."""
    if isinstance(dataset, str):
        return dataset
    secret = _secret(tx)
    key = _keyed(secret, dataset.digest)
    # the row only, not its lock: callers lock their datasets in sorted order (no deadlock)
    tx.run(
        "INSERT INTO datasets (fingerprint, name, budget, created) VALUES (?, ?, NULL, ?) "
        "ON CONFLICT (fingerprint) DO NOTHING",
        (key, name or key[:12], now),
    )
    if not tx.run("SELECT fingerprint FROM dataset_records WHERE fingerprint = ?", (key,)):
        tx.run(
            "INSERT INTO dataset_records (fingerprint, records) VALUES (?, ?) "
            "ON CONFLICT (fingerprint) DO NOTHING",
            (key, _keyed_records(secret, dataset)),
        )
    return key


def overlaps(tx: Tx) -> dict[str, set[str]]:
    """For every dataset key with stored records: the keys that share at least one record with
    it, itself included."""
    rows = tx.run("SELECT fingerprint, records FROM dataset_records")
    sets = {k: _record_set(r) for k, r in rows}
    return {
        k: {j for j, other in sets.items() if j == k or not mine.isdisjoint(other)}
        for k, mine in sets.items()
    }
