"""Benchmark suite: every dataset split once into private-train / validation / holdout; tuning
reads the validation split only, the holdout is scored once per frozen default set.

    # tuning (default): scores on the validation split, as often as you like
    OMP_NUM_THREADS=1 nice -n 10 python bench/suite.py --dataset mnist10k --methods dpmerf \
        --epsilons 1,10 --seeds 0,1,2 --set dpmerf:steps=3000
    # freeze the defaults chosen on validation, then score the holdout once per cell
    python bench/suite.py --freeze v1 --dataset mnist10k --methods dpmerf --epsilons 1,10
    python bench/suite.py --score holdout --defaults v1 --dataset mnist10k --methods dpmerf \
        --epsilons 1,10 --seeds 0,1,2
    # a DP-SGD method pretrained on images declared public (validation only; the row says so)
    python bench/suite.py --dataset mnist10k --methods dpgan --epsilons 10 --seeds 0 \
        --public-data dpgan=digits
    # the tables (Markdown, mean +/- sd over seeds), generated from the result files only
    python bench/suite.py --table --score holdout

Datasets (`DATASETS`): ``digits`` (embedded, 1 797 images: 1 257 / 270 / 270), ``mnist10k``
(MNIST test set, IDX, 10 000: 7 000 / 1 000 / 2 000) and ``cifar5k`` (CIFAR-10 subset, colour,
5 085: 3 585 / 500 / 1 000), the last two read from ``$PRIVSYNTH_SHARED_DATA`` (default
``../shared/data`` next to the repository). Each split is drawn once with `SPLIT_SEED` and its
row indices are written to ``<results>/splits/NAME.json``; a split file that exists is read,
never redrawn (a dataset whose content changed is an error).

Every cell trains on the private-train rows only (written to ``<out>/data/NAME-train-*.npz``;
the validation rows are its ``--holdout``), with the method's config resolved as
`models.defaults.recommended_config` + ``--set`` (validation) or the frozen set (holdout).
The evaluation (bench/utility.py's: TSTR with LeNet and ResNet, TRTR, FD and PRDC in the
fidelity space of `evaluate.feature_space`, plus the detection AUC) reads exactly one of the
validation or holdout splits; the seed sets training, sampling and every classifier.

One JSON file per result row under ``<results>/validation/`` or ``<results>/holdout/<defaults>/``
with the full commit, the dirty flag, seeds, resolved config, epsilon / delta, protocol version,
command line and machine facts. A dirty work tree is refused (``--allow-dirty`` writes the row
marked dirty, and `markdown` refuses such rows unless told to label them). A holdout cell
(defaults, dataset, method, epsilon, seed) that has a row is never scored again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import utility  # noqa: E402  (the cells' training and evaluation machinery)

from privsynth.errors import ConfigError  # noqa: E402
from privsynth.models.defaults import SAMPLING_FIELDS  # noqa: E402

# 2: the evaluation classifiers train on the fixed SGD schedule; 3: 3x as long on colour sets
# (grey sets: the same schedule as 2)
PROTOCOL = "privsynth-suite/3"
SPLIT_SEED = 20261206
RESULTS = ROOT / "bench" / "results" / "suite"
# name -> where it lives, its format inputs and (private-train, validation, holdout) sizes:
# counts, or fractions of the whole for the embedded digits
DATASETS = {
    "digits": {"path": "digits", "classes": None, "channels": None, "sizes": (0.70, 0.15, 0.15)},
    "mnist10k": {
        "path": "mnist-t10k",
        "classes": "10",
        "channels": None,
        "sizes": (7000, 1000, 2000),
    },
    "cifar5k": {
        "path": "cifar10-5k/cifar10_5k.npz",
        "classes": None,
        "channels": 3,
        "sizes": (3585, 500, 1000),
    },
}
SPLITS = ("train", "validation", "holdout")


class SuiteError(ConfigError):
    """A refused request; main prints it as one line and exits 2."""


def shared_data() -> Path:
    env = os.environ.get("PRIVSYNTH_SHARED_DATA")
    return Path(env).expanduser() if env else ROOT.parent / "shared" / "data"


def load(name: str):
    """The whole dataset NAME (an `ImageDataset`) and its `DataSource` format inputs."""
    from privsynth.data import DataSource, load_dataset
    from privsynth.data.source import parse_classes

    if name not in DATASETS:
        raise SuiteError(f"--dataset {name!r}: one of {', '.join(DATASETS)}")
    spec = DATASETS[name]
    path = spec["path"] if spec["path"] == "digits" else str(shared_data() / spec["path"])
    if path != "digits" and not Path(path).exists():
        raise SuiteError(
            f"{name}: {path} not found; set PRIVSYNTH_SHARED_DATA to the folder holding "
            f"{spec['path']}"
        )
    classes = parse_classes(spec["classes"]) if spec["classes"] else None
    return load_dataset(DataSource(path, classes=classes, channels=spec["channels"]))


def content_sha(dataset) -> str:
    """SHA-256 of a public benchmark's decoded pixels and labels: the split file's check that
    the rows it indexes are still the same images (independent of the ledger's dataset keys)."""
    h = hashlib.sha256(np.ascontiguousarray(dataset.images).tobytes())
    h.update(np.asarray(dataset.labels, np.int64).tobytes())
    return h.hexdigest()


def splits(name: str, dataset, results: Path) -> dict:
    """The dataset's split, read from ``<results>/splits/NAME.json`` or drawn once and written."""
    from privsynth.atomic import atomic_path

    path = results / "splits" / f"{name}.json"
    if path.exists():
        record = json.loads(path.read_text())
        if record["content_sha256"] != content_sha(dataset):
            raise SuiteError(
                f"{path}: recorded for content {record['content_sha256'][:12]}, but {name} now "
                f"reads {content_sha(dataset)[:12]}; restore the data (splits are never redrawn)"
            )
        return record
    n = len(dataset)
    sizes = DATASETS[name]["sizes"]
    counts = [int(round(s * n)) if isinstance(s, float) else s for s in sizes[1:]]
    counts = [n - sum(counts), *counts]
    if counts[0] <= 0 or sum(counts) != n:
        raise SuiteError(f"{name}: split sizes {sizes} do not fit its {n} images")
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    cuts = np.cumsum(counts)[:-1]
    parts = dict(zip(SPLITS, (np.sort(p).tolist() for p in np.split(perm, cuts)), strict=True))
    record = {
        "protocol": PROTOCOL,
        "dataset": name,
        "content_sha256": content_sha(dataset),
        "split_seed": SPLIT_SEED,
        "sizes": dict(zip(SPLITS, counts, strict=True)),
        **parts,
    }
    # one key a line, index lists on theirs: a reviewable file, not 10 000 lines of integers
    with atomic_path(path) as tmp:
        body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in record.items())
        tmp.write_text("{\n" + body + "\n}\n")
    return record


def git_state(repo: Path, outputs: tuple[Path, ...] = ()) -> dict:
    """Full commit of ``repo``'s HEAD and whether its work tree differs from it, not counting
    ``outputs`` (the suite's own result folders: writing a row must not dirty the next run)."""

    def git(*args):
        return subprocess.run(
            ["git", *args], cwd=repo, text=True, capture_output=True, check=True
        ).stdout

    excluded = []
    for out in outputs:
        try:
            excluded.append(f":(exclude){Path(out).resolve().relative_to(Path(repo).resolve())}")
        except ValueError:  # outside the work tree: git does not see it anyway
            pass
    try:
        return {
            "commit": git("rev-parse", "HEAD").strip(),
            "dirty": bool(git("status", "--porcelain", "--", ".", *excluded).strip()),
        }
    except (OSError, subprocess.CalledProcessError) as e:
        raise SuiteError(f"{repo}: not a git work tree ({e}); results need a commit") from None


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _indices_sha(indices) -> str:
    return hashlib.sha256(np.asarray(indices, np.int64).tobytes()).hexdigest()


def _eps(e: float):
    return "inf" if math.isinf(e) else e


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="digits", help=f"one of {', '.join(DATASETS)}")
    p.add_argument("--score", choices=("validation", "holdout"), default="validation")
    p.add_argument("--defaults", default=None, help="frozen default set (--score holdout)")
    p.add_argument("--freeze", default=None, help="write the frozen default set NAME and stop")
    p.add_argument("--methods", default="dpmerf")
    p.add_argument("--epsilons", default="1,10,inf")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--delta", type=float, default=None)
    p.add_argument("--set", action="append", default=[], help="METHOD:KEY=VALUE (validation)")
    p.add_argument(
        "--public-data",
        action="append",
        default=[],
        help="METHOD=PATH: pretrain that method's cells on images declared public (train's "
        "--public-data; 'digits' is the embedded set), validation only",
    )
    p.add_argument("--n-synthetic", type=int, default=None, help="default 10 000")
    p.add_argument(
        "--passes",
        type=int,
        default=None,
        help="classifier images seen (default: the fixed schedule's, 150 000)",
    )
    p.add_argument("--n-fidelity", type=int, default=5000)
    p.add_argument("--out", default=None, help="cells folder (default runs/suite)")
    p.add_argument("--results", default=str(RESULTS))
    p.add_argument("--repo", default=str(ROOT), help="git work tree whose commit is recorded")
    p.add_argument("--allow-dirty", action="store_true", help="write rows marked dirty")
    p.add_argument("--table", action="store_true", help="print the Markdown table and stop")
    p.add_argument(
        "--split-only", action="store_true", help="draw (or check) the dataset's split and stop"
    )
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--in-process",
        action="store_true",
        help="train cells in this process (no fresh interpreter per cell, so no peak-memory "
        "figure; tests and smoke runs)",
    )
    return p.parse_args(argv)


def resolved_configs(a, n_train: int, methods, epsilons, results: Path) -> dict:
    """(method, eps) -> config: the frozen set's (holdout) or recommended + --set (validation)."""
    from privsynth.cli.sweep import parse_sets
    from privsynth.models.defaults import recommended_config

    if a.score == "holdout":
        path = results / "defaults" / f"{a.defaults}.json"
        if not path.exists():
            raise SuiteError(f"--defaults {a.defaults}: {path} not found; write it with --freeze")
        if a.set:
            raise SuiteError("--set applies to validation runs; the holdout reads --defaults only")
        frozen = json.loads(path.read_text())["configs"].get(a.dataset, {})
        out = {}
        for m in methods:
            for e in epsilons:
                cfg = frozen.get(m, {}).get(str(_eps(e)))
                if cfg is None:
                    raise SuiteError(
                        f"--defaults {a.defaults} has no config for {a.dataset} {m} eps "
                        f"{_eps(e)}; freeze one first (--freeze)"
                    )
                out[(m, e)] = cfg
        return out
    sets = parse_sets(a.set)
    channels = DATASETS[a.dataset]["channels"] or 1
    return {
        (m, e): {**recommended_config(m, n_train, e, channels), **sets.get(m, {})}
        for m in methods
        for e in epsilons
    }


def freeze(a, n_train: int, methods, epsilons, results: Path, git: dict) -> Path:
    """Add the validation-resolved configs to the default set ``a.freeze``; a frozen entry is
    never changed (a new choice is a new set name)."""
    from privsynth.atomic import write_json

    path = results / "defaults" / f"{a.freeze}.json"
    record = json.loads(path.read_text()) if path.exists() else {"protocol": PROTOCOL}
    record.setdefault("configs", {}).setdefault(a.dataset, {})
    score_mode, a.score = a.score, "validation"
    configs = resolved_configs(a, n_train, methods, epsilons, results)
    a.score = score_mode
    for (m, e), cfg in configs.items():
        slot = record["configs"][a.dataset].setdefault(m, {})
        old = slot.get(str(_eps(e)))
        if old is not None and old != cfg:
            raise SuiteError(
                f"--freeze {a.freeze}: {a.dataset} {m} eps {_eps(e)} is frozen with another "
                "config; freeze a new set name"
            )
        slot[str(_eps(e))] = cfg
    record.setdefault("frozen_at", []).append(
        {**git, "command": _command(a.argv), "time": time.time()}
    )
    write_json(path, record)
    return path


def public_sources(a) -> dict:
    """--public-data METHOD=PATH -> {method: path}; validation only (a frozen default set
    names no public data, so the holdout never reads it)."""
    if any("=" not in item for item in a.public_data):
        raise SuiteError("--public-data takes METHOD=PATH, e.g. --public-data dpgan=digits")
    if a.public_data and a.score == "holdout":
        raise SuiteError("--public-data applies to validation runs; the holdout reads --defaults")
    return dict(item.split("=", 1) for item in a.public_data)


def trained_with(row: dict) -> dict:
    """A row's config plus its public pretraining set, if any: what tells two cells apart."""
    public = row.get("public_data")
    return {**row["config"], **({"public_data": public} if public else {})}


def method_label(row: dict) -> str:
    """'dpgan', or 'dpgan + public digits' for a cell pretrained on public images."""
    if "public_data" not in row:
        return row["method"]
    return f"{row['method']} + public {Path(row['public_data']).name}"


def _command(argv) -> str:
    return "python bench/suite.py " + " ".join(argv)


def run(argv) -> list[dict]:
    """Score the requested cells; returns the rows written."""
    from privsynth.atomic import atomic_path, write_json
    from privsynth.evaluate.utility import DEFAULT_N_SYNTHETIC, DEFAULT_PASSES
    from privsynth.orchestrate.sweep import _complete, cell_name, parse_epsilons
    from privsynth.run import Run

    a = parse_args(argv)
    a.argv = list(argv)
    results = Path(a.results)
    if a.table:
        print(markdown(read_rows(results, a.score), allow_dirty=a.allow_dirty))
        return []
    if a.split_only:
        record = splits(a.dataset, load(a.dataset), results)
        print(f"{a.dataset}: {record['sizes']} (split seed {record['split_seed']})")
        return []
    git = git_state(Path(a.repo), (results,))
    if git["dirty"] and not a.allow_dirty:
        raise SuiteError(
            f"{a.repo} has uncommitted changes; commit them first (a result must name the "
            "code that made it), or pass --allow-dirty to write rows marked dirty"
        )
    if a.score == "holdout" and not a.defaults:
        raise SuiteError("--score holdout needs --defaults NAME (a set frozen with --freeze)")
    if a.score == "validation" and a.defaults:
        raise SuiteError("--defaults is for --score holdout; validation runs resolve --set")
    public = public_sources(a)
    methods = [m.strip() for m in a.methods.split(",")]
    epsilons = parse_epsilons(a.epsilons)
    seeds = [int(s) for s in a.seeds.split(",")]
    dataset = load(a.dataset)
    split = splits(a.dataset, dataset, results)
    parts = {k: dataset.subset(split[k], name=f"{a.dataset}-{k}") for k in SPLITS}
    train, scored = parts["train"], parts[a.score]
    if a.freeze:
        print(f"froze {freeze(a, len(train), methods, epsilons, results, git)}")
        return []
    configs = resolved_configs(a, len(train), methods, epsilons, results)
    row_dir = results / a.score / (a.defaults or "")
    cells = [(m, e, s) for m in methods for e in epsilons for s in seeds]
    if a.score == "holdout":  # refuse before any work: the holdout is read once per cell
        done = [
            _row_path(row_dir, a.dataset, m, e, s, None)
            for m, e, s in cells
            if _row_path(row_dir, a.dataset, m, e, s, None).exists()
        ]
        if done:
            raise SuiteError(
                f"holdout already scored for --defaults {a.defaults}: {done[0]} (and "
                f"{len(done) - 1} more); the holdout is scored once per frozen default set"
            )
    out = Path(a.out or ROOT / "runs" / "suite")
    data_dir = out / "data"
    files = {}
    for k in ("train", "validation"):  # training sees these two only, never the holdout
        # named by the rows they hold, so a folder shared across result sets never mixes them
        files[k] = data_dir / f"{a.dataset}-{k}-{_indices_sha(split[k])[:12]}.npz"
        if not files[k].exists():
            with atomic_path(files[k]) as tmp, open(tmp, "wb") as fh:
                np.savez(
                    fh,
                    x=parts[k].images,
                    y=parts[k].labels,
                    class_names=np.array(dataset.class_names),
                )
    cells_dir = out / "cells" / f"{a.dataset}-{_indices_sha(split['train'])[:12]}"
    n_syn = a.n_synthetic or DEFAULT_N_SYNTHETIC
    passes = a.passes or DEFAULT_PASSES
    threads = a.threads or int(os.environ.get("OMP_NUM_THREADS", "1"))
    ledger = str(out / "ledger.sqlite")
    written = []
    for s in seeds:
        ref = utility.Reference(
            train, scored, out / "ref" / f"{a.dataset}-{a.score}-seed{s}", a.n_fidelity, passes, s
        )
        for m in methods:
            for e in epsilons:
                config = configs[(m, e)]
                # sampling-time options: the cell trains without them and is sampled with them,
                # so trials of their values share one trained cell
                sample_set = {k: config[k] for k in SAMPLING_FIELDS if k in config}
                fitted = {k: v for k, v in config.items() if k not in sample_set}
                # the public set is part of what the cell trained on: it names the cell apart
                trained = {**fitted, **({"public_data": public[m]} if m in public else {})}
                cell = cells_dir / f"{cell_name(m, e)}-seed{s}-{_hash(trained)[:8]}"
                if not _complete(cell):
                    fit = utility._train_child if a.in_process else utility.train_cell
                    fit(
                        {
                            "data": str(files["train"]),
                            "classes": None,
                            "channels": DATASETS[a.dataset]["channels"],
                            "method": m,
                            "epsilon": str(e),
                            "cell": str(cell),
                            "config": fitted,
                            "common": dict(
                                delta=a.delta,
                                accountant="prv",
                                holdout=str(files["validation"]),
                                split_seed=0,
                                seed=s,
                                image_size=None,
                                ledger=ledger,
                                budget=None,
                                force=False,
                                **({"public_data": public[m]} if m in public else {}),
                            ),
                            "threads": threads,
                        }
                    )
                ev = utility.evaluate_cell(
                    Run.load(cell), ref, n_syn, cell, sample_set, detect=True
                )
                base = utility.cell_row(cell, m, e, ev)
                trtr = ref.info["trtr"]
                row = {
                    "protocol": PROTOCOL,
                    "score": a.score,
                    "defaults": a.defaults,
                    "dataset": a.dataset,
                    "method": m,
                    "epsilon": _eps(e),
                    "seed": s,
                    "split_seed": split["split_seed"],
                    "scored_on": {
                        "split": a.score,
                        "n": len(scored),
                        "indices_sha256": _indices_sha(split[a.score]),
                    },
                    "n_train": len(train),
                    "channels": train.image_shape[0],
                    "commit": git["commit"],
                    "dirty": git["dirty"],
                    "config": config,
                    **({"public_data": public[m]} if m in public else {}),
                    "epsilon_spent": base["epsilon_spent"],
                    "delta": base["delta"],
                    "tstr": {c: r["accuracy"] for c, r in ev["tstr"].items()},
                    "trtr": {c: r["accuracy"] for c, r in trtr.items()},
                    "tstr_over_trtr": {
                        c: ev["tstr"][c]["accuracy"] / trtr[c]["accuracy"]
                        if trtr[c]["accuracy"]
                        else None
                        for c in ev["tstr"]
                    },
                    "detection_auc": ev["detection"]["auc"],
                    "fd": ev["fd_lenet"],
                    "prdc": ev["prdc"],
                    "feature_space": ref.info["feature_space"],
                    "real_floor": ref.info["real_floor"],
                    "n_synthetic": n_syn,
                    "passes": passes,
                    "train": base["train"],
                    "cell": str(cell),
                    "command": _command(argv),
                    "machine": utility.machine(threads),
                    "created": time.time(),
                }
                path = _row_path(row_dir, a.dataset, m, e, s, None if a.score == "holdout" else row)
                if a.score == "holdout" and path.exists():  # a concurrent run got here first
                    raise SuiteError(f"holdout already scored: {path}")
                write_json(path, row)
                written.append(row)
                print(
                    f"{a.dataset} {m} eps {_eps(e)} seed {s} ({a.score}): TSTR LeNet "
                    f"{row['tstr']['lenet']:.1%}, detection AUC {row['detection_auc']:.2f}, "
                    f"recall {row['prdc']['recall']:.2f}",
                    flush=True,
                )
    return written


def _row_path(row_dir: Path, dataset, m, e, s, row) -> Path:
    """Holdout: one file per (dataset, method, eps, seed) under its default set. Validation:
    one per commit and config too, so tuning keeps its history."""
    stem = f"{dataset}-{m}-eps{_eps(e)}-seed{s}"
    if row is not None:
        stem += f"-{row['commit'][:12]}-{_hash(trained_with(row))[:8]}" + (
            "-dirty" if row["dirty"] else ""
        )
    return row_dir / dataset / f"{stem}.json"


def read_rows(results: Path, score: str | None = None) -> list[dict]:
    """Every result row under ``results`` (of one ``score`` kind if given)."""
    kinds = [score] if score else ["validation", "holdout"]
    rows = []
    for k in kinds:
        rows += [json.loads(p.read_text()) for p in sorted((results / k).rglob("*.json"))]
    return rows


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {sd:.3f}"


def markdown(results: list[dict], allow_dirty: bool = False) -> str:
    """Per (score, defaults, dataset) x method x epsilon: TSTR (LeNet) mean ± sd over seeds,
    TSTR/TRTR, detection AUC and recall, n = seeds. Validation rows are grouped by commit and
    config too. Rows written from a dirty tree are refused, or labelled with ``allow_dirty``."""
    dirty = [r for r in results if r["dirty"]]
    if dirty and not allow_dirty:
        raise SuiteError(
            f"{len(dirty)} result rows come from a dirty work tree (e.g. {dirty[0]['dataset']} "
            f"{dirty[0]['method']} seed {dirty[0]['seed']}); rerun from a commit, or label them"
        )
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        key = (
            r["score"],
            r["defaults"] or "",
            r["dataset"],
            method_label(r),
            str(r["epsilon"]),
            "" if r["score"] == "holdout" else r["commit"][:12] + " " + _hash(trained_with(r))[:8],
            r["dirty"],
        )
        groups.setdefault(key, []).append(r)
    lines = [
        "| split | defaults | dataset | method | eps | TSTR LeNet | TSTR/TRTR LeNet | "
        "detection AUC | recall | seeds | commit |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---|",
    ]

    def order(k):
        e = k[4]
        return (k[0], k[1], k[2], k[3], math.inf if e == "inf" else float(e), k[5])

    for key in sorted(groups, key=order):
        rs = groups[key]
        commits = sorted({r["commit"][:12] for r in rs})
        lines.append(
            f"| {key[0]} | {key[1] or '–'} | {key[2]} | {key[3]} | "
            f"{'no DP' if key[4] == 'inf' else key[4]} | "
            f"{_mean_sd([r['tstr']['lenet'] for r in rs])} | "
            f"{_mean_sd([x for r in rs if (x := r['tstr_over_trtr']['lenet']) is not None])} | "
            f"{_mean_sd([r['detection_auc'] for r in rs])} | "
            f"{_mean_sd([r['prdc']['recall'] for r in rs])} | {len(rs)} | "
            f"{', '.join(commits)}{' (dirty)' if key[6] else ''} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from privsynth.errors import PrivsynthError

    try:
        run(argv)
    except (SuiteError, PrivsynthError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
