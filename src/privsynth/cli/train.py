"""privsynth train: train a method on a dataset and write a run folder."""

from __future__ import annotations

import argparse

from .options import add_data_options, add_method_options, add_privacy_options, method_config


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a (DP) generative model; writes a run folder",
                       description="Train a generative model with DP-SGD and write a run folder "
                                   "(card.json, weights.safetensors, samples.png).")
    p.add_argument("--method", default="dpgan", help="registered method (default dpgan)")
    p.add_argument("--out", required=True, help="run folder to write (resumes if unfinished)")
    add_data_options(p)
    add_privacy_options(p)
    add_method_options(p)
    p.add_argument("--class-proportions", choices=["uniform", "laplace", "gaussian"],
                   default="uniform", help="how sampling picks classes: uniform (free) or the "
                                           "private class counts released with a DP mechanism")
    p.add_argument("--counts-epsilon", type=float, default=0.1,
                   help="epsilon spent on the class counts (taken from --epsilon)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--evaluate", action="store_true",
                   help="after training, print the stats table and TSTR/TRTR accuracy")
    p.add_argument("--nproc", type=int, default=1,
                   help="DP-SGD processes sharing one run (torch.distributed; same epsilon as 1); "
                        "or start the command with torchrun --nproc-per-node N -m privsynth.cli")
    p.add_argument("--dist-backend", choices=["gloo", "nccl"], default="gloo",
                   help="torch.distributed backend with --nproc: gloo (CPU) or nccl (one GPU each)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..atomic import write_json
    from ..distributed import train
    from ..report import save_grid

    result = train(args.data, args.method, args.out, epsilon=args.epsilon, delta=args.delta,
                   noise_multiplier=args.noise_multiplier, max_grad_norm=args.clip,
                   accountant=args.accountant, grad_sample_mode=args.grad_sample_mode,
                   no_dp=args.no_dp, config=method_config(args), holdout=args.holdout,
                   split_seed=args.split_seed, seed=args.seed, image_size=args.image_size,
                   ledger=args.ledger, budget=args.budget, force=args.force,
                   overwrite=args.overwrite, class_proportions=args.class_proportions,
                   counts_epsilon=args.counts_epsilon, device=args.device,
                   progress=not args.no_progress, checkpoint_every=args.checkpoint_every,
                   nproc=args.nproc, backend=args.dist_backend)
    if result is None:  # a torchrun process other than 0: process 0 reports
        return 0
    k = len(result.class_names)
    images, labels = result.sample(10 * k, labels=[i // 10 for i in range(10 * k)], seed=args.seed)
    grid = Path(args.out) / "samples.png"
    save_grid(grid, images, labels, k)
    from .info import format_card

    print(format_card(result.card))
    print(f"sample grid: {grid}")
    if args.evaluate:
        from ..evaluate.quick import markdown, quick_evaluate

        ev = quick_evaluate(result, seed=args.seed)
        write_json(Path(args.out) / "quick_eval.json", ev)
        print()
        print(markdown(ev, result.card))
    return 0
