"""privsynth ledger: what each dataset's privacy budget has been spent on."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("ledger", help="print the privacy ledger")
    p.add_argument("--ledger", default="runs/privacy-ledger.json",
                   help="ledger file (default runs/privacy-ledger.json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import CheckpointError
    from ..privacy import Ledger

    if not Path(args.ledger).exists():
        raise CheckpointError(f"no ledger at '{args.ledger}'; pass --ledger PATH (it sits beside "
                              "your run folders as privacy-ledger.json)")
    for row in Ledger(args.ledger).summary():
        budget = "none" if row["budget"] is None else f"{row['budget']:g}"
        print(f"{row['name']} ({row['fingerprint'][:12]}): epsilon spent {row['epsilon_spent']:.4g}"
              f" of budget {budget}, delta spent {row['delta_spent']:.3g} (basic composition)")
        for rid, r in row["runs"].items():
            print(f"  {rid}  {r.get('method', '?'):<12} eps {r['epsilon']:.4g}  "
                  f"[{r.get('status', '?')}]  {r.get('out', '')}")
    return 0
