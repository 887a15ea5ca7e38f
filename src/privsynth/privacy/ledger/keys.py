"""Dataset keys and record overlaps: how the ledger recognises a dataset, and every dataset that
shares a record with it (whose budgets it is charged against), without storing anything that
identifies a record to anyone who lacks the ledger's secret."""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Union

from .store import Tx

if TYPE_CHECKING:
    from ...data.dataset import Content

# A dataset: its records (`Content`, keyed by the ledger) or a key the ledger already gave.
DatasetRef = Union["Content", str]
RECORD_HEX = 16  # keyed record digests kept as 64-bit prefixes: collisions need ~2**32 records


def secret_of(tx: Tx) -> bytes:
    (row,) = tx.run("SELECT value FROM meta WHERE key = 'secret'")
    return bytes.fromhex(row[0])


def keyed(secret: bytes, digest: bytes) -> str:
    return hmac.new(secret, b"dataset\x00" + digest, hashlib.sha256).hexdigest()


def keyed_records(secret: bytes, content: "Content") -> str:
    """Each record's keyed digest (64-bit prefix), sorted and concatenated: what the ledger
    keeps to recognise records shared with another dataset, useless without the secret."""
    parts = {
        hmac.new(secret, b"record\x00" + r, hashlib.sha256).hexdigest()[:RECORD_HEX]
        for r in content.records
    }
    return "".join(sorted(parts))


def record_set(text: str) -> set[str]:
    return {text[i : i + RECORD_HEX] for i in range(0, len(text), RECORD_HEX)}


def key_of(tx: Tx, dataset: DatasetRef) -> str:
    """The dataset's key in this ledger (a string is one already); stores nothing."""
    return dataset if isinstance(dataset, str) else keyed(secret_of(tx), dataset.digest)


def resolve_key(tx: Tx, dataset: DatasetRef, name: str, now: str) -> str:
    """The dataset's key in this ledger; a `Content` gets its dataset row and records stored."""
    if isinstance(dataset, str):
        return dataset
    secret = secret_of(tx)
    key = keyed(secret, dataset.digest)
    # the row only, not its lock: callers lock their datasets in sorted order (no deadlock)
    tx.add_dataset(key, name or key[:12], now)
    if not tx.run("SELECT fingerprint FROM dataset_records WHERE fingerprint = ?", (key,)):
        tx.run(
            "INSERT INTO dataset_records (fingerprint, records) VALUES (?, ?) "
            "ON CONFLICT (fingerprint) DO NOTHING",
            (key, keyed_records(secret, dataset)),
        )
    return key


def overlaps(tx: Tx) -> dict[str, set[str]]:
    """For every dataset key with stored records: the keys that share at least one record with
    it, itself included."""
    rows = tx.run("SELECT fingerprint, records FROM dataset_records")
    sets = {k: record_set(r) for k, r in rows}
    return {
        k: {j for j, other in sets.items() if j == k or not mine.isdisjoint(other)}
        for k, mine in sets.items()
    }
