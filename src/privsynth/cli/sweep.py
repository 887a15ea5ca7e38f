"""Train every method at every epsilon (resumable: finished cells are kept), evaluate TSTR accuracy
and a Fréchet distance, write sweep.json, sweep.md and sweep.png."""

from __future__ import annotations

import argparse

from . import options

HELP = "privacy-utility frontier: methods x epsilons"


def add_arguments(p: argparse.ArgumentParser) -> None:
    options.add_data_options(p)
    g = p.add_argument_group("sweep")
    g.add_argument(
        "--methods",
        default="dpgan,dpvae,dpdiffusion,dpmerf",
        help="comma-separated registered methods (default: the four DP methods)",
    )
    g.add_argument(
        "--epsilons",
        default="1,2,5,10,inf",
        help="comma-separated targets; inf = the method's non-private twin",
    )
    g.add_argument("--out", required=True, help="sweep folder (cells/, sweep.json, sweep.png)")
    g.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="METHOD:KEY=VALUE",
        help="override a method option, e.g. --set dpvae:epochs=20 (repeatable)",
    )
    g.add_argument(
        "--n-synthetic",
        type=options.positive_int,
        default=None,
        help="class-balanced synthetic images per cell for TSTR (default: 10 000, the protocol's)",
    )
    g.add_argument(
        "--eval-epochs",
        type=options.positive_int,
        default=None,
        help="LeNet epochs for TSTR/TRTR (default: the protocol's fixed schedule, ~150 000 "
        "images seen; docs/evaluation.md)",
    )
    g.add_argument(
        "--seed", type=options.seed_value, default=0, help="seed of weights, sampling and the LeNet"
    )
    g.add_argument(
        "--jobs",
        type=options.positive_int,
        default=1,
        help="cells trained at once in worker processes (e.g. 2 on a 2-core CPU); with "
        "--ray auto, the local Ray instance gets jobs x --ray-cpus-per-cell CPUs",
    )
    r = p.add_argument_group('ray (pip install -e ".[ray]")')
    r.add_argument(
        "--ray",
        metavar="auto|ADDRESS",
        default=None,
        help="train each cell as a Ray task: 'auto' starts Ray on this machine, HOST:PORT joins "
        "a cluster (`ray start --head`; --out on a folder every node mounts, --ledger a "
        "postgresql:// URL)",
    )
    r.add_argument(
        "--ray-cpus-per-cell",
        type=float,
        default=1.0,
        metavar="CPUS",
        help="CPUs each cell's task holds, also its torch threads (default 1; fractions allowed)",
    )
    r.add_argument(
        "--ray-gpus-per-cell",
        type=float,
        default=0.0,
        metavar="GPUS",
        help="GPUs each cell's task holds; > 0 trains on CUDA, 0.5 puts two cells on one GPU "
        "(default 0: CPU)",
    )
    d = p.add_argument_group("differential privacy")
    d.add_argument(
        "--delta",
        type=float,
        default=None,
        help="delta of every private cell (default 1/(10 N_hat), N_hat a DP count)",
    )
    options.add_accountant_option(d, "Opacus accountant that computes each cell's epsilon")
    options.add_ledger_options(d, delta_check=True)
    options.add_output_options(p)


def parse_sets(items: list[str]) -> dict[str, dict]:
    from ..errors import ConfigError

    out: dict[str, dict] = {}
    for item in items:
        method, colon, rest = item.partition(":")
        key, eq, value = rest.partition("=")
        if not (colon and eq and key.strip()):
            raise ConfigError(
                f"--set expects METHOD:KEY=VALUE (e.g. dpvae:epochs=20), got '{item}'"
            )
        out.setdefault(method.strip(), {})[key.strip()] = options.literal(value)
    return out


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import ConfigError
    from ..orchestrate.sweep import markdown, parse_epsilons, sweep
    from ..preflight import check_output_folder

    check_output_folder(args.out)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise ConfigError(
            f"--methods '{args.methods}' names no method; pass e.g. --methods dpgan,dpmerf"
        )
    configs = parse_sets(args.set)
    unused = sorted(set(configs) - set(methods))
    if unused:  # a setting for a method that does not run would be ignored without a word
        raise ConfigError(
            f"--set names {unused}, which --methods {','.join(methods)} does not run; add "
            "them to --methods or drop those --set flags"
        )
    with options.privacy_warnings():
        table = sweep(
            options.data_source(args),
            methods,
            parse_epsilons(args.epsilons),
            args.out,
            configs=configs,
            progress=options.progress_wanted(args),
            **options.pick(args, options.SPLIT_FLAGS, "delta accountant seed n_synthetic"),
            **options.pick(args, "eval_epochs jobs ray ray_cpus_per_cell ray_gpus_per_cell"),
            **options.pick(args, "ledger budget force"),
        )
    print(markdown(table))
    print(f"table: {Path(args.out) / 'sweep.json'}  plot: {Path(args.out) / 'sweep.png'}")
    return 0
