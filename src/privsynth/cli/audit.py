"""privsynth audit: empirical lower bound on epsilon from one training run with canaries."""

from __future__ import annotations

import argparse

from .options import (
    add_data_options,
    add_method_options,
    add_output_options,
    add_privacy_options,
    data_source,
    method_config,
    method_names,
    positive_int,
    privacy_kwargs,
    progress_wanted,
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "audit",
        help="empirical epsilon lower bound (one run with canaries)",
        description="Insert canaries (mislabeled images, each included with "
        "probability 1/2), train once, attack each canary and print "
        "the Steinke-Nasr-Jagielski (2023) lower bound on epsilon "
        "next to the accountant's epsilon. Writes OUT/audit.json and "
        "the run in OUT/run.",
    )
    p.add_argument("--method", default="dpgan", choices=method_names(), help="the method to audit")
    p.add_argument("--out", required=True, help="folder for the audit run and audit.json")
    p.add_argument("--canaries", type=positive_int, default=100, help="number of canaries")
    p.add_argument("--confidence", type=float, default=0.95, help="confidence of the lower bound")
    p.add_argument(
        "-n",
        "--n-synthetic",
        type=positive_int,
        default=None,
        help="synthetic images the black-box attacks see (default: training size)",
    )
    add_data_options(p, holdout_path=False)
    add_privacy_options(p)
    add_method_options(p)
    add_output_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluate.audit import audit, markdown
    from ..preflight import check_device, check_output_folder

    check_output_folder(args.out)
    check_device(args.device)
    result = audit(
        data_source(args),
        args.method,
        args.out,
        canaries=args.canaries,
        confidence=args.confidence,
        config=method_config(args),
        holdout=args.holdout,
        split_seed=args.split_seed,
        seed=args.seed,
        image_size=args.image_size,
        n_synthetic=args.n_synthetic,
        progress=progress_wanted(args),
        **privacy_kwargs(args),
        device=args.device,
    )
    print(markdown(result))
    return 0
