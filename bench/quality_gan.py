"""DP-GAN quality: TSTR of the fixed LeNet at several epsilons, next to TRTR, with wall time.

    PYTHONPATH=src nice -n 10 python bench/quality_gan.py                      # digits + MNIST-10k
    PYTHONPATH=src python bench/quality_gan.py --datasets digits --eps 10      # one cell
    PYTHONPATH=src python bench/quality_gan.py --smoke                         # seconds; CI

TSTR: the LeNet of ``privsynth.evaluate`` trained on as many synthetic images as the private
training split holds (classes uniform), tested on the real holdout. TRTR: the same LeNet and
budget trained on the real training split. ``inf`` = the same GAN without DP (``--method gan``).
Datasets: ``digits`` (embedded; 1438 train / 359 holdout, the CLI's default split) and
``mnist10k`` (``../shared/data/mnist-t10k``: holdout 2000, split seed 0 -> 8000 / 2000).
The hyper-parameters are the method's defaults unless ``--set`` / ``--epochs`` say otherwise.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import platform
import tempfile
import time
from pathlib import Path

import torch

import privsynth
from privsynth.atomic import write_json
from privsynth.data import DataSource, load_dataset, split
from privsynth.evaluate.utility import trtr, tstr

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT / ".." / "shared" / "data" / "mnist-t10k"
DATASETS = {"digits": ("digits", 0.2), "mnist10k": (DataSource(str(MNIST), classes=10), 2000)}
SMOKE = {"epochs": 1, "batch_size": 64, "n_d": 2, "width": 8, "g_width": 8, "z_dim": 8}


def parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def one(data, holdout, eps: float, config: dict, args, workdir: Path) -> dict:
    private = math.isfinite(eps)
    out = workdir / f"{'dp' if private else 'nodp'}-{eps}"
    t0 = time.time()
    run = privsynth.train(data, "dpgan" if private else "gan", out,
                          epsilon=eps if private else None, config=config, holdout=holdout,
                          split_seed=0, seed=args.seed, device=args.device,
                          grad_sample_mode=args.grad_sample_mode, progress=args.progress,
                          checkpoint_every=10**9)
    train_s = time.time() - t0
    train, hold = run.load_data(data if not isinstance(data, str) else None)
    images, labels = run.sample(len(train), seed=args.seed)
    acc = tstr(images, labels, hold.images, hold.labels, train.num_classes,
               epochs=args.eval_epochs, seed=args.seed)["accuracy"]
    dp = run.card["privacy"].get("dp_sgd", {})
    return {"epsilon_target": eps if private else "infinity",
            "epsilon_spent": run.epsilon if private else "infinity",
            "tstr_accuracy": acc, "train_seconds": round(train_s, 1),
            "total_seconds": round(time.time() - t0, 1), "d_steps": run.card["train"]["steps"],
            "noise_multiplier": dp.get("noise_multiplier"), "sample_rate": dp.get("sample_rate"),
            "config": run.card["config"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--eps", nargs="+", type=float, default=[1.0, 10.0, math.inf],
                    help="epsilons; 'inf' = no DP")
    ap.add_argument("--epochs", type=float, default=None, help="override GANConfig.epochs")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="any GANConfig field, e.g. --set n_d=5")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--grad-sample-mode", default="hooks")
    ap.add_argument("--eval-epochs", type=int, default=10, help="LeNet epochs for TSTR/TRTR")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="tiny digits run, seconds")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--out", default="bench/results/quality_gan.json")
    args = ap.parse_args(argv)
    config = parse_set(args.set)
    if args.epochs is not None:
        config["epochs"] = args.epochs
    if args.smoke:
        args.datasets, args.eval_epochs = ["digits"], 1
        config = {**SMOKE, **config}
    torch.set_num_threads(torch.get_num_threads())
    results = {"what": "TSTR accuracy (LeNet trained on synthetic, tested on the real holdout) "
                       "next to TRTR (same LeNet on the real training split)",
               "machine": f"{platform.platform()}, {torch.get_num_threads()} torch threads",
               "torch": torch.__version__, "device": args.device, "smoke": args.smoke,
               "config_overrides": config, "eval_epochs": args.eval_epochs, "datasets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets:
            source, holdout = DATASETS[name]
            data = load_dataset(source)
            if args.smoke:
                data = data.subset(list(range(400)), name="digits-400")
            parts = split(data, holdout, 0)
            train, hold = data.subset(parts.train), data.subset(parts.holdout)
            t0 = time.time()
            base = trtr(train.images, train.labels, hold.images, hold.labels, data.num_classes,
                        epochs=args.eval_epochs, seed=args.seed)["accuracy"]
            entry = {"n_train": len(train), "n_holdout": len(hold),
                     "trtr_accuracy": base, "trtr_seconds": round(time.time() - t0, 1), "runs": []}
            results["datasets"][name] = entry
            for eps in args.eps:
                r = one(data if args.smoke else source, holdout, eps, config, args,
                        Path(tmp) / name)
                entry["runs"].append(r)
                print(f"{name} eps={eps}: TSTR {r['tstr_accuracy']:.3f} (TRTR {base:.3f}) "
                      f"in {r['total_seconds']}s, {r['d_steps']} D steps", flush=True)
                write_json(Path(args.out), results)
    print(json.dumps({k: [(r["epsilon_target"], round(r["tstr_accuracy"], 3))
                          for r in v["runs"]] for k, v in results["datasets"].items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
