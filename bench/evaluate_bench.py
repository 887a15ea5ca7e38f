"""Benchmark `privsynth evaluate` and `privsynth audit`: every metric, and the time they take.

For each dataset: train a non-private GAN and DP-GANs at eps 1 and 10 (small CPU budgets,
stated in the JSON), evaluate all three in one call (one row per model), time it, and run the
one-run audit for the non-private GAN and the eps=10 DP-GAN.

    nice -n 10 python bench/evaluate_bench.py --datasets digits
    nice -n 10 python bench/evaluate_bench.py --datasets digits mnist10k \
        --out bench/results/evaluate.json

Writes bench/results/evaluate.json (merged per dataset, so datasets can be run separately).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import privsynth
from privsynth.data import DataSource
from privsynth.evaluate import evaluate
from privsynth.evaluate.audit import audit
from privsynth.report.markdown import summary

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT / ".." / "shared" / "data" / "mnist-t10k"

DATASETS = {
    # name: (data, holdout, GAN config, DP-GAN config)
    "digits": (
        "digits",
        0.2,
        {"epochs": 30, "batch_size": 64, "n_d": 1, "width": 16, "g_width": 16, "z_dim": 16},
        {"epochs": 30, "batch_size": 256, "n_d": 5, "width": 16, "g_width": 16, "z_dim": 16},
    ),
    # the MIA-strengthened setting: 20% of digits for training (359 images), 10x longer training
    "digits-small": (
        "digits",
        0.8,
        {"epochs": 300, "batch_size": 32, "n_d": 1, "width": 16, "g_width": 16, "z_dim": 16},
        {"epochs": 30, "batch_size": 64, "n_d": 5, "width": 16, "g_width": 16, "z_dim": 16},
    ),
    "mnist10k": (
        DataSource(str(MNIST), classes=10),
        2000,
        {"epochs": 3, "batch_size": 64, "n_d": 1, "width": 16, "g_width": 16, "z_dim": 32},
        {"epochs": 5, "batch_size": 512, "n_d": 5, "width": 16, "g_width": 16, "z_dim": 32},
    ),
}


def train_runs(name: str, work: Path) -> dict[str, str]:
    data, holdout, gan_cfg, dp_cfg = DATASETS[name]
    runs = {}
    for label, method, eps, cfg in (
        ("gan", "gan", None, gan_cfg),
        ("dpgan-eps10", "dpgan", 10.0, dp_cfg),
        ("dpgan-eps1", "dpgan", 1.0, dp_cfg),
    ):
        out = work / name / label
        if (
            not (out / "card.json").exists()
            or json.loads((out / "card.json").read_text())["status"] != "complete"
        ):
            t = time.time()
            privsynth.train(
                data,
                method,
                out,
                epsilon=eps,
                config=cfg,
                holdout=holdout,
                split_seed=0,
                ledger=work / "ledger.sqlite",
                progress=True,
            )
            print(f"trained {label} on {name} in {time.time() - t:.0f}s")
        runs[label] = str(out)
    return runs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=["digits"], choices=sorted(DATASETS))
    ap.add_argument("--work", default=str(ROOT / "bench" / "work"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "evaluate.json"))
    ap.add_argument("--canaries", type=int, default=200)
    ap.add_argument(
        "--no-audit",
        action="store_true",
        help="skip the audits (keeps an earlier audit entry of the dataset)",
    )
    args = ap.parse_args()
    work = Path(args.work)
    path = Path(args.out)
    results = json.loads(path.read_text()) if path.exists() else {}
    results["machine"] = (
        f"{os.cpu_count()}-core CPU, shared with other jobs "
        f"({platform.machine()}, "
        f"torch threads {__import__('torch').get_num_threads()})"
    )
    for name in args.datasets:
        runs = train_runs(name, work)
        cache = work / "cache"
        t = time.time()
        ev = evaluate(list(runs.values()), out=work / name / "eval", cache_dir=cache, progress=True)
        seconds = time.time() - t
        # second call: the FD-LeNet extractor now comes from the cache (the usual case)
        t = time.time()
        evaluate(list(runs.values()), out=None, cache_dir=cache, progress=True)
        seconds_cached = time.time() - t
        print(summary(ev))
        entry = {
            "runs": {
                k: {
                    "card_epsilon": json.loads((Path(v) / "card.json").read_text())["privacy"][
                        "epsilon"
                    ],
                    "config": json.loads((Path(v) / "card.json").read_text())["config"],
                    "train_seconds": json.loads((Path(v) / "card.json").read_text())["train"][
                        "wall_seconds"
                    ],
                }
                for k, v in runs.items()
            },
            "evaluate_seconds_first": round(seconds, 1),
            "evaluate_seconds_cached_extractor": round(seconds_cached, 1),
            "metrics": _slim(ev),
        }
        if args.no_audit and "audit" in results.get(name, {}):
            entry["audit"] = results[name]["audit"]  # keep the earlier audit of the same runs
        if not args.no_audit:
            entry["audit"] = {}
            data, holdout, gan_cfg, dp_cfg = DATASETS[name]
            for label, method, eps, cfg in (
                ("gan", "gan", None, gan_cfg),
                ("dpgan-eps10", "dpgan", 10.0, dp_cfg),
            ):
                out = work / name / f"audit-{label}"
                import shutil

                shutil.rmtree(out, ignore_errors=True)
                r = audit(
                    data,
                    method,
                    out,
                    epsilon=eps,
                    canaries=args.canaries,
                    config=cfg,
                    holdout=holdout,
                    ledger=work / "ledger.sqlite",
                    progress=True,
                )
                entry["audit"][label] = {
                    k: r[k]
                    for k in (
                        "accountant_epsilon",
                        "delta",
                        "epsilon_lower_bound",
                        "confidence",
                        "canaries",
                        "included",
                        "per_attack",
                        "seconds",
                    )
                }
                print(
                    f"audit {label}: eps >= {r['epsilon_lower_bound']:.3f} "
                    f"(accountant {r['accountant_epsilon']})"
                )
        results[name] = entry
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"wrote {path}")


def _slim(ev: dict) -> dict:
    """metrics.json without ROC points, cards and galleries (those stay in bench/work)."""
    out = {
        k: ev[k] for k in ("dataset", "feature_extractor", "stats_table", "real_floor", "seconds")
    }
    out["models"] = []
    for m in ev["models"]:
        m = {k: v for k, v in m.items() if k != "card"}
        p = dict(m["privacy"])
        p["mia"] = {a: {k: v for k, v in s.items() if k != "roc"} for a, s in p["mia"].items()}
        p.pop("nearest_pairs", None)
        m["privacy"] = p
        out["models"].append(m)
    return out


if __name__ == "__main__":
    main()
