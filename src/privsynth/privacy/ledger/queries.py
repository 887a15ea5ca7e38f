"""The ledger's listings: every dataset with its budget, spend, runs and budget log, built from
rows read in one transaction (`Ledger.datasets`)."""

from __future__ import annotations

import json
from typing import Any

from .counting import counts, run_scoped


def dataset_listing(
    sets: list[tuple], spends: list[dict[str, Any]], log: list[tuple], graph: dict[str, set[str]]
) -> list[dict[str, Any]]:
    """One entry per dataset row in ``sets`` (fingerprint, name, budget, created), its segments
    from ``spends`` grouped by run, its ``log`` entries and what its budget is charged with
    (its spends and those of every dataset sharing a record with it, from ``graph``)."""
    out = []
    for fp, name, budget, created in sets:
        rows = [r for r in spends if r["fingerprint"] == fp]
        runs = _runs(rows)
        charged = counts([r for r in spends if r["fingerprint"] in graph.get(fp, {fp})])
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
                "epsilon_charged": sum(c.epsilon for c in charged.values()),
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


def _runs(rows: list[dict[str, Any]]) -> dict[str, dict]:
    """One dataset's segments grouped by run, each segment marked with what it counts for."""
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
        run["forced"] = bool(run.get("forced") or r["forced"] or r["accounting"].get("forced"))
    for run in runs.values():
        run["epsilon"] = sum(s["counted_epsilon"] for s in run["segments"])
        run["delta"] = sum(s["counted_delta"] for s in run["segments"])
        for s in [s for s in run["segments"] if run_scoped(s)][:-1]:
            s["superseded"] = True  # an earlier whole-run segment: listed, counted in the last
    return runs
