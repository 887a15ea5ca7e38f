"""What each ledger segment counts for, and the composition rule budgets are checked against."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

COMPOSITION_RULE = (
    "basic composition across runs: the epsilons of all runs booked on a dataset, or on any "
    "dataset sharing a record with it, add up, and so do their deltas (valid for any mix of "
    "mechanisms); each run counts its "
    "accountant's composition of everything it ran (all its segments, resumed ones "
    "included), once; budgets are checked against this sum"
)
RUNNING = "running"


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
    """What each segment counts for, by id (``rows`` in ledger order: started, id). A run's
    whole-run segments count once, on its latest one (which covers the earlier ones), at the
    largest of their values (a guard: a later one never books less); other segments add up."""
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
