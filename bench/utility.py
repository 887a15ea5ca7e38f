"""Benchmark: the utility frontier, every method x epsilon, measured the way the field reports it.

For each cell (method, epsilon; ``inf`` = the method's non-private twin, as in `privsynth sweep`):
TSTR with the LeNet and the ResNet of `evaluate.utility` (class-balanced synthetic set, fixed
schedule, last epoch) next to TRTR (same networks on the real training split), FD-LeNet and
precision / recall / density / coverage in `evaluate.features`' space (the LeNet trained on half
of the holdout, as `privsynth evaluate` does), within-class spread and the collapse flags, epsilon
spent, training wall / CPU seconds and peak memory.

    OMP_NUM_THREADS=1 nice -n 10 python bench/utility.py --data digits
    OMP_NUM_THREADS=1 nice -n 10 python bench/utility.py --data ../shared/data/mnist-t10k \
        --classes 10 --holdout 2000 --delta 1e-5 --name mnist10k --max-minutes 100

Writes bench/results/utility_<name>.json (after every cell) and utility_<name>.png (TSTR vs
epsilon per method, both classifiers, with the TRTR line); prints a Markdown table.

Training reuses `privsynth.orchestrate.sweep`'s cells: ``<out>/cells/<method>-eps<e>`` trained with
`models.defaults.recommended_config`, so a rerun (or `privsynth sweep --out` on the same folder)
skips finished cells; every evaluation is cached in the cell (``utility_eval.json``).
Each cell trains in a fresh process so that its peak memory is its own: ``VmHWM`` of that
process (resident set high-water mark, includes Python + torch, 0.3-0.7 GiB; the value before
training starts is recorded as ``baseline_rss_mib``). A cell found complete without this bench's
``bench_train.json`` (trained by an earlier sweep) reports the card's wall time and no memory.
One bench (or `privsynth sweep`) writes an ``--out`` at a time: a second one started on it while
the first runs is refused (`privsynth.lock`); a cell left unfinished is listed (``--collect``).
``--max-minutes``: no cell starts training after that (or when the method's last measured cell
would not fit); those are listed under ``not_run`` with the reason, never dropped.
Privacy spends go to ``--ledger`` (default ``$PRIVSYNTH_LEDGER``, else ``<out>/ledger.sqlite``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from utility_report import markdown, plot_frontier  # noqa: E402

METHODS = "dpmerf,dpkernel,dpvae,dpgan,dpdiffusion"
TRAIN_FILE, EVAL_FILE, GRID_FILE = "bench_train.json", "utility_eval.json", "utility_grid.png"
# --smoke: seconds, for CI (tests/bench/test_bench_smoke.py); figures mean nothing at this size.
SMOKE = {
    "configs": {
        "dpmerf": {"n_features": 32, "steps": 10, "batch_size": 30, "g_width": 8, "z_dim": 8},
        "dpkernel": {"n_features": 16, "steps": 10, "batch_size": 30, "g_width": 8, "z_dim": 8},
        "dpvae": {"epochs": 1, "batch_size": 32, "width": 8, "z_dim": 4},
    },
    "methods": "dpmerf,dpvae",
    "epsilons": "10,inf",
    "n_synthetic": 60,
    "passes": 240,
    "n_fidelity": 60,
}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="digits")
    p.add_argument("--classes", default=None, help="class list for IDX data, e.g. 10")
    p.add_argument("--name", default=None, help="result name (default: the data's name)")
    p.add_argument("--holdout", type=float, default=0.2, help="fraction, or a count (2000)")
    p.add_argument("--delta", type=float, default=None)
    p.add_argument("--methods", default=None, help=f"default {METHODS}")
    p.add_argument("--epsilons", default=None, help="default 1,2,5,10,inf")
    p.add_argument("--set", action="append", default=[], help="METHOD:KEY=VALUE config override")
    p.add_argument(
        "--warmup",
        action="append",
        default=[],
        help="METHOD=KIND: warm-up of that method's private cells (none | central; "
        "docs/warmup.md; default: train's recommended warm-up, models/defaults.py); the no-DP "
        "twin has no release to warm up from and trains without",
    )
    p.add_argument(
        "--warmup-set",
        action="append",
        default=[],
        help="METHOD:KEY=VALUE warm-up option; without --warmup it tunes train's default",
    )
    p.add_argument(
        "--public-data",
        action="append",
        default=[],
        help="METHOD=PATH: pretrain that method's cells on images declared public (train's "
        "--public-data; docs/warmup.md): no budget spent, and no central warm-up unless "
        "--warmup names it",
    )
    p.add_argument(
        "--sample-set",
        action="append",
        default=[],
        help="METHOD:KEY=VALUE sampling-time override of a finished cell's config (a "
        "post-processing knob, e.g. dpgan:sample_snapshots=1): the same weights evaluated "
        "another way; it enters the evaluation cache key and the grid's file name",
    )
    p.add_argument("--out", default=None, help="cells folder (default runs/utility-<name>)")
    p.add_argument("--result", default=None, help="default bench/results/utility_<name>.json")
    p.add_argument("--ledger", default=None)
    p.add_argument("--n-synthetic", type=int, default=None, help="default 10 000 (protocol's)")
    p.add_argument(
        "--passes",
        type=int,
        default=None,
        help="classifier images seen (default: the fixed schedule's, 150 000)",
    )
    p.add_argument("--n-fidelity", type=int, default=5000, help="real train images for FD/PRDC")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="training seed of every cell (reseed studies, each in its own --out: a finished "
        "cell trained with another seed is an error); the split, the synthetic draw and the "
        "classifiers keep seed 0 so cells stay comparable",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads per training cell")
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="start no cell's training after this many minutes",
    )
    p.add_argument(
        "--collect",
        action="store_true",
        help="train nothing: tabulate the finished cells, list the rest as not run",
    )
    p.add_argument("--note", default=None, help="free text kept in the result JSON")
    p.add_argument("--smoke", action="store_true", help="tiny configs and sets (CI)")
    return p.parse_args(argv)


def machine(threads: int) -> dict:
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "training_threads": threads,
        "eval_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "note": "shared CPU machine, other developers' jobs running (load average above "
        "the core count inflates wall times)",
    }


def _git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            text=True,
            capture_output=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _maxrss_mib() -> float:
    """This process' peak resident memory (VmHWM). Not getrusage's ru_maxrss: Linux keeps that
    across fork + exec, so a cell would report its parent's peak when the parent's was larger."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0  # kB
    return float("nan")


def _train_child(spec: dict) -> None:
    """One cell in a fresh interpreter, so its VmHWM is this cell's peak alone."""
    import resource

    import torch

    from privsynth.atomic import write_json
    from privsynth.data import DataSource
    from privsynth.data.source import parse_classes
    from privsynth.orchestrate.sweep import _train_cell

    torch.set_num_threads(spec["threads"])
    source = DataSource(
        spec["data"],
        classes=parse_classes(spec["classes"]) if spec["classes"] else None,
        channels=spec.get("channels"),
    )
    cell, eps = Path(spec["cell"]), float(spec["epsilon"])
    baseline = _maxrss_mib()
    t, load = time.time(), os.getloadavg()[0]
    _train_cell(source, spec["method"], eps, cell, spec["config"], spec["common"], progress=False)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    write_json(
        cell / TRAIN_FILE,
        {
            "wall_seconds": round(time.time() - t, 1),
            "cpu_seconds": round(ru.ru_utime + ru.ru_stime, 1),
            "peak_rss_mib": round(_maxrss_mib(), 1),
            "baseline_rss_mib": round(baseline, 1),
            "memory_measure": "VmHWM of the cell's own process",
            "threads": spec["threads"],
            "loadavg_1m_start": round(load, 2),
            "loadavg_1m_end": round(os.getloadavg()[0], 2),
            "config": spec["config"],
        },
    )


def train_cell(spec: dict) -> None:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--train-cell", json.dumps(spec)]
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"training {Path(spec['cell']).name} failed (exit "
            f"{done.returncode}); its error is printed above"
        )


class Reference:
    """The real side, computed once per data: TRTR with both classifiers (cached in
    ``<out>/reference.json``), the FD-LeNet extractor (cached), real features and the floor."""

    def __init__(self, train, hold, out: Path, n_fidelity: int, passes: int, seed: int = 0):
        from privsynth.atomic import write_json
        from privsynth.evaluate import diversity, fidelity, utility
        from privsynth.evaluate.classifier import fixed_schedule
        from privsynth.evaluate.feature_space import fitted_space
        from privsynth.evaluate.features import feature_model
        from privsynth.evaluate.pipeline import seeded_draws

        self.train, self.hold, self.k, self.seed, self.passes = (
            train,
            hold,
            train.num_classes,
            seed,
            passes,
        )
        # the reference / non-member halves of the holdout and the fidelity subset of the
        # training split: `privsynth evaluate`'s own seeded draws
        ref, nonmem, _, _, self.fid_idx = seeded_draws(train, hold, seed, 1000, n_fidelity)
        self.extractor, self.extractor_info = feature_model(ref, out / "cache", seed, False, passes)
        # FD / PRDC space: LeNet for grey, LeNet + colour/edge blocks for colour images
        self.space = fitted_space(self.extractor, train.images[self.fid_idx], seed=seed)
        self.f_train = self.space(train.images[self.fid_idx])
        path = out / "reference.json"
        key = {
            "feature_space": self.space.info(),
            "fingerprint": train.fingerprint,
            "n_train": len(train),
            "n_holdout": len(hold),
            "passes": passes,
            # the TRTR classifiers' schedules: a protocol that trains them longer (colour sets
            # from protocol 3) must not read a TRTR cached under the shorter one
            "schedules": {
                c: fixed_schedule(len(train), train.images.shape[1:], passes, None, c).describe()
                for c in utility.UTILITY_CLASSIFIERS
            },
            "n_fidelity": len(self.fid_idx),
            "seed": seed,
        }
        cached = json.loads(path.read_text()) if path.exists() else {}
        if cached.get("key") == key:
            self.info = cached
            return
        f_nonmem = self.space(nonmem.images)
        self.info = {
            "key": key,
            "trtr": {
                c: _slim(
                    utility.trtr(
                        train.images,
                        train.labels,
                        hold.images,
                        hold.labels,
                        self.k,
                        classifier=c,
                        passes=passes,
                        seed=seed,
                    )
                )
                for c in utility.UTILITY_CLASSIFIERS
            },
            "real_floor": {
                "fd_lenet": fidelity.frechet(self.f_train, f_nonmem),
                "prdc": fidelity.prdc_scores(self.f_train, f_nonmem, seed=seed),
                "within_class_spread": diversity.within_class_diversity(
                    train.images, train.labels, nonmem.images, nonmem.labels, self.k, seed=seed
                )["ratio_mean"],
                "what": "real training split vs the non-member half of the holdout",
            },
            "feature_extractor": {k: v for k, v in self.extractor_info.items() if k != "path"},
            "feature_space": self.space.info(),
        }
        write_json(path, self.info)


def _slim(result: dict) -> dict:
    return {k: result[k] for k in ("accuracy", "epochs", "images_seen", "n_train", "seconds")}


def evaluate_cell(
    run, ref: Reference, n: int, cell: Path, sample_set: dict, detect: bool = False
) -> dict:
    """``detect``: also the real-vs-synthetic detection AUC against ``ref.hold``."""
    from privsynth.evaluate import detection, diversity, fidelity, utility
    from privsynth.models.base import build_config
    from privsynth.report.grid import save_grid

    if sample_set:  # rebuilt like any config: type and range checks on the overridden fields
        synth = run.synthesizer
        synth.config = build_config(type(synth.config), {**synth.config_dict(), **sample_set})
    t = time.time()
    images, labels = run.sample(
        n, labels=utility.balanced_labels(n, ref.k, ref.seed), seed=ref.seed
    )
    sample_s = time.time() - t
    suffix = "".join(f"-{k}={v}" for k, v in sorted(sample_set.items()))
    save_grid(cell / GRID_FILE.replace(".png", f"{suffix}.png"), images, labels, ref.k)
    hold = ref.hold
    tstr = {
        c: _slim(
            utility.tstr(
                images,
                labels,
                hold.images,
                hold.labels,
                ref.k,
                classifier=c,
                passes=ref.passes,
                seed=ref.seed,
            )
        )
        for c in utility.UTILITY_CLASSIFIERS
    }
    f_syn = ref.space(images)
    prdc = fidelity.prdc_scores(ref.f_train, f_syn, seed=ref.seed)
    div = diversity.within_class_diversity(
        ref.train.images, ref.train.labels, images, labels, ref.k, seed=ref.seed
    )
    flags = diversity.collapse_flags(
        div, prdc, ref.info["real_floor"]["prdc"], ref.train.class_names
    )
    detected = (
        {
            k: v
            for k, v in detection.detection(
                hold.images, images, ref.seed, passes=ref.passes
            ).items()
            if k in ("auc", "auc_ci", "accuracy", "n_test")
        }
        if detect
        else None
    )
    return {
        "tstr": tstr,
        **({"detection": detected} if detect else {}),
        "feature_space": ref.space.info()["name"],
        "fd_lenet": fidelity.frechet(ref.f_train, f_syn),
        "prdc": prdc,
        "within_class_spread": div["ratio_mean"],
        "within_class_spread_min": div["ratio_min"],
        "collapse_flags": flags,
        "n_synthetic": n,
        "passes": ref.passes,
        "sample_set": sample_set,
        "sample_seconds": round(sample_s, 1),
        "eval_seconds": round(time.time() - t, 1),
    }


def cell_row(cell: Path, method: str, eps: float, ev: dict) -> dict:
    from privsynth.nodp import is_private
    from privsynth.run import read_card

    card = read_card(cell)
    spent = float(card["privacy"]["epsilon"]) if is_private(card) else "inf"
    trained = (
        json.loads((cell / TRAIN_FILE).read_text())
        if (cell / TRAIN_FILE).exists()
        else {
            "wall_seconds": card["train"].get("wall_seconds"),
            "cpu_seconds": None,
            "peak_rss_mib": None,
            "memory_measure": "not measured: trained before this bench ran "
            "(an earlier `privsynth sweep` on the same cells)",
        }
    )
    return {
        "method": method,
        "epsilon": "inf" if math.isinf(eps) else eps,
        "run_method": card["method"],
        "epsilon_spent": spent,
        "delta": card["privacy"].get("delta"),
        "cell": cell.name,
        "trained_by_this_bench": (cell / TRAIN_FILE).exists(),
        "train": trained,
        "created": card.get("created"),
        "config": card.get("config"),
        "warmup": (card["privacy"].get("warmup") or {}).get("phases", []),
        **ev,
    }


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--train-cell"]:
        _train_child(json.loads(argv[1]))
        return 0
    a = parse_args(argv)
    from privsynth.atomic import write_json
    from privsynth.cli.sweep import parse_sets
    from privsynth.data import DataSource, load_split
    from privsynth.data.source import parse_classes
    from privsynth.errors import ConfigError
    from privsynth.evaluate.utility import DEFAULT_N_SYNTHETIC, DEFAULT_PASSES
    from privsynth.lock import hold_output
    from privsynth.models.base import check_known
    from privsynth.models.defaults import recommended_config
    from privsynth.models.registry import method_class
    from privsynth.orchestrate.sweep import _complete, cell_name, parse_epsilons
    from privsynth.run import Run, read_card

    t0 = time.time()
    smoke = SMOKE if a.smoke else {}
    methods = (a.methods or smoke.get("methods") or METHODS).split(",")
    epsilons = parse_epsilons(a.epsilons or smoke.get("epsilons") or "1,2,5,10,inf")
    n_syn = a.n_synthetic or smoke.get("n_synthetic") or DEFAULT_N_SYNTHETIC
    passes = a.passes or smoke.get("passes") or DEFAULT_PASSES
    n_fid = smoke.get("n_fidelity", a.n_fidelity)
    threads = a.threads or int(os.environ.get("OMP_NUM_THREADS", "1"))
    source = DataSource(a.data, classes=parse_classes(a.classes) if a.classes else None)
    holdout = int(a.holdout) if a.holdout >= 1 else a.holdout
    dataset, parts = load_split(source, float(holdout), 0)
    train, hold = dataset.subset(parts.train), dataset.subset(parts.holdout)
    name = a.name or dataset.name
    out = Path(a.out or ROOT / "runs" / f"utility-{name}")
    result_path = Path(a.result or ROOT / "bench" / "results" / f"utility_{name}.json")
    ledger = a.ledger or os.environ.get("PRIVSYNTH_LEDGER") or str(out / "ledger.sqlite")
    overrides = {**smoke.get("configs", {}), **parse_sets(a.set)}
    sample_sets = parse_sets(a.sample_set)
    for method, fields in sample_sets.items():
        try:
            check_known(method_class(method).config_class, fields)
        except ConfigError as e:
            sys.exit(f"error: --sample-set {method}: {e}")
    if any("=" not in item for item in a.warmup):
        sys.exit("error: --warmup takes METHOD=KIND, e.g. --warmup dpgan=central")
    warmups = dict(item.split("=", 1) for item in a.warmup)
    if any("=" not in item for item in a.public_data):
        sys.exit("error: --public-data takes METHOD=PATH, e.g. --public-data dpgan=public.npz")
    public = dict(item.split("=", 1) for item in a.public_data)
    warmup_sets = parse_sets(a.warmup_set)
    common = dict(
        delta=a.delta,
        accountant="prv",
        holdout=float(holdout),
        split_seed=0,
        seed=a.seed,
        image_size=None,
        ledger=ledger,
        budget=None,
        force=False,
    )
    # before anything is written: a finished cell of another seed must not pass for a reseed
    for cell in (out / "cells" / cell_name(m, e) for m in methods for e in epsilons):
        trained_seed = read_card(cell)["request"].get("seed") if _complete(cell) else None
        if trained_seed not in (None, a.seed):
            sys.exit(
                f"error: {cell} was trained with seed {trained_seed}, not --seed {a.seed}; "
                "give a reseed study its own --out"
            )
    out.mkdir(parents=True, exist_ok=True)
    # held to the end; if the bench stops early, the kernel drops the lock with the process
    lock = contextlib.ExitStack()
    try:
        lock.enter_context(hold_output(out, "bench/utility.py"))
    except ConfigError as e:
        sys.exit(f"error: {e}")
    ref = Reference(train, hold, out, n_fid, passes)
    head = {
        "command": "python bench/utility.py " + " ".join(argv),
        "data": dataset.name,
        "name": name,
        "fingerprint": dataset.fingerprint,
        "n_train": len(train),
        "n_holdout": len(hold),
        "delta": a.delta,
        "methods": methods,
        "epsilons": [_eps(e) for e in epsilons],
        "n_synthetic": n_syn,
        "protocol": _protocol(ref, passes),
        "reference": {k: ref.info[k] for k in ("trtr", "real_floor", "feature_extractor")},
        "git_commit": _git_commit(),
        "ledger": str(ledger),
        "threads": threads,
        "note": a.note,
        "machine_start": machine(threads),
        "started": t0,
    }
    print(
        f"reference ready ({time.time() - t0:.0f}s): TRTR "
        + ", ".join(f"{c} {r['accuracy']:.1%}" for c, r in ref.info["trtr"].items()),
        flush=True,
    )

    rows, not_run, last_train = [], [], {}
    for method in methods:
        for eps in epsilons:
            cell = out / "cells" / cell_name(method, eps)
            config = {
                **recommended_config(method, len(train), eps, train.image_shape[0]),
                **overrides.get(method, {}),
            }
            if not _complete(cell):
                reason = (
                    "not trained within this benchmark's time on the shared machine"
                    + (" (see note)" if a.note else "")
                    if a.collect
                    else _no_time(a.max_minutes, t0, last_train.get(method))
                )
                if reason:
                    not_run.append(
                        {"method": method, "epsilon": _eps(eps), "reason": reason, "config": config}
                    )
                    print(f"not run {cell.name}: {reason}", flush=True)
                    _write(result_path, head, rows, not_run)
                    continue
                # No --warmup for a method: train's own default (models/defaults.py) decides.
                warm = warmups.get(method) if math.isfinite(eps) else "none"
                cell_common = dict(common)
                if warm is not None:
                    cell_common.update(warmup=warm)
                if warm != "none" and method in warmup_sets:  # None: tunes train's default
                    cell_common.update(warmup_config=warmup_sets[method])
                if method in public:
                    cell_common.update(public_data=public[method])
                print(
                    f"training {cell.name} {config} warm-up {warm or 'default'}"
                    + (f", public data {public[method]}" if method in public else ""),
                    flush=True,
                )
                train_cell(
                    {
                        "data": a.data,
                        "classes": a.classes,
                        "method": method,
                        "epsilon": str(eps),
                        "cell": str(cell),
                        "config": config,
                        "common": cell_common,
                        "threads": threads,
                    }
                )
            if (cell / TRAIN_FILE).exists():
                last_train[method] = json.loads((cell / TRAIN_FILE).read_text())["wall_seconds"]
            cached = cell / EVAL_FILE
            ev = json.loads(cached.read_text()) if cached.exists() else {}
            # a cached evaluation counts only under the same protocol; those written before
            # "passes" was recorded all ran the default
            sample_set = sample_sets.get(method, {})
            if (
                ev.get("n_synthetic") != n_syn
                or ev.get("passes", DEFAULT_PASSES) != passes
                or ev.get("sample_set", {}) != sample_set
                or ev.get("feature_space", "lenet") != ref.space.name
            ):
                try:
                    ev = evaluate_cell(Run.load(cell), ref, n_syn, cell, sample_set)
                except ConfigError as e:  # a sampling-time value this cell cannot take
                    sys.exit(f"error: --sample-set {method} on {cell.name}: {e}")
                write_json(cached, ev)
            rows.append(cell_row(cell, method, eps, ev))
            r = rows[-1]
            print(
                f"{cell.name}: TSTR LeNet {r['tstr']['lenet']['accuracy']:.1%} ResNet "
                f"{r['tstr']['resnet']['accuracy']:.1%} FD {r['fd_lenet']:.1f} "
                f"recall {r['prdc']['recall']:.2f} train {r['train']['wall_seconds']}s",
                flush=True,
            )
            _write(result_path, head, rows, not_run)
    table = _write(result_path, head, rows, not_run, final=True)
    lock.close()
    print(markdown(table))
    return 0


def _eps(eps: float):
    return "inf" if math.isinf(eps) else eps


def _no_time(max_minutes, t0, last_seconds) -> str | None:
    if max_minutes is None:
        return None
    used, budget = (time.time() - t0) / 60, max_minutes
    if used >= budget:
        return (
            f"not started: the bench's time budget (--max-minutes {budget:g}) was spent "
            f"({used:.0f} min used)"
        )
    if last_seconds and used + last_seconds / 60 > budget:
        return (
            f"not started: its last cell trained for {last_seconds / 60:.0f} min, more than "
            f"the {budget - used:.0f} min left of --max-minutes {budget:g}"
        )
    return None


def _protocol(ref: Reference, passes: int) -> dict:
    from privsynth.evaluate.utility import PROTOCOL

    return {
        "tstr": f"class-balanced synthetic set; {PROTOCOL}; about {passes} images seen "
        "(at least one full pass); tested once on the real holdout",
        "classifiers": {"lenet": "LeNet", "resnet": "small ResNet (shift augmentation)"},
        "fidelity": f"FD-LeNet and PRDC (k=5, up to 2000 each) on LeNet features of "
        f"{len(ref.fid_idx)} real training images vs the synthetic set; "
        "extractor trained on half of the holdout (as `privsynth evaluate`)",
        "within_class_spread": "synthetic / real mean pairwise distance per class "
        "(standardised pixels), mean over classes",
        "configs": "models.defaults.recommended_config, then --set overrides",
    }


def _write(path: Path, head: dict, rows: list, not_run: list, final: bool = False) -> dict:
    """The result JSON and frontier PNG from what is done so far (called after every cell)."""
    from privsynth.atomic import write_json

    table = {
        **{k: v for k, v in head.items() if k != "started"},
        "partial": not final,
        "rows": rows,
        "not_run": not_run,
        "machine_now": machine(head["threads"]),
        "wall_seconds_so_far": round(time.time() - head["started"], 1),
    }
    write_json(path, table)
    plot_frontier(table, path.with_suffix(".png"))
    return table


if __name__ == "__main__":
    sys.exit(main())
