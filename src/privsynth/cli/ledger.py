"""The privacy ledger every verb books into: $PRIVSYNTH_LEDGER or the per-user ledger unless
--ledger names a SQLite file or a postgresql:// URL."""

# privsynth ledger [show] [KEY | --data D]     spends, budgets, composition rule
# privsynth ledger set-budget (KEY | --data D) EPS --reason TEXT
# KEY: the leading characters of a dataset's key in this ledger (keyed with the ledger's secret;
# never a plain hash of the data), as `privsynth ledger` prints it.

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from ..errors import CheckpointError
from .options import add_format_options, add_ledger_option, data_source

HELP = "show the privacy ledger; set a dataset's budget"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_ledger_option(p)
    p.add_argument("--json", action="store_true", help="print the ledger as JSON")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    both = argparse.ArgumentParser(add_help=False)  # the flags every action takes
    both.add_argument(
        "--ledger", default=argparse.SUPPRESS, metavar="PATH|URL", help="ledger location (as above)"
    )
    both.add_argument(
        "--data", default=None, help="pick the dataset by its data ('digits', a path)"
    )
    add_format_options(both)  # e.g. IDX needs --classes to load (the key does not depend on them)
    show = actions.add_parser(
        "show", parents=[both], help="spends per dataset (the default action)"
    )
    show.add_argument(
        "fingerprint", nargs="?", metavar="KEY", help="only this dataset (6+ leading characters)"
    )
    show.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print the ledger as JSON"
    )
    budget = actions.add_parser(
        "set-budget",
        parents=[both],
        help="set (or with 'none' remove) a dataset's epsilon budget; logged",
    )
    budget.add_argument(
        "target",
        nargs="+",
        metavar="[KEY] EPS",
        help="the dataset's key in the ledger (or --data) and the new budget",
    )
    budget.add_argument("--reason", required=True, help="why: recorded in the budget log")
    p.set_defaults(action=None, fingerprint=None, data=None)


def run(args: argparse.Namespace) -> int:
    from ..privacy import Ledger

    led = Ledger(args.ledger)
    if args.ledger and args.action in (None, "show") and not led.store.exists():
        raise CheckpointError(
            f"no ledger at '{args.ledger}'; check the path (without --ledger, "
            "`privsynth ledger` reads $PRIVSYNTH_LEDGER or the per-user ledger)"
        )
    return _set_budget(led, args) if args.action == "set-budget" else _show(led, args)


def _dataset(args: argparse.Namespace):
    """(records, name) of ``--data`` with its format flags; the ledger keys the records."""
    from ..data import load_dataset

    ds = load_dataset(data_source(args))
    return ds.content, ds.name


def _set_budget(led, args) -> int:
    from ..errors import ConfigError

    if not args.reason.strip():  # the log is the only record of why a budget changed
        raise ConfigError(
            "--reason is empty; say why the budget changes (it is logged), e.g. "
            "--reason 'DPO sign-off'"
        )
    if len(args.target) != (1 if args.data else 2):
        raise ConfigError(
            "set-budget takes KEY EPS (the dataset key `privsynth ledger` shows), or --data D "
            "EPS; e.g. `privsynth ledger set-budget --data digits 8 --reason 'DPO sign-off'`"
        )
    raw = args.target[-1]
    try:
        budget = None if raw.lower() == "none" else float(raw)
    except ValueError:
        raise ConfigError(
            f"budget '{raw}' is not a number; give an epsilon such as 8, or 'none' "
            "to remove the budget"
        ) from None
    if args.data:
        dataset, name = _dataset(args)
    else:
        found = led.find(args.target[0])
        dataset, name = found["fingerprint"], found["name"]
    old = led.set_budget(dataset, budget, name=name, reason=args.reason)
    fingerprint = led.key(dataset)
    spent = led.spent(fingerprint).epsilon
    if budget is not None and budget < spent:
        print(
            f"privsynth: warning: the budget {_fmt(budget)} is below the epsilon {spent:.4g} "
            f"already spent on {name}: every further run on it will be refused",
            file=sys.stderr,
        )
    print(
        f"{name} ({fingerprint[:12]}): budget {_fmt(old)} -> {_fmt(budget)} in ledger "
        f"{led.shown} (logged: {args.reason})"
    )
    return 0


def _show(led, args: argparse.Namespace) -> int:
    from ..privacy.composition import tighter
    from ..privacy.ledger import COMPOSITION_RULE

    # a run killed outright (OOM, power loss) is shown as what it booked, not "running"; a
    # read-only ledger is still listed as it stands
    with contextlib.suppress(CheckpointError):
        led.settle_stale()
    rows = led.datasets()
    if args.data:
        key = led.key(_dataset(args)[0], create=False)  # --data with its format flags
        rows = [r for r in rows if r["fingerprint"] == key]
    elif args.fingerprint:
        rows = [led.find(args.fingerprint)]
    for row in rows:
        row["tighter"] = tighter(row)
    if args.json:
        listing = {"ledger": led.shown, "composition": COMPOSITION_RULE, "datasets": rows}
        print(json.dumps(listing, indent=2, default=str))
        return 0
    print(f"privacy ledger {led.shown}")
    print(f"composition: {COMPOSITION_RULE}")
    if not rows:
        print(
            "no spends on this dataset" if args.data or args.fingerprint else "no spends booked yet"
        )
    for row in rows:
        print(_format_dataset(row))
    return 0


def _fmt(budget) -> str:
    return "none" if budget is None else f"{budget:g}"


def _format_dataset(row: dict) -> str:
    from ..privacy.ledger.store import process_alive

    lines = [
        f"\n{row['name']} ({row['fingerprint'][:12]}): epsilon spent "
        f"{row['epsilon_spent']:.4g} of budget {_fmt(row['budget'])}, delta spent "
        f"{row['delta_spent']:.3g} (basic composition of {row['run_count']} run(s), each "
        "its accountant's composition of its segments)"
    ]
    if row.get("shares_records_with"):
        lines.append(
            f"  shares records with {', '.join(k[:12] for k in row['shares_records_with'])}: "
            f"its budget is checked against epsilon {row['epsilon_charged']:.4g} (their "
            "spends and its own)"
        )
    t = row.get("tighter")
    if t:
        lines.append(
            f"  tighter: epsilon {t['epsilon']:.4g} at the same delta ({t['accountant']} "
            f"accountant over {t['dp_sgd_segments']} DP-SGD runs' histories; a "
            "tighter bound, NOT what budgets are checked against)"
        )
    for e in row["budget_log"]:
        lines.append(
            f"  budget {_fmt(e['old'])} -> {_fmt(e['new'])} by {e['who']} at {e['at']}: "
            f"{e['reason']}"
        )
    for rid, run in row["runs"].items():
        lines.append(
            f"  run {rid}  {run['method'] or run['kind']:<12} eps {run['epsilon']:.4g}  "
            f"delta {run['delta']:.3g}  [{run['status']}]"
            f"{'  forced' if run.get('forced') else ''}  {run['out']}"
        )
        if len(run["segments"]) > 1 or run["status"] not in ("complete", "booked"):
            for s in run["segments"]:
                status = s["status"]
                if status == "running" and process_alive(s["host"], s["pid"]) is False:
                    status = "running, process gone: settles as abandoned at the next booking"
                if s.get("superseded"):  # the run's later segment booked its steps too
                    status += ", superseded by the run's later segment"
                lines.append(
                    f"    segment {s['id'][:8]}  {status:<11} eps "
                    f"{s['counted_epsilon']:.4g}  delta {s['counted_delta']:.3g}"
                    f"{'  (forced)' if s['forced'] else ''}"
                    f"{'  ' + s['note'] if s['note'] else ''}"
                )
    return "\n".join(lines)
