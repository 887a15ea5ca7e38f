"""privsynth evaluate: fidelity, detection, utility, privacy risk -> metrics.json + report.html."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate runs or a synthetic set; writes an HTML report",
                       description="Evaluate one or more run folders (one row per model) and/or "
                                   "a synthetic set made elsewhere (--synthetic PATH --data D). "
                                   "Writes metrics.json and a self-contained report.html into "
                                   "--out and prints a Markdown summary.")
    p.add_argument("runs", nargs="*", help="run folders written by `privsynth train`")
    p.add_argument("--out", required=True, help="folder for metrics.json and report.html")
    p.add_argument("--synthetic", default=None,
                   help="PNG class-folder tree or .npz (as `privsynth sample` writes) to evaluate")
    p.add_argument("--data", default=None,
                   help="the real dataset: needed with --synthetic; for runs it overrides the "
                        "recorded source (e.g. the data moved)")
    p.add_argument("--holdout", type=float, default=0.2,
                   help="with --synthetic: the holdout used in training (fraction or count)")
    p.add_argument("--split-seed", type=int, default=0, help="with --synthetic: the split seed")
    p.add_argument("--image-size", type=int, default=None, help="with --synthetic: resize to N x N")
    p.add_argument("-n", "--n-synthetic", type=int, default=None,
                   help="synthetic images per model, sampled class-balanced (default 10000; "
                        "DPImageBench uses 60000); a set made elsewhere is cut to a "
                        "class-balanced subset of this size")
    p.add_argument("--classifiers", default="lenet,resnet",
                   help="TSTR/TRTR classifiers, comma-separated (default lenet,resnet)")
    p.add_argument("--max-members", type=int, default=1000,
                   help="membership-inference members (= non-members) at most (default 1000)")
    p.add_argument("--cache-dir", default=None,
                   help="where the FD-LeNet feature extractor is cached (default "
                        "$PRIVSYNTH_CACHE or ~/.cache/privsynth)")
    p.add_argument("--inception-weights", default=None,
                   help="local pytorch-fid Inception-v3 weights file: also report standard FID "
                        "(nothing is downloaded)")
    p.add_argument("--classifier-passes", type=int, default=12000,
                   help="training budget of every evaluation CNN, in images seen (default 12000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..evaluate import evaluate
    from ..report.markdown import summary

    result = evaluate(args.runs, synthetic=args.synthetic, data=args.data, out=args.out,
                      holdout=args.holdout, split_seed=args.split_seed, image_size=args.image_size,
                      n_synthetic=args.n_synthetic, max_members=args.max_members,
                      cache_dir=args.cache_dir, inception_weights=args.inception_weights,
                      seed=args.seed, progress=not args.no_progress,
                      classifier_passes=args.classifier_passes,
                      classifiers=tuple(c.strip() for c in args.classifiers.split(",")
                                        if c.strip()))
    print(summary(result))
    print(f"\nwrote {Path(args.out) / 'metrics.json'} and {Path(args.out) / 'report.html'}")
    return 0
