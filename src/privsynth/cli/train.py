"""Train a generative model with DP-SGD and write a run folder (card.json, README.md model card,
weights.safetensors, samples.png)."""

from __future__ import annotations

import argparse

from . import options

HELP = "train a (DP) generative model; writes a run folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--method",
        default="auto",
        choices=["auto", *options.method_names()],
        help="auto picks the DP method and its settings from public facts: image "
        "shape, channels, the released size N_hat, --epsilon, --time-limit (docs/zoo.md); "
        "dp* methods train with differential privacy; gan, vae and diffusion are their "
        "non-private twins (dpmerf/dpkernel: --no-dp)",
    )
    p.add_argument(
        "--time-limit",
        type=float,
        default=None,
        metavar="MINUTES",
        help="with --method auto: pick a method and steps whose estimated CPU training time "
        "fits; refused if none does",
    )
    p.add_argument("--out", required=True, help="run folder to write (resumes if unfinished)")
    options.add_training_options(p)
    g = add_release_options(p)
    add_warmup_options(p)
    g.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a finished run in --out (its spend stays in the ledger)",
    )
    g.add_argument(
        "--checkpoint-every",
        type=options.positive_int,
        default=500,
        help="steps between checkpoints",
    )
    g.add_argument(
        "--evaluate",
        action="store_true",
        help="after training, write quick_eval.json and print the stats table, the collapse "
        "check and TSTR/TRTR accuracy (LeNet)",
    )
    g.add_argument(
        "--evaluate-resnet",
        action="store_true",
        help="with --evaluate: also TSTR/TRTR with the stronger ResNet (slower)",
    )
    g.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="DP-SGD processes sharing one run (torch.distributed; same epsilon as 1); "
        "or start the command with torchrun --nproc-per-node N -m privsynth.cli",
    )
    g.add_argument(
        "--dist-backend",
        choices=["gloo", "nccl"],
        default="gloo",
        help="torch.distributed backend with --nproc: gloo (CPU) or nccl (one GPU each)",
    )
    options.add_output_options(p)


def add_release_options(p: argparse.ArgumentParser):
    """The run's own releases besides training (class counts, the training-set size); returns
    the "run" group for the remaining run flags."""
    g = p.add_argument_group("run")
    g.add_argument(
        "--class-proportions",
        choices=["uniform", "laplace", "gaussian"],
        default="uniform",
        help="how sampling picks classes: uniform (free) or the "
        "private class counts released with a DP mechanism",
    )
    g.add_argument(
        "--counts-epsilon",
        type=float,
        default=0.1,
        help="epsilon spent on the class counts (taken from --epsilon)",
    )
    g.add_argument(
        "--size-share",
        type=float,
        default=0.02,
        help="share of --epsilon spent on releasing the training-set size N_hat, from which "
        "the sample rate and the default delta are computed (docs/privacy.md)",
    )
    g.add_argument(
        "--size-sigma",
        type=float,
        default=None,
        help="noise standard deviation of the size release (default: calibrated for "
        "--size-share, at most 20; 20 with --noise-multiplier)",
    )
    return g


def add_warmup_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("warm-up (pretraining before DP-SGD; docs/warmup.md)")
    g.add_argument(
        "--warmup",
        choices=["none", "central", "merf"],
        default=None,
        help="central: pretrain on a DP release of per-class central images "
        "(DP-FETA); merf: on the draws of a generator trained against a DP-MERF release; "
        "either release's epsilon is taken from --epsilon; default: the method's recommended "
        "warm-up (for dpgan on >= 3 000 images: central, 5 epochs, below eps 3.5, merf from "
        "it; none otherwise)",
    )
    g.add_argument(
        "--warmup-share",
        type=float,
        default=None,
        help="the warm-up release alone spends this share of --epsilon "
        "(default 0.3); DP-SGD's noise is calibrated for the exact total",
    )
    g.add_argument(
        "--warmup-epochs",
        type=float,
        default=None,
        help="pretraining passes per warm-up phase (default: the method's epochs; 5 in dpgan's "
        "default warm-up); without --warmup it tunes the default warm-up",
    )
    g.add_argument(
        "--warmup-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any warm-up option, e.g. --warmup-set size=7 --warmup-set queries=5",
    )
    g.add_argument(
        "--public-data",
        default=None,
        metavar="PATH",
        help="pretrain on these images, declared public by you (same formats as "
        "--data; resized to its size; same classes); spends no budget",
    )


def train_request(args: argparse.Namespace):
    """The `RunRequest` the parsed flags ask for."""
    from pathlib import Path

    from ..request import DataRequest, OutputRequest, PrivacyRequest, RunRequest, TrainingRequest

    warmup = {"share": args.warmup_share, "epochs": args.warmup_epochs}
    return RunRequest(
        method=args.method,
        data=DataRequest(
            source=options.data_source(args),
            public_data=args.public_data,
            **options.pick(args, options.SPLIT_FLAGS),
        ),
        privacy=PrivacyRequest(
            **options.privacy_kwargs(args),
            **options.pick(args, "class_proportions counts_epsilon size_share size_sigma"),
        ),
        training=TrainingRequest(
            config=options.method_config(args) or None,  # None: nothing set, as in the Python API
            progress=options.progress_wanted(args),
            **options.pick(args, "seed time_limit device checkpoint_every warmup"),
            warmup_config=options.settings(warmup, args.warmup_set, "--warmup-set") or None,
        ),
        output=OutputRequest(
            out=Path(args.out),
            overwrite=args.overwrite,
            quick_eval=args.evaluate,
            quick_eval_classifiers=("lenet", "resnet") if args.evaluate_resnet else ("lenet",),
        ),
    )


def run(args: argparse.Namespace) -> int:
    import json

    from ..orchestrate.distributed import train
    from ..report.card_lines import format_card
    from ..run import GRID, MODEL_CARD, QUICK_EVAL

    with options.privacy_warnings():
        result = train(train_request(args), nproc=args.nproc, backend=args.dist_backend)
    if result is None:  # a torchrun process other than 0: process 0 reports
        return 0
    print(format_card(result.card))
    print(f"sample grid: {result.path / GRID}")
    if args.evaluate:
        from ..evaluate.quick import markdown

        print()
        print(markdown(json.loads((result.path / QUICK_EVAL).read_text()), result.card))
    print(f"model card: {result.path / MODEL_CARD}")
    return 0
