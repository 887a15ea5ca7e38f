"""Copy a finished DP run's weights.safetensors and samples.png, and write its card.json (without
local paths and un-noised training losses) and README.md model card (Hugging Face format) into
DIR. Never copies split.json or train_state.pt. Evaluation figures (computed on the real data
without DP) are left out unless --include-evaluation."""

from __future__ import annotations

import argparse

from .options import add_output_options, pick

HELP = "write a folder with only what is safe to publish"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder written by `privsynth train` or `federate`")
    p.add_argument("dir", metavar="DIR", help="folder to write (e.g. a Hugging Face repo clone)")
    p.add_argument(
        "--license",
        default=None,
        metavar="ID",
        help="Hugging Face license identifier for the model card, e.g. apache-2.0 "
        "(default: 'other', unspecified — the data owner decides)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty DIR")
    p.add_argument(
        "--non-private",
        action="store_true",
        help="also export a run trained without DP (only for public training data)",
    )
    p.add_argument(
        "--include-evaluation",
        action="store_true",
        help="also publish the run's quick evaluation (train --evaluate) in README.md, under a "
        "heading saying it is not covered by the DP guarantee: TRTR trains a classifier on the "
        "private training split without noise and every figure is measured on real data",
    )
    add_output_options(p, progress=False)


def run(args: argparse.Namespace) -> int:
    from ..export import export

    flags = pick(args, "overwrite non_private include_evaluation")
    out = export(args.run, args.dir, license_id=args.license, **flags)
    print(f"exported {args.run} -> {out}: {', '.join(sorted(p.name for p in out.iterdir()))}")
    return 0
