"""The privacy ledger: what every run has spent on each dataset, in a database.

Where it lives (the first that applies):
  1. ``--ledger LOCATION`` (a ``ledger=`` argument): a file path (SQLite) or a
     ``postgresql://user@host/db`` URL, for a team that shares one budget across machines;
  2. the environment variable ``PRIVSYNTH_LEDGER`` (same forms);
  3. one default per user: ``$XDG_DATA_HOME/privsynth/ledger.sqlite`` (Linux, default
     ``~/.local/share``), ``~/Library/Application Support/privsynth/ledger.sqlite`` (macOS),
     ``%APPDATA%\\privsynth\\ledger.sqlite`` (Windows).
Every verb (train, sweep, federate, audit, ledger) finds it the same way, wherever it writes.

Key: HMAC-SHA256(the ledger's secret, the dataset's `Content` digest), the content being the
multiset of per-record digests, so any re-encoding, re-ordering or re-indexing of the same records
shares one budget; the secret (32 random bytes in the ``meta`` table) means a key reveals nothing
to anyone without the ledger. Each key's records are kept as keyed record digests: a dataset that
shares a record with another is charged against both budgets, so a superset, a subset or any
overlapping file cannot start a fresh budget.

Rows are *segments*: each process that touched a dataset for a run reserves its planned spend in
the transaction of the budget check, books what ran at every checkpoint (one interval ahead, so a
killed process is never under-booked) and settles when it ends. A segment that touched data is
never deleted: a resumed run adds one with the run's id. A whole-run segment
(``accounting.scope == "run"``, what `RunSpend` writes) books the run's accountant composition of
everything it ran so far and *supersedes* the run's earlier segments (listed, counting nothing).

Composition rule (what budgets are checked against): each run counts its own accountant's
composition of all its segments; across runs, BASIC composition: the runs' epsilons on a dataset
add up and so do their deltas (valid for any mix of mechanisms). `tighter()` also offers the
Opacus accountant's composition of all runs' DP-SGD histories (labelled).
It covers only what privsynth ran: tuning on the private data elsewhere is not in it.

Modules: `ledger` (the `Ledger`: where it lives, reserve / book / settle, budgets), `keys` (dataset
keys and record overlaps), `counting` (what each segment counts for), `queries` (listings),
`store` (SQLite / PostgreSQL), `spend` (one process's segment over a run's life).
"""

from .counting import COMPOSITION_RULE, Spend, counted, counts
from .ledger import ENV_VAR, Ledger, default_location, resolve_location

__all__ = [
    "COMPOSITION_RULE",
    "ENV_VAR",
    "Ledger",
    "Spend",
    "counted",
    "counts",
    "default_location",
    "resolve_location",
]
