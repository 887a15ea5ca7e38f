"""The GPU check's body (bench/gpu_check.sh is the entry point): train the default method, dpgan
and dpdiffusion at the sizes the field publishes (MNIST 28x28 grey, CIFAR-10 32x32 colour) on one
device, each followed by the quick evaluation (TSTR / TRTR, LeNet), and write the times and the
quality figures as JSON.

    bash bench/gpu_check.sh                             # CUDA, shared data, method defaults
    bash bench/gpu_check.sh --epochs 2                  # DP-SGD methods: 2 epochs (a short slot)
    bash bench/gpu_check.sh --device cpu --smoke        # seconds on CPU: CI keeps it running

Full size: MNIST test set (8 000 private-train, 2 000 holdout) and CIFAR-10-5k (4 085 / 1 000)
from ``$PRIVSYNTH_SHARED_DATA`` (default ``../shared/data``, else ``./shared/data``); each method
at its recommended config for that size (``models.defaults``) at epsilon 10, unless ``--epochs``
caps the DP-SGD methods. Smoke: 240 embedded digits (8x8) as grey and as 3-channel copies, with
budgets of a few steps. One run folder per cell under ``<out>/runs/``, the summary in
``<out>/gpu_check.json`` (written after each cell, so a run cut short keeps what it measured).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("dpmerf", "dpgan", "dpdiffusion")
SMOKE_BUDGETS = {
    "dpmerf": ["--set", "steps=5", "--set", "patience=5", "--set", "n_features=100"],
    "dpgan": ["--epochs", "1", "--batch-size", "32", "--set", "width=8", "--set", "g_width=8"],
    "dpdiffusion": ["--epochs", "1", "--batch-size", "32", "--set", "width=8"]
    + ["--set", "sample_steps=2"],
}


class CheckError(Exception):
    """A refused request; main prints it as one line and exits 2."""


def shared_data() -> Path:
    env = os.environ.get("PRIVSYNTH_SHARED_DATA")
    if env:
        return Path(env).expanduser()
    beside = ROOT.parent / "shared" / "data"
    return beside if beside.exists() else ROOT / "shared" / "data"


def datasets(smoke: bool, work: Path) -> dict[str, list[str]]:
    """name -> `privsynth train` data flags."""
    if smoke:
        from privsynth.data import DataSource, load_dataset

        ds = load_dataset(DataSource("digits"))
        images, labels = ds.images[:240], np.asarray(ds.labels)[:240]
        work.mkdir(parents=True, exist_ok=True)
        np.savez(work / "grey.npz", x=images, y=labels)
        np.savez(work / "colour.npz", x=np.repeat(images, 3, axis=1), y=labels)
        holdout = ["--holdout", "60", "--classes", "10"]
        return {
            "grey": ["--data", str(work / "grey.npz"), *holdout],
            "colour": ["--data", str(work / "colour.npz"), "--channels", "3", *holdout],
        }
    root = shared_data()
    mnist, cifar = root / "mnist-t10k", root / "cifar10-5k" / "cifar10_5k.npz"
    for path in (mnist, cifar):
        if not path.exists():
            raise CheckError(
                f"{path} not found; set PRIVSYNTH_SHARED_DATA to the folder holding mnist-t10k/ "
                "and cifar10-5k/ (or run --smoke)"
            )
    return {
        "mnist28": ["--data", str(mnist), "--classes", "10", "--holdout", "2000"],
        "cifar32": ["--data", str(cifar), "--channels", "3", "--holdout", "1000"],
    }


def run_cell(method: str, data: list[str], args, out: Path) -> dict:
    """One `privsynth train --evaluate` in this process: times, card and quick_eval figures."""
    import torch

    from privsynth.cli import main as cli

    run_dir = out / "runs" / f"{args.dataset_name}-{method}"
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = ["train", "--method", method, *data, "--device", args.device, "--evaluate"]
    cmd += SMOKE_BUDGETS[method] if args.smoke else _budget(method, args.epochs)
    cmd += ["--out", str(run_dir), "--ledger", str(out / "ledger.sqlite"), "-q", "--no-progress"]
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0, c0 = time.perf_counter(), time.process_time()
    code = cli(cmd)
    if cuda:
        torch.cuda.synchronize()
    row = {
        "dataset": args.dataset_name,
        "method": method,
        "command": "privsynth " + " ".join(cmd).replace(str(out), "$OUT"),
        "exit_code": code,
        "wall_seconds": round(time.perf_counter() - t0, 2),
        "cpu_seconds": round(time.process_time() - c0, 2),
    }
    if cuda:
        row["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if code:
        return row
    card = json.loads((run_dir / "card.json").read_text())
    quick = json.loads((run_dir / "quick_eval.json").read_text())
    row.update(
        train_wall_seconds=card["train"].get("wall_seconds"),
        steps=card["train"].get("steps"),
        epsilon=card["privacy"].get("epsilon"),
        config=card.get("config"),
        n_train=quick["n_synthetic"],
        n_holdout=quick["n_holdout"],
        tstr_accuracy=quick["tstr_accuracy"],
        trtr_accuracy=quick["trtr_accuracy"],
        collapse_flags=quick["collapse_flags"],
    )
    return row


def _budget(method: str, epochs: float | None) -> list[str]:
    return ["--epochs", str(epochs)] if epochs and method != "dpmerf" else []


def machine(device: str) -> dict:
    import torch

    facts = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "device": device,
        "load_before": os.getloadavg(),
    }
    if device.startswith("cuda"):
        facts["gpu"] = torch.cuda.get_device_name(0)
        facts["cuda"] = torch.version.cuda
        smi = shutil.which("nvidia-smi")
        if smi:
            q = "--query-gpu=name,memory.total,driver_version"
            facts["nvidia_smi"] = subprocess.run(
                [smi, q, "--format=csv,noheader"], capture_output=True, text=True
            ).stdout.strip()
    return facts


def git_commit() -> dict:
    def git(*a):
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout

    return {"commit": git("rev-parse", "HEAD").strip(), "dirty": bool(git("status", "-s").strip())}


def default_out() -> Path:
    env = os.environ.get("OUT")
    return Path(env) / "gpu_check" if env else ROOT / "bench" / "results" / "gpu_check"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    p.add_argument("--smoke", action="store_true", help="tiny data and budgets, seconds")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--epochs", type=float, default=None, help="cap the DP-SGD methods' epochs")
    p.add_argument("--out", default=None, help="default $OUT/gpu_check or bench/results/gpu_check")
    args = p.parse_args(argv)
    args.methods = [m for m in args.methods.split(",") if m]
    args.out = Path(args.out) if args.out else default_out()
    return args


def run(argv) -> dict:
    args = parse_args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise CheckError(f"--device {args.device}: torch sees no CUDA device; run --device cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {
        **git_commit(),
        "machine": machine(args.device),
        "smoke": args.smoke,
        "epochs_cap": args.epochs,
        "cells": [],
    }
    started = time.perf_counter()
    for name, data in datasets(args.smoke, args.out / "data").items():
        args.dataset_name = name
        for method in args.methods:
            row = run_cell(method, data, args, args.out)
            summary["cells"].append(row)
            print(
                json.dumps(
                    {
                        k: row.get(k)
                        for k in ("dataset", "method", "wall_seconds", "tstr_accuracy", "exit_code")
                    }
                ),
                flush=True,
            )
            summary["seconds"] = round(time.perf_counter() - started, 1)
            summary["machine"]["load_after"] = os.getloadavg()
            from privsynth.atomic import write_json

            write_json(args.out / "gpu_check.json", summary)
    return summary


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT / "src"))
    try:
        summary = run(sys.argv[1:] if argv is None else argv)
    except CheckError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1 if any(c["exit_code"] for c in summary["cells"]) else 0


if __name__ == "__main__":
    sys.exit(main())
