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
