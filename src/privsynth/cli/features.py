"""Train a feature network on PUBLIC images for ``dpmepf`` (``train --method dpmepf --features
FILE``): the evaluation classifier on the fixed schedule, saved as safetensors with what rebuilds
it. Only give it data that may be published: the network's weights are released with every run
that uses it, and no epsilon covers the data it was trained on."""

from __future__ import annotations

import argparse

from .options import add_format_options, image_size, positive_int, progress_wanted, seed_value

HELP = "train a feature network on public images (for dpmepf)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("public data (its images are not protected)")
    g.add_argument("--data", required=True, help="public images: 'digits', IDX, .npz or a folder")
    g.add_argument(
        "--image-size",
        type=image_size,
        default=None,
        metavar="N",
        help="resize to N x N: the private images' size (default: keep their size)",
    )
    add_format_options(g)
    p.add_argument(
        "--classifier",
        choices=["lenet", "resnet"],
        default="lenet",
        help="the network (the evaluation classifiers' architectures)",
    )
    p.add_argument("--out", required=True, help="the feature file to write (.safetensors)")
    p.add_argument(
        "--epochs", type=positive_int, default=None, help="default: the fixed schedule's, by size"
    )
    p.add_argument("--seed", type=seed_value, default=0, help="seed of the initial weights")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..data import load_dataset
    from ..models.mepf import train_feature_network
    from .options import data_source

    public = load_dataset(data_source(args), image_size=args.image_size)
    path = train_feature_network(
        public, args.out, args.classifier, args.seed, args.epochs, progress_wanted(args)
    )
    shape = "x".join(str(v) for v in public.image_shape)
    print(f"wrote {path}: {args.classifier} on {shape} public images, {public.num_classes} classes")
    print(f"use it with: privsynth train --method dpmepf --features {path}")
    return 0
