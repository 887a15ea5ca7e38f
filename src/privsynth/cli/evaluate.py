"""Evaluate one or more run folders (one row per model) and/or a synthetic set made elsewhere
(--synthetic PATH --data D). Writes metrics.json and a self-contained report.html into --out and
prints a Markdown summary."""

from __future__ import annotations

import argparse

from . import options

HELP = "evaluate runs or a synthetic set; writes an HTML report"
OUTPUTS = ("metrics.json", "report.html")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="*", help="run folders written by `privsynth train`")
    p.add_argument("--out", required=True, help="folder for metrics.json and report.html")
    p.add_argument(
        "--overwrite", action="store_true", help="replace metrics.json/report.html already in --out"
    )
    p.add_argument(
        "--synthetic",
        default=None,
        help="PNG class-folder tree or .npz (as `privsynth sample` writes) to evaluate",
    )
    g = p.add_argument_group("real data (with --synthetic; for runs it overrides the card)")
    g.add_argument(
        "--data",
        default=None,
        help="the real dataset: needed with --synthetic; for runs it overrides the "
        "recorded source (e.g. the data moved)",
    )
    options.add_split_options(g, when="with --synthetic, as in training: ")
    options.add_format_options(g)
    e = p.add_argument_group("evaluation")
    e.add_argument(
        "-n",
        "--n-synthetic",
        type=options.positive_int,
        default=None,
        help="synthetic images per model, sampled class-balanced (default 10000; "
        "DPImageBench uses 60000); a set made elsewhere is cut to a "
        "class-balanced subset of this size",
    )
    e.add_argument(
        "--classifiers",
        default="lenet,resnet",
        help="TSTR/TRTR classifiers, comma-separated (default lenet,resnet)",
    )
    e.add_argument(
        "--max-members",
        type=options.positive_int,
        default=1000,
        help="membership-inference members (= non-members) at most",
    )
    e.add_argument(
        "--cache-dir",
        default=None,
        help="where the FD-LeNet feature extractor is cached (default "
        "$PRIVSYNTH_CACHE or ~/.cache/privsynth)",
    )
    e.add_argument(
        "--inception-weights",
        default=None,
        help="local pytorch-fid Inception-v3 weights file: also report standard FID "
        "(nothing is downloaded; default: no FID)",
    )
    e.add_argument(
        "--classifier-passes",
        type=options.positive_int,
        default=None,
        help="training budget of every evaluation CNN, in images seen (default: the validated "
        "fixed schedule's, 150 000)",
    )
    e.add_argument(
        "--seed", type=options.seed_value, default=0, help="seed of sampling and of the CNNs"
    )
    options.add_output_options(p)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..evaluate import evaluate
    from ..evaluate.utility import DEFAULT_PASSES
    from ..preflight import check_output_folder
    from ..report.markdown import summary

    out = check_output_folder(args.out)
    existing = [name for name in OUTPUTS if (out / name).exists()]
    if existing and not args.overwrite:
        raise ConfigError(
            f"'{out}' already holds {', '.join(existing)}; pass --overwrite to "
            "replace them or choose another --out"
        )
    result = evaluate(
        args.runs,
        synthetic=args.synthetic,
        data=options.data_source(args) if args.data else None,
        out=args.out,
        progress=options.progress_wanted(args),
        classifier_passes=args.classifier_passes or DEFAULT_PASSES,
        classifiers=tuple(c.strip() for c in args.classifiers.split(",") if c.strip()),
        **options.pick(
            args, options.SPLIT_FLAGS, "n_synthetic max_members cache_dir inception_weights seed"
        ),
    )
    print(summary(result))
    print(f"\nwrote {out / OUTPUTS[0]} and {out / OUTPUTS[1]}")
    return 0
