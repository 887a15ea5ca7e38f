"""privsynth sample: draw synthetic images from a run into a PNG folder or an .npz."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("sample", help="draw synthetic images from a run",
                       description="Write N synthetic images as a PNG folder (one sub-folder per "
                                   "class, loadable as --data) or as an .npz (images, labels).")
    p.add_argument("run", help="run folder written by `privsynth train`")
    p.add_argument("-n", type=int, default=1000, help="number of images (default 1000)")
    p.add_argument("--out", required=True, help="folder for PNGs, or a path ending in .npz")
    p.add_argument("--labels", default=None,
                   help="comma-separated classes to draw (cycled); default: the card's proportions")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..run import Run
    from ..synthetic import write_synthetic

    if args.n <= 0:
        raise ConfigError(f"-n must be a positive number of images, got {args.n}")
    r = Run.load(args.run)
    labels = None
    if args.labels:
        wanted = [int(s) if s.strip().isdigit() and s.strip() not in r.class_names else s.strip()
                  for s in args.labels.split(",")]
        labels = [wanted[i % len(wanted)] for i in range(args.n)]
    images, labels = r.sample(args.n, labels=labels, seed=args.seed)
    path = write_synthetic(args.out, images, labels, r.class_names)
    print(f"wrote {args.n} images to {path}")
    return 0
