"""`privsynth evaluate` on real runs: every metric, and how long the evaluation takes.

    PYTHONPATH=src nice -n 10 python bench/evaluate_bench.py                    # digits
    PYTHONPATH=src nice -n 10 python bench/evaluate_bench.py --datasets mnist10k
    PYTHONPATH=src python bench/evaluate_bench.py --smoke                        # seconds

For each dataset: train the non-private GAN (``gan``) and the DP-GAN (``dpgan``) at epsilon 1 and
10 with a small CPU budget (``--set`` / the presets below), then run ONE
``privsynth.evaluate.evaluate`` over the three runs with a fresh feature-extractor cache, so the
timing includes training the FD-LeNet extractor and every evaluation classifier. Runs are kept in
``--workdir`` and reused when their card matches (``--retrain`` forces training).

Datasets: ``digits`` (embedded; holdout 0.8 -> 359 train / 1438 holdout: a small training set,
so that the short CPU training of the non-private GAN still sees each image ~90 times and the
membership attacks have something to find; 359 members vs 359 non-members) and ``mnist10k``
(``../shared/data/mnist-t10k``, holdout 2000, split seed 0 -> 8000 / 2000).
The membership-inference AUC is given with a 95% interval (Hanley & McNeil 1982 standard error)
so "measurably above 0.5" is a statement, not a guess.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

import privsynth
from privsynth.atomic import write_json
from privsynth.evaluate import evaluate

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT / ".." / "shared" / "data" / "mnist-t10k"
DATASETS = {"digits": ("digits", 0.8), "mnist10k": (str(MNIST), 2000)}
# CPU budgets (shared 2-core machine). The non-private GAN is trained longer than the DP ones on
# purpose: a GAN that has seen its training images many times is what membership inference is
# meant to catch; DP runs use the method's large-batch, multi-D-step recipe.
PRESETS = {
    "digits": {"gan": {"epochs": 90, "batch_size": 64, "n_d": 1},
               "dpgan": {"epochs": 30, "batch_size": 64, "n_d": 2}},
    "mnist10k": {"gan": {"epochs": 40, "batch_size": 64, "n_d": 1},
                 "dpgan": {"epochs": 20, "batch_size": 256, "n_d": 2}},
}
WORK = Path(tempfile.gettempdir()) / "privsynth-evaluate-bench"
SMOKE = {"epochs": 2, "batch_size": 64, "n_d": 2, "width": 8, "g_width": 8, "z_dim": 8}


def parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def auc_interval(auc: float, n_pos: int, n_neg: int, z: float = 1.96) -> list[float]:
    """95% interval for an AUC from its Hanley-McNeil standard error."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (
        n_pos * n_neg)
    se = math.sqrt(max(var, 0.0))
    return [round(max(0.0, auc - z * se), 4), round(min(1.0, auc + z * se), 4)]


def _cpu_seconds() -> float:
    """CPU time of this process, all threads (on a shared machine, wall time overstates cost)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def train_or_reuse(source, holdout, method: str, eps: float | None, config: dict, out: Path,
                   retrain: bool, progress: bool) -> tuple[Path, float]:
    card = out / "card.json"
    if card.exists() and not retrain:
        c = json.loads(card.read_text())
        same = (c.get("status") == "complete" and c.get("config", {}) | config == c.get("config")
                and c.get("train", {}).get("holdout") == holdout and c.get("method") == method
                and (eps is None or abs(float(c["privacy"]["epsilon"]) - eps) < 0.05 * eps))
        if same:
            return out, float(c.get("train", {}).get("wall_seconds", float("nan")))
    t0 = time.time()
    privsynth.train(source, method, out, epsilon=eps, config=config, holdout=holdout,
                    split_seed=0, seed=0, progress=progress, overwrite=True,
                    checkpoint_every=10**9, ledger=out.parent / "ledger.json")
    return out, round(time.time() - t0, 1)


def flatten(model: dict) -> dict:
    """The figures of one model row, without ROC points and cards."""
    f, d, u, p = model["fidelity"], model["detection"], model["utility"], model["privacy"]
    mia = {}
    for name, a in p["mia"].items():
        mia[name] = {k: a[k] for k in ("auc", "tpr_at_0.01_fpr", "tpr_at_0.001_fpr",
                                        "dp_ceiling_tpr_at_0.01_fpr", "dp_ceiling_tpr_at_0.001_fpr",
                                        "dp_ceiling_auc", "exceeds_dp_ceiling", "n_members")}
        mia[name]["auc_95ci"] = auc_interval(a["auc"], a["n_members"], a["n_nonmembers"])
    return {
        "epsilon": model["epsilon"], "delta": model["delta"], "n_synthetic": model["n_synthetic"],
        "fd_lenet": f["fd_lenet"], "kid_lenet": f["kid_lenet"], "prdc": f["prdc"],
        "fid_inception": f.get("fid_inception"),
        "detection": {k: d[k] for k in ("accuracy", "auc", "auc_ci", "n_test")},
        "tstr_accuracy": u["tstr"]["accuracy"], "tstr_epochs": u["tstr"]["epochs"],
        "trtr_accuracy": u["trtr"]["accuracy"],
        "augmentation_minority_accuracy": u["augmentation"]["minority_accuracy"],
        "augmentation_overall_accuracy": u["augmentation"]["real_plus_synthetic"]["accuracy"],
        "mia": mia, "strongest_attack": p["strongest_attack"], "dcr": p["dcr"],
        "attribute_inference": p["attribute_inference"], "white_box": p["white_box"],
        "seconds": model["seconds"],
    }


def bench_dataset(name: str, args, config_override: dict, workdir: Path) -> dict:
    source, holdout = DATASETS[name]
    presets = PRESETS[name]
    runs, train_seconds = [], {}
    for label, method, eps in (("gan", "gan", None), ("dpgan-eps1", "dpgan", 1.0),
                               ("dpgan-eps10", "dpgan", 10.0)):
        cfg = dict(SMOKE) if args.smoke else {**presets[method], **config_override}
        path, secs = train_or_reuse(source, holdout, method, eps, cfg, workdir / name / label,
                                    args.retrain, args.progress)
        runs.append(path)
        train_seconds[label] = secs
        print(f"{name}/{label}: trained in {secs}s", flush=True)
    cache = Path(tempfile.mkdtemp(prefix="privsynth-bench-cache-"))
    try:
        t0, c0 = time.time(), _cpu_seconds()
        result = evaluate(runs, out=Path(args.report_dir) / name, cache_dir=str(cache),
                          max_members=args.max_members, seed=0, progress=args.progress,
                          **({"classifier_passes": 1000} if args.smoke else {}))
        seconds, cpu = time.time() - t0, _cpu_seconds() - c0
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    n_models = len(result["models"])
    shared = seconds - sum(m["seconds"] for m in result["models"])
    return {
        "n_train": result["dataset"]["n_train"], "n_holdout": result["dataset"]["n_holdout"],
        "n_members": result["dataset"]["n_members"],
        "fingerprint": result["dataset"]["fingerprint"],
        "train_configs": {r.name: json.loads((r / "card.json").read_text())["config"]
                          for r in runs},
        "train_seconds": train_seconds,
        "evaluate_seconds_total": round(seconds, 1),
        "evaluate_cpu_seconds_total": round(cpu, 1),
        "evaluate_seconds_shared": round(shared, 1),
        "evaluate_seconds_per_model": round(shared / n_models
                                            + sum(m["seconds"] for m in result["models"])
                                            / n_models, 1),
        "evaluate_seconds_one_model": round(shared + result["models"][0]["seconds"], 1),
        "feature_extractor_val_accuracy": result["feature_extractor"]["val_accuracy"],
        "real_floor": result["real_floor"],
        "stats_table": result["stats_table"],
        "models": {m["name"]: flatten(m) for m in result["models"]},
    }


def bench_audit(name: str, args, config_override: dict, workdir: Path) -> dict:
    """``privsynth.evaluate.audit.audit`` for the same three settings: the empirical lower bound
    on epsilon next to the accountant's."""
    from privsynth.evaluate.audit import audit

    source, holdout = DATASETS[name]
    out = {}
    for label, method, eps in (("gan", "gan", None), ("dpgan-eps1", "dpgan", 1.0),
                               ("dpgan-eps10", "dpgan", 10.0)):
        cfg = dict(SMOKE) if args.smoke else {**PRESETS[name][method], **config_override}
        folder = workdir / name / f"audit-{label}"
        r = audit(source, method, folder, epsilon=eps, canaries=args.canaries, config=cfg,
                  holdout=holdout, split_seed=0, seed=0, progress=args.progress,
                  ledger=folder / "ledger.json", overwrite=True, checkpoint_every=10**9)
        out[label] = {k: r[k] for k in ("accountant_epsilon", "delta", "epsilon_lower_bound",
                                        "confidence", "canaries", "included",
                                        "tests_corrected_for", "per_attack", "seconds")}
        print(f"{name}/{label} audit: eps >= {r['epsilon_lower_bound']:.3f} "
              f"(accountant {r['accountant_epsilon']})", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["digits"], choices=list(DATASETS))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a GANConfig field for every run, e.g. --set epochs=50")
    ap.add_argument("--max-members", type=int, default=1000)
    ap.add_argument("--workdir", default=str(WORK), help="run folders (reused)")
    ap.add_argument("--report-dir", default=str(WORK / "reports"),
                    help="where each dataset's metrics.json and report.html go")
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--audit", action="store_true",
                    help="also run the one-run audit (3 more trainings per dataset)")
    ap.add_argument("--audit-only", action="store_true",
                    help="run only the audit; keep the evaluation figures already in --out")
    ap.add_argument("--canaries", type=int, default=100)
    ap.add_argument("--smoke", action="store_true", help="tiny runs, seconds (CI-size)")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--out", default="bench/results/evaluate.json")
    args = ap.parse_args(argv)
    if args.smoke:
        args.datasets, args.workdir = ["digits"], str(Path(args.workdir) / "smoke")
        if args.out == ap.get_default("out"):  # never overwrite the real figures with a smoke run
            args.out = str(Path(args.workdir) / "evaluate-smoke.json")
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() and not args.smoke else {}
    results.update({
        "what": "privsynth.evaluate over a no-DP GAN and DP-GANs at eps 1 and 10: fidelity "
                "(FD-LeNet, KID, PRDC), detection, TSTR/TRTR, membership inference, attribute "
                "inference, and evaluate's wall time (feature extractor trained from scratch)",
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} "
                   "torch threads, shared with other jobs",
        "torch": torch.__version__, "smoke": args.smoke,
        "command": "PYTHONPATH=src nice -n 10 python bench/evaluate_bench.py "
                   + " ".join(argv if argv is not None else __import__("sys").argv[1:])})
    results.setdefault("datasets", {})
    for name in args.datasets:
        if args.audit_only:
            entry = results["datasets"].get(name, {})
            entry["audit"] = bench_audit(name, args, parse_set(args.set), Path(args.workdir))
            results["datasets"][name] = entry
            write_json(out, results)
            continue
        entry = bench_dataset(name, args, parse_set(args.set), Path(args.workdir))
        if args.audit:
            entry["audit"] = bench_audit(name, args, parse_set(args.set), Path(args.workdir))
        results["datasets"][name] = entry
        gan = entry["models"]["gan"]["mia"]
        best = max(gan, key=lambda a: gan[a]["auc"])
        print(f"{name}: evaluate {entry['evaluate_seconds_total']}s for 3 models "
              f"({entry['evaluate_seconds_one_model']}s for one); no-DP GAN strongest MIA "
              f"{best} AUC {gan[best]['auc']:.3f} {gan[best]['auc_95ci']}", flush=True)
        write_json(out, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
