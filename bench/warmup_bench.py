"""Does pretraining help? DP-SGD methods with and without ``--warmup central`` / ``--public-data``.

Each cell is what ``privsynth train ... --evaluate`` does: train (through `privsynth.train`), then
the quick TSTR (LeNet, 10 epochs, as many synthetic images as training images, tested on the real
holdout). Cells run one per process (``--jobs N`` at a time); each writes its own JSON next to the
result so a killed benchmark keeps what finished.

    OMP_NUM_THREADS=1 python bench/warmup_bench.py --data ../shared/data/mnist-t10k \\
        --methods dpvae --epsilons 1,10 --variants none,central,public --public digits \\
        --out runs/warmup-bench --result bench/results/warmup_mnist10k.json

Method configs default to `models.defaults.recommended_config` (the sweep's CPU setting);
``--set k=v`` overrides them for every method (short CPU runs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ("none", "central", "public")
try:
    import privsynth  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="digits")
    p.add_argument("--holdout", type=float, default=0.2)
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--accountant", choices=["prv", "rdp"], default="prv")
    p.add_argument("--methods", default="dpvae")
    p.add_argument("--epsilons", default="1,10")
    p.add_argument("--variants", default="none,central,public")
    p.add_argument("--public", default="digits", help="--public-data for the 'public' variant")
    p.add_argument(
        "--public-epochs",
        type=float,
        default=None,
        help="pretraining epochs of the 'public' variant (e.g. as many steps as the "
        "central warm-up: public sets are often smaller)",
    )
    p.add_argument("--warmup-set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="cells at a time, one process each (0: one after another in this process)",
    )
    p.add_argument(
        "--eval-passes",
        type=int,
        default=None,
        help="images seen by the TSTR LeNet (default: the evaluation protocol's)",
    )
    p.add_argument("--out", default="runs/warmup-bench")
    p.add_argument("--result", default="bench/results/warmup.json")
    p.add_argument(
        "--collect",
        action="store_true",
        help="only gather the cells' JSON files (earlier invocations) into --result",
    )
    p.add_argument("--cell", default=None, help=argparse.SUPPRESS)  # one cell, in a subprocess
    p.add_argument("--smoke", action="store_true", help="tiny sizes, digits, seconds")
    return p.parse_args(argv)


def settings(items):
    from privsynth.cli.options import parse_settings

    return parse_settings(items, "--set")


def cells(args):
    return [
        f"{m}:{e}:{v}"
        for m in args.methods.split(",")
        for e in args.epsilons.split(",")
        for v in args.variants.split(",")
    ]


def run_cell(args, cell: str) -> dict:
    import privsynth
    from privsynth.data import load_dataset, split
    from privsynth.evaluate.quick import quick_evaluate
    from privsynth.models.defaults import recommended_config

    method, eps, variant = cell.split(":")
    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant}; choose from {VARIANTS}")
    data = load_dataset(args.data)
    n_train = len(split(data, args.holdout, 0).train)
    config = {**recommended_config(method, n_train, float(eps)), **settings(args.set)}
    warm = settings(args.warmup_set)
    if variant == "public" and args.public_epochs:
        warm["epochs"] = args.public_epochs
    out = Path(args.out) / cell.replace(":", "-")
    t0 = time.time()
    run = privsynth.train(
        data,
        method,
        out,
        epsilon=float(eps),
        delta=args.delta,
        holdout=args.holdout,
        accountant=args.accountant,
        config=config,
        device=args.device,
        progress=False,
        overwrite=True,
        warmup="central" if variant == "central" else "none",
        public_data=args.public if variant == "public" else None,
        warmup_config=warm if variant != "none" else None,
        ledger=str(Path(args.out) / "ledger.sqlite"),
    )
    train_s = time.time() - t0
    run = privsynth.Run.load(out, device=args.device)
    save_samples(run, out)
    passes = {"passes": args.eval_passes} if args.eval_passes else {}
    ev = quick_evaluate(run, data=data, **passes)
    pv = run.card["privacy"]
    central = pv.get("warmup", {}).get("central")
    return {
        "cell": cell,
        "method": method,
        "epsilon_target": float(eps),
        "variant": variant,
        "epsilon_spent": pv["epsilon"],
        "dp_sgd_sigma": pv["dp_sgd"]["noise_multiplier"],
        "dp_sgd_steps": pv["dp_sgd"]["steps"],
        "warmup_sigma": central["noise_multiplier"] if central else None,
        "warmup_epsilon_alone": central["epsilon_alone"] if central else None,
        "tstr_accuracy": ev["tstr_accuracy"],
        "trtr_accuracy": ev["trtr_accuracy"],
        "n_synthetic": ev["n_synthetic"],
        "classifier": "LeNet, " + ev["protocol"],
        "config": config,
        "warmup_config": warm if variant != "none" else None,
        "train_seconds": round(train_s, 1),
        "device": args.device,
        "run": str(out),
    }


def save_samples(run, out: Path) -> None:
    """samples.png as `privsynth train` writes it: ten per class, one row per class."""
    from privsynth.report import save_grid

    k = len(run.class_names)
    images, labels = run.sample(10 * k, labels=[i // 10 for i in range(10 * k)], seed=0)
    save_grid(out / "samples.png", images, labels, k)


def main(argv=None) -> int:
    args = parse(argv)
    if args.smoke:
        args.data, args.methods, args.epsilons = "digits", "dpvae", "10"
        args.variants = "none,central"  # digits cannot be its own public data
        args.set = [*args.set, "epochs=1", "width=8", "z_dim=4", "batch_size=64"]
        args.warmup_set = [*args.warmup_set, "epochs=1"]
        args.delta, args.eval_passes, args.jobs, args.accountant = 1e-4, 500, 0, "rdp"
    if args.cell:
        result = run_cell(args, args.cell)
        Path(args.result).write_text(json.dumps(result, indent=1))
        return 0
    result_path = Path(args.result)
    parts = result_path.parent / (result_path.stem + "_cells")
    parts.mkdir(parents=True, exist_ok=True)
    todo, running, t0 = ([] if args.collect else cells(args)), [], time.time()
    own = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--smoke"]
    if args.smoke:
        own += [
            "--data",
            "digits",
            "--methods",
            "dpvae",
            "--epsilons",
            "10",
            "--delta",
            "1e-4",
            "--variants",
            args.variants,
            *(f"--set={s}" for s in args.set),
            *(f"--warmup-set={s}" for s in args.warmup_set),
        ]
    if args.jobs == 0:
        for cell in todo:
            row = run_cell(args, cell)
            (parts / (cell.replace(":", "-") + ".json")).write_text(json.dumps(row, indent=1))
        todo = []
    while todo or running:
        while todo and len(running) < max(1, args.jobs):
            cell = todo.pop(0)
            cmd = [
                sys.executable,
                __file__,
                *own,
                "--cell",
                cell,
                "--result",
                str(parts / (cell.replace(":", "-") + ".json")),
            ]
            running.append(
                subprocess.Popen(
                    cmd,
                    env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
                )
            )
        time.sleep(1)
        running = [p for p in running if p.poll() is None]
    files = [parts / (c.replace(":", "-") + ".json") for c in cells(args)]
    rows = [json.loads(f.read_text()) for f in files if f.exists()]
    result = {
        "command": "python bench/warmup_bench.py " + " ".join(own),
        "wall_seconds_total": round(time.time() - t0, 1),
        "cells": rows,
        "machine": {
            "cpu_count": os.cpu_count(),
            "loadavg_1m": os.getloadavg()[0],
            "torch_threads": os.environ.get("OMP_NUM_THREADS"),
        },
    }
    result_path.write_text(json.dumps(result, indent=1))
    print(f"{'cell':<28} {'eps':>6} {'TSTR':>6} {'TRTR':>6} {'train s':>8}")
    for r in rows:
        print(
            f"{r['cell']:<28} {r['epsilon_spent']:6.3f} {r['tstr_accuracy']:6.1%} "
            f"{r['trtr_accuracy']:6.1%} {r['train_seconds']:8.1f}"
        )
    return 0 if len(rows) == len(cells(args)) else 1


if __name__ == "__main__":
    sys.exit(main())
