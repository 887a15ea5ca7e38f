"""The validation table `--method auto` reads (src/privsynth/models/auto.py: RULE and COST),
printed from the suite's validation row files only, so anyone can re-check the rule:

    python bench/auto_rule.py [--results bench/results/suite]

Per (protocol, dataset, method, epsilon): the seeds scored, LeNet / ResNet TSTR on the validation
split (mean over seeds), Fréchet distance and detection AUC, then the training cost the cost model
reads (CPU seconds of one thread): one-shot methods per generator step (the ceiling `steps`; early
stopping makes it an upper bound), DP-SGD methods per image per epoch. Holdout rows are never read.
Rows of different protocols (e.g. evaluation classifiers trained on another schedule) are never
averaged together, and methods are ranked only against rows of their own protocol; `--protocol`
keeps one.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from privsynth.models.defaults import SAMPLING_FIELDS, changed_settings
from privsynth.models.registry import method_class

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "suite"


def rows(results: Path, protocol: str | None = None) -> list[dict]:
    """Every validation row of a DP run, clean (not from a dirty tree) ones only, of
    ``protocol`` if given. `auto` chooses by a finite epsilon: a non-private twin's row
    (epsilon "inf") is a ceiling to read beside the rule, never one of its choices."""
    found = [json.loads(p.read_text()) for p in sorted((results / "validation").rglob("*.json"))]
    return [
        r
        for r in found
        if r.get("score") == "validation"
        and not r.get("dirty")
        and r.get("epsilon") != "inf"
        and protocol in (None, r.get("protocol"))
    ]


def cost(row: dict) -> tuple[str, float]:
    """(unit, seconds per unit) of the row's training."""
    # CPU seconds of the cell's own (one-thread) process: its wall time on the shared machine
    # ran up to 9x longer under other jobs' load (dpgan eps 10: 887 s wall, 96 s CPU)
    config, seconds = row["config"], row["train"]["cpu_seconds"]
    if method_class(row["method"]).kind == "one-shot":
        return "s/step", seconds / config["steps"]
    return "s/image-epoch", seconds / (row["n_train"] * config["epochs"])


def table(found: list[dict]) -> str:
    cells = defaultdict(list)
    for r in found:  # a tuning trial (another config, public pretraining) is a line of its own
        label = r["method"] + ("" if at_default(r) else " (trial)")
        setting = json.dumps([r["config"], r.get("public_data")], sort_keys=True)
        cells[(r["protocol"], r["dataset"], r["epsilon"], label, setting)].append(r)
    lines = [
        "| protocol | dataset | eps | method | seeds | TSTR LeNet | TSTR ResNet | FD | det. AUC | "
        "config | train cost |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = sorted(cells.items(), key=lambda kv: (kv[0][1], kv[0][0], -kv[0][2], kv[0][3]))
    for (protocol, dataset, eps, method, _), rs in order:
        lenet, resnet, fd, auc = (
            statistics.mean(values)
            for values in zip(
                *(
                    (r["tstr"]["lenet"], r["tstr"]["resnet"], r["fd"], r["detection_auc"])
                    for r in rs
                ),
                strict=True,
            )
        )
        unit = cost(rs[0])[0]
        per = statistics.mean(cost(r)[1] for r in rs)
        seeds = ",".join(str(r["seed"]) for r in rs)
        lines.append(
            f"| {protocol} | {dataset} | {eps:g} | {method} | {seeds} | "
            f"{lenet:.1%} | {resnet:.1%} | {fd:.2f} | {auc:.3f} | "
            f"{json.dumps(rs[0]['config'], sort_keys=True)}"
            f"{' + public ' + rs[0]['public_data'] if rs[0].get('public_data') else ''} | "
            f"{per:.3g} {unit} |"
        )
    return "\n".join(lines)


def at_default(row: dict) -> bool:
    """The row ran the method as `auto` would: its current default config (a user's input
    file aside) and no public pretraining. Tuning trials are history, not the method's score."""
    return not row.get("public_data") and not changed_in_row(row)


def trained_at_default(row: dict) -> bool:
    """As `at_default`, sampling-time fields aside: the row trained what `auto` trains today and
    sampled those weights another way (e.g. before a sampling default changed)."""
    changed = set(changed_in_row(row)) - set(SAMPLING_FIELDS)
    return not row.get("public_data") and not changed


def changed_in_row(row: dict) -> dict:
    """The settings suite row ``row`` ran that differ from its method's current default."""
    # rows written before they recorded "channels": cifar5k is the suite's one colour set
    channels = row.get("channels", 3 if row["dataset"] == "cifar5k" else 1)
    return changed_settings(
        row["method"], row["n_train"], float(row["epsilon"]), row["config"], channels
    )


def ranking(found: list[dict]) -> dict[tuple[str, str, float], list[tuple[str, float]]]:
    """(protocol, dataset, epsilon) -> [(method, mean LeNet TSTR)], best first: what RULE's rows
    encode. Only rows of one protocol are compared with each other, and only rows at the
    method's default (`at_default`); where a method has none there, its rows that trained at
    the default and sampled another way (`trained_at_default`): the rule picks what to train."""
    scores = defaultdict(lambda: ([], []))
    for r in filter(trained_at_default, found):
        key = (r["protocol"], r["dataset"], r["epsilon"], r["method"])
        scores[key][0 if at_default(r) else 1].append(r["tstr"]["lenet"])
    out = defaultdict(list)
    for (protocol, dataset, eps, method), (exact, resampled) in scores.items():
        out[(protocol, dataset, eps)].append((method, statistics.mean(exact or resampled)))
    return {key: sorted(ms, key=lambda m: -m[1]) for key, ms in sorted(out.items())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", default=str(RESULTS))
    p.add_argument("--protocol", help="keep only rows of this protocol, e.g. privsynth-suite/2")
    a = p.parse_args(argv)
    found = rows(Path(a.results), a.protocol)
    print(table(found))
    print()
    for (protocol, dataset, eps), ranked in ranking(found).items():
        order = " > ".join(f"{m} {t:.1%}" for m, t in ranked)
        print(f"{protocol} {dataset} eps {eps:g}: {order}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
