"""Write N synthetic images as a PNG folder (one sub-folder per class, loadable as --data) or as
an .npz (images, labels, class_names)."""

from __future__ import annotations

import argparse

from .options import add_output_options, positive_int, seed_value

HELP = "draw synthetic images from a run"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder written by `privsynth train`")
    p.add_argument("-n", type=positive_int, default=1000, help="number of images")
    p.add_argument("--out", required=True, help="a folder for PNGs, or a file path ending in .npz")
    p.add_argument(
        "--labels",
        default=None,
        help="comma-separated classes to draw, cycled (default: the card's class proportions)",
    )
    p.add_argument(
        "--seed", type=seed_value, default=0, help="sampling seed (same seed, same images)"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing .npz or non-empty folder at --out",
    )
    add_output_options(p, progress=False)


def run(args: argparse.Namespace) -> int:
    from ..preflight import check_memory, check_not_an_input
    from ..run import Run
    from ..synthetic import check_synthetic_out, write_synthetic

    check_not_an_input(args.out, {"RUN": args.run})
    check_synthetic_out(args.out, args.overwrite)
    r = Run.load(args.run)
    # the images and labels, held twice (the array and what is written), before drawing any
    c, h, w = r.card["data"]["image_shape"]
    check_memory(
        2.0 * args.n * (c * h * w + 8),
        f"sampling -n {args.n} images of {c}x{h}x{w}",
        "lower -n (or sample in several runs with different --seed)",
    )
    labels = None
    if args.labels:
        wanted = [s.strip() for s in args.labels.split(",")]
        wanted = [int(s) if s.isdigit() and s not in r.class_names else s for s in wanted]
        labels = [wanted[i % len(wanted)] for i in range(args.n)]
    images, labels = r.sample(args.n, labels=labels, seed=args.seed)
    path = write_synthetic(args.out, images, labels, r.class_names, overwrite=args.overwrite)
    print(f"wrote {args.n} images to {path}")
    return 0
