"""Reading the JSON ledger of privsynth <= 0.1 (``privacy-ledger.json`` beside the run folders),
so `Ledger.import_json` can carry its spends and budgets into the database ledger."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import CheckpointError


def read_legacy(
    path: Path, aliases: dict[str, str]
) -> tuple[list[dict[str, Any]], dict[str, tuple[str, float]]]:
    """``(entries, budgets)``: one entry per run (fingerprint, name, run_id, epsilon, delta,
    method, out, status, started) and ``{fingerprint: (name, budget)}`` where one was set.
    ``aliases`` renames JSON keys (pixel fingerprints) to source fingerprints."""
    try:
        data = json.loads(path.read_text())
        datasets = data["datasets"]
    except FileNotFoundError:
        raise CheckpointError(
            f"no JSON ledger at '{path}'; pass the privacy-ledger.json that "
            "sits beside your older run folders"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(
            f"'{path}' is not a privsynth JSON ledger ({type(e).__name__}: {e});"
            " restore it from a backup before importing"
        ) from None
    entries, budgets = [], {}
    for key, ds in datasets.items():
        fp = aliases.get(key, key)
        name = str(ds.get("name") or fp[:12])
        if ds.get("budget") is not None:
            budgets[fp] = (name, float(ds["budget"]))
        for run_id, r in (ds.get("runs") or {}).items():
            entries.append(
                {
                    "fingerprint": fp,
                    "name": name,
                    "run_id": str(run_id),
                    "epsilon": float(r.get("epsilon", 0.0)),
                    "delta": float(r.get("delta", 0.0)),
                    "method": str(r.get("method", "")),
                    "out": str(r.get("out", "")),
                    "status": f"imported ({r.get('status', 'unknown')})",
                    "started": str(r.get("started", "")),
                }
            )
    return entries, budgets
