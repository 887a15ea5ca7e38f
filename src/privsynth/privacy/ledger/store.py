"""Where the privacy ledger is kept: SQLite (standard library) or PostgreSQL, one schema.

A budget check and the reservation it allows are one transaction holding the dataset's lock
(SQLite ``BEGIN IMMEDIATE``; PostgreSQL ``SELECT ... FOR UPDATE`` on its row), so two runs started
together cannot both pass a budget only one fits. PostgreSQL (``postgresql://`` or SQLAlchemy's
``postgresql+psycopg://``) needs ``pip install 'privsynth[postgres]'``.
"""

from __future__ import annotations

import os
import re
import sqlite3
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ...errors import CheckpointError, ConfigError

SCHEMA_VERSION = "1"
_SCHEMA = [
    # One row per dataset (the source fingerprint): its budget, None = no budget.
    """CREATE TABLE IF NOT EXISTS datasets (
        fingerprint TEXT PRIMARY KEY, name TEXT NOT NULL, budget DOUBLE PRECISION,
        created TEXT NOT NULL)""",
    # Every change of a budget, who made it and why: budgets are set on purpose, never by a run.
    """CREATE TABLE IF NOT EXISTS budget_log (
        id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, old_budget DOUBLE PRECISION,
        new_budget DOUBLE PRECISION, at TEXT NOT NULL, who TEXT NOT NULL, reason TEXT NOT NULL)""",
    # One row per *segment*, never replaced (what it counts: the privacy.ledger docstring).
    """CREATE TABLE IF NOT EXISTS spends (
        id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, run_id TEXT NOT NULL,
        kind TEXT NOT NULL, method TEXT NOT NULL, out TEXT NOT NULL, status TEXT NOT NULL,
        reserved_epsilon DOUBLE PRECISION NOT NULL, reserved_delta DOUBLE PRECISION NOT NULL,
        epsilon DOUBLE PRECISION NOT NULL, delta DOUBLE PRECISION NOT NULL,
        accounting TEXT NOT NULL, forced INTEGER NOT NULL, host TEXT NOT NULL,
        pid INTEGER NOT NULL, started TEXT NOT NULL, updated TEXT NOT NULL, note TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS spends_by_dataset ON spends (fingerprint)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # The records of each dataset key, as keyed (HMAC) record digests: a dataset that shares
    # records with a booked one is charged against its budget too (see privacy/ledger/).
    """CREATE TABLE IF NOT EXISTS dataset_records (
        fingerprint TEXT PRIMARY KEY, records TEXT NOT NULL)""",
]
SPEND_COLUMNS = (
    "id fingerprint run_id kind method out status reserved_epsilon reserved_delta epsilon delta "
    "accounting forced host pid started updated note"
).split()


def is_url(location: str) -> bool:
    return bool(re.match(r"^(postgres|postgresql)(\+\w+)?://", location))


def redact(location: str) -> str:
    """A location fit for printing and for cards: the password of a URL replaced by ***."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", location)


class Store:
    """A connection factory plus the SQL differences between SQLite and PostgreSQL."""

    def __init__(self, location: str):
        self.location = location
        self.postgres = is_url(location)
        if self.postgres:
            try:
                import psycopg  # noqa: F401
            except ImportError:
                raise ConfigError(
                    "a PostgreSQL ledger needs psycopg: pip install "
                    "'privsynth[postgres]' (or use a SQLite file path)"
                ) from None
            # libpq takes postgresql://...; drop a SQLAlchemy driver suffix (+psycopg).
            self.dsn = re.sub(r"^(postgres|postgresql)\+\w+://", "postgresql://", location)
        else:
            self.path = Path(location).expanduser()
            if self.path.suffix == ".json":
                raise ConfigError(
                    f"'{location}' is a JSON file; the ledger is a SQLite database: "
                    "pass a .sqlite path (or a postgresql:// URL), or leave --ledger out"
                )
        self._ready = False

    def exists(self) -> bool:
        return True if self.postgres else self.path.exists()

    # --- connections and transactions -----------------------------------------------------
    def _connect(self):
        if self.postgres:
            import psycopg

            try:
                return psycopg.connect(self.dsn, connect_timeout=10)
            except psycopg.OperationalError as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ConfigError(
                    f"cannot reach the PostgreSQL ledger {redact(self.location)} "
                    f"({first}); check the URL, the server and your credentials"
                ) from None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: no implicit transactions; each one starts with BEGIN below.
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            conn.execute("PRAGMA busy_timeout = 60000")
        except sqlite3.Error as e:
            raise CheckpointError(
                f"cannot open the ledger {self.path} ({e}); check the path and "
                "its permissions, or pass --ledger"
            ) from None
        return conn

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator["Tx"]:
        """One transaction, committed at the end of the block or rolled back. ``write=True`` on
        SQLite takes the write lock at once (BEGIN IMMEDIATE): a read-check-write inside cannot
        interleave with another process's."""
        self.ensure_schema()
        conn = self._connect()
        try:
            if not self.postgres:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            tx = Tx(conn, self.postgres)
            try:
                yield tx
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
        except sqlite3.DatabaseError as e:
            raise self._damaged(e) from None
        finally:
            conn.close()

    def _damaged(self, e: Exception) -> CheckpointError:
        if "readonly" in str(e) or "read-only" in str(e):  # intact, only not writable here
            return CheckpointError(
                f"the ledger {self.path} is read-only ({e}); make it writable (file and folder "
                "permissions, a read-only mount) or pass --ledger with a writable one"
            )
        return CheckpointError(
            f"the ledger {self.path} is damaged or not a ledger ({e}); "
            "restore it from a backup: deleting it forgets what was spent"
        )

    def ensure_schema(self) -> None:
        if self._ready:
            return
        conn = self._connect()
        try:
            tx = Tx(conn, self.postgres)
            if self.postgres:  # concurrent first uses: one creates, others wait
                tx.run("SELECT pg_advisory_xact_lock(7405528)")
            else:
                conn.execute("BEGIN IMMEDIATE")
            for stmt in _SCHEMA:
                tx.run(stmt)
            for key, value in (("schema", SCHEMA_VERSION), ("secret", new_secret())):
                tx.run(
                    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                    (key, value),
                )
            conn.commit()
        except sqlite3.DatabaseError as e:
            raise self._damaged(e) from None
        finally:
            conn.close()
        self._ready = True


class Tx:
    """SQL written once with ``?`` placeholders; PostgreSQL gets ``%s``."""

    def __init__(self, conn, postgres: bool):
        self.conn, self.postgres = conn, postgres

    def run(self, sql: str, params: tuple = ()) -> list[tuple]:
        if self.postgres:
            with self.conn.cursor() as cur:
                cur.execute(sql.replace("?", "%s"), params)
                return cur.fetchall() if cur.description else []
        cur = self.conn.execute(sql, params)
        return cur.fetchall()

    def add_dataset(self, fingerprint: str, name: str, now: str) -> None:
        """The dataset's row, created if new (without a budget)."""
        self.run(
            "INSERT INTO datasets (fingerprint, name, budget, created) VALUES (?, ?, NULL, ?) "
            "ON CONFLICT (fingerprint) DO NOTHING",
            (fingerprint, name, now),
        )

    def lock_dataset(self, fingerprint: str, name: str, now: str) -> float | None:
        """Create the dataset's row if new, lock it until the transaction ends; its budget."""
        self.add_dataset(fingerprint, name, now)
        suffix = " FOR UPDATE" if self.postgres else ""  # SQLite: BEGIN IMMEDIATE holds it
        (row,) = self.run(
            f"SELECT budget FROM datasets WHERE fingerprint = ?{suffix}", (fingerprint,)
        )
        return row[0]

    def spends(self, where: str = "", params: tuple = ()) -> list[dict[str, Any]]:
        rows = self.run(
            f"SELECT {', '.join(SPEND_COLUMNS)} FROM spends {where} ORDER BY started, id", params
        )
        return [dict(zip(SPEND_COLUMNS, r, strict=True)) for r in rows]

    def insert_spend(self, row: dict[str, Any]) -> None:
        cols = ", ".join(SPEND_COLUMNS)
        marks = ", ".join("?" for _ in SPEND_COLUMNS)
        self.run(
            f"INSERT INTO spends ({cols}) VALUES ({marks})", tuple(row[c] for c in SPEND_COLUMNS)
        )

    def update_spend(self, spend_id: str, **values: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in values)
        self.run(f"UPDATE spends SET {sets} WHERE id = ?", (*values.values(), spend_id))


def new_secret() -> str:
    """The ledger's key for dataset keys: 32 random bytes, created once with the ledger (the
    first writer wins; ``ON CONFLICT DO NOTHING`` keeps it) and never changed."""
    import secrets

    return secrets.token_hex(32)


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def this_host() -> str:
    """``hostname|machine-id|boot-id``: which machine (and which boot of it) a segment ran on.
    Hostnames alone repeat across containers and CI runners that share one PostgreSQL ledger."""
    import socket

    ids = (_read("/etc/machine-id")[:16], _read("/proc/sys/kernel/random/boot_id")[:16])
    return "|".join((socket.gethostname(), *ids))


def process_alive(host: str, pid: int) -> bool | None:
    """True/False for a process of this machine; None when it ran on another (cannot tell)."""
    name, _, boot = host.rpartition("|")
    mine_name, _, mine_boot = this_host().rpartition("|")
    if name != mine_name:
        return None
    if boot != mine_boot:
        return False  # this machine rebooted since: the process is gone
    if pid == os.getpid():
        return True
    return _windows_pid_alive(pid) if sys.platform == "win32" else _posix_pid_alive(pid)


def _posix_pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _windows_pid_alive(pid: int) -> bool:
    """On Windows os.kill(pid, 0) would terminate the process: ask the kernel instead."""
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return ctypes.get_last_error() == 5  # access denied: it exists; else no such process
    try:
        code = wintypes.DWORD()
        kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        return code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)
