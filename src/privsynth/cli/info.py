"""privsynth info: print a run's privacy card."""

from __future__ import annotations

import argparse
import json

from ..report.card_lines import format_card


def add_parser(sub) -> None:
    p = sub.add_parser(
        "info",
        help="print a run's privacy card",
        description="Print a run's privacy card: the guarantee, how it was "
        "computed, the data owner's one-sentence summary and the "
        "dataset's total spend in the ledger (read now).",
    )
    p.add_argument("run", help="run folder")
    p.add_argument("--json", action="store_true", help="print card.json as is")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..run import dataset_spend, read_card

    card = read_card(args.run)
    print(json.dumps(card, indent=2) if args.json else format_card(card, dataset_spend(card)))
    return 0
