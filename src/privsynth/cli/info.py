"""Print a run's privacy card: the guarantee, how it was computed, the data owner's one-sentence
summary and the dataset's total spend in the ledger (read now)."""

from __future__ import annotations

import argparse
import json

from ..report.card_lines import format_card

HELP = "print a run's privacy card"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder")
    p.add_argument("--json", action="store_true", help="print card.json as is")


def run(args: argparse.Namespace) -> int:
    from ..run import dataset_spend, read_card

    card = read_card(args.run)
    print(json.dumps(card, indent=2) if args.json else format_card(card, dataset_spend(card)))
    return 0
