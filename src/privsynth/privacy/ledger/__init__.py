"""The privacy ledger: what every run has spent on each dataset, in a database (SQLite or
PostgreSQL). Where it lives, how datasets are keyed and how segments are reserved, booked and
settled: docs/privacy.md, "The privacy ledger".

Where (the first that applies): ``--ledger LOCATION`` (a ``ledger=`` argument), the environment
variable ``PRIVSYNTH_LEDGER``, else one default file per user (`default_location`).

Key: HMAC-SHA256(the ledger's secret, the dataset's `Content` digest), so the same records in any
encoding or order share one budget and a key reveals nothing without the ledger; each key's
records are kept as keyed digests, so a dataset sharing a record with another is charged against
both budgets. Rows are *segments* (one process's part of a run); a whole-run segment
(``accounting.scope == "run"``, what `RunSpend` writes) supersedes the run's earlier ones.

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
