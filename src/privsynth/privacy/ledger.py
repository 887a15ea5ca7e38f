"""The privacy ledger: what every run has spent on each dataset, keyed by its fingerprint.

One JSON file (``privacy-ledger.json`` next to the run folders, or a path the user names).
Each run owns one entry, updated in place at every checkpoint, so a resumed run keeps spending
from its own entry: the budget is never reset and never counted twice.

Spends across runs compose by *basic composition* (epsilons add, deltas add), a safe upper
bound for any mix of mechanisms. It covers only what privsynth ran: hyper-parameter tuning on
the private data, or releases made elsewhere, are not in it.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..atomic import write_json
from ..errors import BudgetError, CheckpointError, ConfigError

LEDGER_NAME = "privacy-ledger.json"


def default_ledger_path(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir).resolve().parent / LEDGER_NAME


@dataclass
class Spend:
    epsilon: float
    delta: float


class Ledger:
    """Several runs may share one ledger file at once: every check and record re-reads it under
    an exclusive lock (``<ledger>.lock``) and changes only its own run's entry, so concurrent runs
    never overwrite each other's spend."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.data = self._read()

    @contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as f:
            try:
                import fcntl
            except ImportError:  # not POSIX: no cross-process lock, still re-read before writing
                fcntl = None
            if fcntl is not None:
                fcntl.flock(f, fcntl.LOCK_EX)
            try:
                self.data = self._read()
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(f, fcntl.LOCK_UN)

    def _read(self) -> dict:
        if not self.path.exists():
            return {"version": 1, "datasets": {}}
        try:
            data = json.loads(self.path.read_text())
        except json.JSONDecodeError as e:
            raise CheckpointError(f"privacy ledger {self.path} is not valid JSON ({e}); restore it "
                                  "from a backup — deleting it forgets what was spent") from None
        data.setdefault("datasets", {})
        return data

    def dataset(self, fingerprint: str, name: str = "") -> dict:
        return self.data["datasets"].setdefault(fingerprint,
                                                {"name": name, "budget": None, "runs": {}})

    def spent(self, fingerprint: str, exclude_run: str | None = None) -> Spend:
        runs = self.data["datasets"].get(fingerprint, {}).get("runs", {})
        chosen = [r for rid, r in runs.items() if rid != exclude_run]
        return Spend(sum(r["epsilon"] for r in chosen), sum(r["delta"] for r in chosen))

    def check(self, fingerprint: str, name: str, run_id: str, planned_epsilon: float,
              budget: float | None, force: bool = False) -> None:
        """Refuse a run whose planned epsilon would push the dataset past its budget.

        A ``budget`` given here becomes the dataset's budget in the ledger file."""
        if budget is not None and not (budget > 0 and math.isfinite(budget)):
            raise ConfigError(f"--budget must be a finite epsilon > 0, got {budget}; omit it for "
                              "no budget")
        with self._locked():
            entry = self.dataset(fingerprint, name)
            if budget is not None and entry["budget"] != budget:
                entry["budget"] = float(budget)
                write_json(self.path, self.data)
            budget = entry["budget"]
            spent = self.spent(fingerprint, exclude_run=run_id).epsilon
        if budget is None or force:
            return
        if spent + planned_epsilon > budget + 1e-9:
            raise BudgetError(f"dataset '{name}' has spent epsilon={spent:.3g} of its budget "
                              f"{budget:g}; this run plans {planned_epsilon:.3g} more. Lower "
                              "--epsilon, raise --budget, or pass --force to override")

    def record(self, fingerprint: str, name: str, run_id: str, *, epsilon: float, delta: float,
               **info) -> None:
        """Set (not add) this run's spend so far; written atomically."""
        with self._locked():
            entry = self.dataset(fingerprint, name)
            now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            run = entry["runs"].setdefault(run_id, {"started": now})
            run.update(info, epsilon=float(epsilon), delta=float(delta), updated=now)
            write_json(self.path, self.data)

    def summary(self) -> list[dict]:
        rows = []
        for fp, entry in self.data["datasets"].items():
            total = self.spent(fp)
            rows.append({"fingerprint": fp, "name": entry.get("name", ""),
                         "budget": entry["budget"],
                         "epsilon_spent": total.epsilon, "delta_spent": total.delta,
                         "runs": entry["runs"]})
        return rows
