"""Insert canaries (mislabeled images, each included with probability 1/2), train once, attack
each canary and print the Steinke-Nasr-Jagielski (2023) lower bound on epsilon next to the
accountant's epsilon. Writes OUT/audit.json and the run in OUT/run."""

from __future__ import annotations

import argparse

from . import options

HELP = "empirical epsilon lower bound (one run with canaries)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--method", default="dpgan", choices=options.method_names(), help="the method to audit"
    )
    p.add_argument("--out", required=True, help="folder for the audit run and audit.json")
    p.add_argument("--canaries", type=options.positive_int, default=100, help="number of canaries")
    p.add_argument("--confidence", type=float, default=0.95, help="confidence of the lower bound")
    p.add_argument(
        "-n",
        "--n-synthetic",
        type=options.positive_int,
        default=None,
        help="synthetic images the black-box attacks see (default: training size)",
    )
    options.add_training_options(p, holdout_path=False)
    options.add_output_options(p)


def run(args: argparse.Namespace) -> int:
    from ..evaluate.audit import audit, markdown
    from ..preflight import check_device, check_output_folder

    check_output_folder(args.out)
    check_device(args.device)
    result = audit(
        options.data_source(args),
        args.method,
        args.out,
        config=options.method_config(args),
        progress=options.progress_wanted(args),
        **options.pick(args, options.SPLIT_FLAGS, "canaries confidence seed n_synthetic device"),
        **options.privacy_kwargs(args),
    )
    print(markdown(result))
    return 0
