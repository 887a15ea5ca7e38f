"""DP-GAN quality: TSTR, recall and within-class spread at several epsilons, next to TRTR.

    PYTHONPATH=src nice -n 10 python bench/quality_gan.py                      # digits + MNIST-10k
    PYTHONPATH=src python bench/quality_gan.py --datasets digits --eps 10      # one cell
    PYTHONPATH=src python bench/quality_gan.py --smoke                         # seconds; CI
    # one row of a tuning study, its grid kept, then the rows merged into one file
    OMP_NUM_THREADS=1 python bench/quality_gan.py --datasets mnist10k --eps 10 --epochs 15 \
        --set n_d=10 --name nd10 --grids bench/results/grids --out /tmp/nd10.json
    python bench/quality_gan.py --merge /tmp/*.json --out bench/results/quality_gan_study.json

Evaluation (the project's, ``privsynth.evaluate``): TSTR = the LeNet trained with the fixed
schedule (``--passes`` images seen, default the evaluation's 12 000) on ``--n-synthetic``
class-balanced synthetic images (default: as many as the private training split), tested once on
the real holdout; TRTR = the same on the real training split. Within-class spread: mean pairwise
distance of standardised images per class, synthetic / real (``evaluate.diversity``). Recall
(and precision / coverage): ``prdc`` on the evaluation's feature LeNet, trained on half the
holdout exactly as ``privsynth evaluate`` does, synthetic vs up to 2 000 training images; the
``real_floor`` row is a second real sample (the other half of the holdout) in the same place.
``inf`` = the same GAN without DP (``--method gan``). Datasets: ``digits`` (embedded; 1438 train /
359 holdout, the CLI's default split) and ``mnist10k`` (``../shared/data/mnist-t10k``: holdout
2000, split seed 0 -> 8000 / 2000). Hyper-parameters: the method's recommended defaults
(models/defaults.py) unless ``--set`` / ``--epochs`` say otherwise. Tuning on MNIST-10k is
tuning on a *public* stand-in: on a user's private data it would not be covered by epsilon.
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

import numpy as np
import torch

import privsynth
from privsynth.atomic import write_json
from privsynth.data import DataSource, load_dataset, split
from privsynth.evaluate import diversity, fidelity
from privsynth.evaluate.features import feature_model, features
from privsynth.evaluate.utility import DEFAULT_PASSES, balanced_labels, trtr, tstr
from privsynth.report.grid import save_grid

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT / ".." / "shared" / "data" / "mnist-t10k"  # from a worktree: --mnist PATH
DATASETS = {"digits": ("digits", 0.2), "mnist10k": (str(MNIST), 2000)}
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


class Judge:
    """The real side of the evaluation for one dataset, computed once: TRTR, the feature LeNet,
    the real training features and the real floor of recall/spread."""

    def __init__(self, train, hold, args, cache_dir=None):
        self.train, self.hold, self.args = train, hold, args
        k = train.num_classes
        t0 = time.time()
        self.trtr = trtr(
            train.images,
            train.labels,
            hold.images,
            hold.labels,
            k,
            passes=args.passes,
            epochs=args.eval_epochs,
            seed=args.seed,
        )["accuracy"]
        rng = np.random.default_rng(args.seed)  # the same halves as evaluate/pipeline.py
        perm = rng.permutation(len(hold))
        ref = hold.subset(perm[: len(hold) // 2], name="reference")
        nonmem = hold.subset(perm[len(hold) // 2 :], name="nonmembers")
        self.extractor, _ = feature_model(ref, cache_dir, args.seed, False, args.passes)
        fid_idx = np.random.default_rng(args.seed).permutation(len(train))[:2000]
        self.f_train = features(self.extractor, train.images[fid_idx])
        self.floor = {
            "prdc": fidelity.prdc_scores(
                self.f_train, features(self.extractor, nonmem.images), seed=args.seed
            ),
            "spread_ratio_mean": diversity.within_class_diversity(
                train.images, train.labels, nonmem.images, nonmem.labels, k, seed=args.seed
            )["ratio_mean"],
        }
        self.seconds = round(time.time() - t0, 1)

    def score(self, images: np.ndarray, labels: np.ndarray) -> dict:
        a, k = self.args, self.train.num_classes
        t = tstr(
            images,
            labels,
            self.hold.images,
            self.hold.labels,
            k,
            passes=a.passes,
            epochs=a.eval_epochs,
            seed=a.seed,
        )
        div = diversity.within_class_diversity(
            self.train.images, self.train.labels, images, labels, k, seed=a.seed
        )
        prdc = fidelity.prdc_scores(self.f_train, features(self.extractor, images), seed=a.seed)
        return {
            "tstr_accuracy": t["accuracy"],
            "tstr_epochs": t.get("epochs"),
            "recall": prdc["recall"],
            "precision": prdc["precision"],
            "coverage": prdc["coverage"],
            "spread_ratio_mean": div["ratio_mean"],
            "spread_ratio_min": div["ratio_min"],
            "least_varied_class": div["least_varied_class"],
            "collapse_flags": diversity.collapse_flags(div, prdc, self.floor["prdc"]),
        }


def one(
    data, holdout, eps: float, config: dict, args, workdir: Path, judge: Judge, name: str
) -> dict:
    private = math.isfinite(eps)
    out = workdir / f"{'dp' if private else 'nodp'}-{eps}"
    warm = {}
    if args.warmup is not None and private:  # None: train's own default (models/defaults.py)
        warm["warmup"] = args.warmup
    if args.public_data:
        warm["public_data"] = args.public_data
    # Without --warmup, the options tune train's default warm-up (an error where it has none).
    if args.warmup_set and warm.get("warmup") != "none" and (private or args.public_data):
        warm["warmup_config"] = parse_set(args.warmup_set)
    t0 = time.time()
    run = privsynth.train(
        data,
        "dpgan" if private else "gan",
        out,
        epsilon=eps if private else None,
        config=config,
        holdout=holdout,
        split_seed=0,
        seed=args.seed,
        device=args.device,
        grad_sample_mode=args.grad_sample_mode,
        progress=args.progress,
        checkpoint_every=10**9,
        **warm,
    )
    train_s = time.time() - t0
    n = args.n_synthetic or len(judge.train)
    images, labels = run.sample(
        n, labels=balanced_labels(n, judge.train.num_classes, args.seed), seed=args.seed
    )
    if args.grids:
        tag = f"{name}-" if name else ""
        save_grid(
            Path(args.grids) / f"{tag}{'dp' if private else 'nodp'}-{eps:g}.png",
            images,
            labels,
            judge.train.num_classes,
        )
    dp = run.card["privacy"].get("dp_sgd", {})
    return {
        "name": name,
        "epsilon_target": eps if private else "infinity",
        "epsilon_spent": run.epsilon if private else "infinity",
        **judge.score(images, labels),
        "n_synthetic": n,
        "train_seconds": round(train_s, 1),
        "total_seconds": round(time.time() - t0, 1),
        "d_steps": run.card["train"]["steps"],
        "noise_multiplier": dp.get("noise_multiplier"),
        "sample_rate": dp.get("sample_rate"),
        **warm,
        "warmup_phases": (run.card["privacy"].get("warmup") or {}).get("phases", []),
        "config": run.card["config"],
    }


def merge(paths: list[str], out: Path) -> int:
    """Put the runs of several result files (same dataset protocol) into one study file."""
    results = None
    for p in paths:
        r = json.loads(Path(p).read_text())
        if results is None:
            results = {**r, "config_overrides": "per run (see each run's config)"}
            continue
        for name, entry in r["datasets"].items():
            results["datasets"].setdefault(name, {**entry, "runs": []})["runs"] += entry["runs"]
    write_json(out, results)
    print(f"merged {len(paths)} files into {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument(
        "--eps",
        nargs="+",
        type=float,
        default=[1.0, 10.0, math.inf],
        help="epsilons; 'inf' = no DP",
    )
    ap.add_argument("--epochs", type=float, default=None, help="override GANConfig.epochs")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any GANConfig field, e.g. --set n_d=5",
    )
    ap.add_argument(
        "--warmup",
        default=None,
        choices=["none", "central"],
        help="'central': DP central-image warm-up "
        "(private runs only; its share of epsilon is composed in); default: train's "
        "recommended warm-up (central for dpgan on >= 3 000 images)",
    )
    ap.add_argument("--public-data", default=None, help="pretrain on these public images first")
    ap.add_argument(
        "--warmup-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="WarmupConfig field (share, epochs, ...); without --warmup it tunes the default",
    )
    ap.add_argument("--name", default="", help="label of this row in a study")
    ap.add_argument("--grids", default=None, help="folder for each run's sample grid PNG")
    ap.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="JSON",
        help="merge these result files into --out and stop",
    )
    ap.add_argument("--mnist", default=None, help=f"MNIST-10k IDX folder (default {MNIST})")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--grad-sample-mode", default="bk")
    ap.add_argument(
        "--n-synthetic",
        type=int,
        default=None,
        help="class-balanced synthetic images for TSTR (default: the training split's)",
    )
    ap.add_argument(
        "--passes",
        type=int,
        default=DEFAULT_PASSES,
        help="LeNet training budget in images seen (the evaluation's fixed schedule)",
    )
    ap.add_argument("--eval-epochs", type=int, default=None, help="fix the LeNet epochs instead")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="tiny digits run, seconds")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--out", default="bench/results/quality_gan.json")
    args = ap.parse_args(argv)
    if args.merge:
        return merge(args.merge, Path(args.out))
    config = parse_set(args.set)
    if args.epochs is not None:
        config["epochs"] = args.epochs
    if args.smoke:
        args.datasets, args.passes = ["digits"], 400
        config = {**SMOKE, **config}
    results = {
        "what": "TSTR accuracy (LeNet, fixed schedule, trained on class-balanced "
        "synthetic images, tested on the real holdout) next to TRTR; PRDC recall on "
        "the evaluation's feature LeNet; within-class spread synthetic / real",
        "machine": f"{platform.platform()}, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
        "device": args.device,
        "smoke": args.smoke,
        "config_overrides": config,
        "passes": args.passes,
        "eval_epochs": args.eval_epochs,
        "datasets": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets:
            source, holdout = DATASETS[name]
            if name == "mnist10k":
                source = DataSource(args.mnist or source, classes=10)
            data = load_dataset(source)
            if args.smoke:
                data = data.subset(list(range(400)), name="digits-400")
            parts = split(data, holdout, 0)
            train, hold = data.subset(parts.train), data.subset(parts.holdout)
            # the feature LeNet is cached (evaluate's cache); a smoke run keeps it in its tmp
            judge = Judge(train, hold, args, tmp if args.smoke else None)
            entry = {
                "n_train": len(train),
                "n_holdout": len(hold),
                "trtr_accuracy": judge.trtr,
                "real_floor": judge.floor,
                "trtr_seconds": judge.seconds,
                "runs": [],
            }
            results["datasets"][name] = entry
            for eps in args.eps:
                r = one(
                    data if args.smoke else source,
                    holdout,
                    eps,
                    config,
                    args,
                    Path(tmp) / name,
                    judge,
                    args.name,
                )
                entry["runs"].append(r)
                print(
                    f"{name} {args.name} eps={eps}: TSTR {r['tstr_accuracy']:.3f} (TRTR "
                    f"{judge.trtr:.3f}) recall {r['recall']:.3f} spread "
                    f"{r['spread_ratio_mean']:.2f} in {r['total_seconds']}s, "
                    f"{r['d_steps']} D steps",
                    flush=True,
                )
                write_json(Path(args.out), results)
    print(
        json.dumps(
            {
                k: [(r["epsilon_target"], round(r["tstr_accuracy"], 3)) for r in v["runs"]]
                for k, v in results["datasets"].items()
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
