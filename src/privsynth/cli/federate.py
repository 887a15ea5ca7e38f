"""privsynth federate: train across N data owners with Flower (local SuperLink+SuperNodes)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import (
    add_data_options,
    add_ledger_options,
    add_method_options,
    add_output_options,
    data_source,
    method_config,
    positive_float,
    positive_int,
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "federate",
        help="federated training across data owners (Flower); writes a run folder",
        description="Start a Flower SuperLink and one SuperNode per owner on 127.0.0.1, train "
        "with FedAvg (optionally SecAgg+ or CKKS), write a run folder.",
    )
    p.add_argument(
        "--method",
        default="dpgan",
        help="dpgan (default), gan, dpvae, vae; or dpmerf/dpkernel: one noisy "
        "embedding sum, with --secure-aggregation the distributed Gaussian "
        "(docs/federated.md); --rounds/--local-steps do not apply",
    )
    p.add_argument("--out", required=True, help="run folder to write")
    add_data_options(p, holdout_path=False)
    add_method_options(p)
    g = p.add_argument_group("federation")
    g.add_argument(
        "--clients", type=positive_int, default=5, help="number of data owners (SuperNodes)"
    )
    g.add_argument("--rounds", type=positive_int, default=10, help="FedAvg rounds")
    g.add_argument(
        "--local-steps",
        type=positive_int,
        default=20,
        help="DP-SGD steps per owner per round (discriminator steps for the GAN)",
    )
    g.add_argument("--fraction", type=float, default=1.0, help="fraction of owners per round")
    g.add_argument(
        "--dirichlet",
        type=float,
        default=None,
        metavar="ALPHA",
        help="non-IID split: Dirichlet(ALPHA) over labels (default: IID)",
    )
    g.add_argument(
        "--owner-data",
        nargs="+",
        default=None,
        metavar="PATH",
        help="one dataset per owner instead of splitting --data",
    )
    for switches in (
        {
            "--secure-aggregation": "SecAgg+: the server sees only the sum of the updates",
            "--encrypted-aggregation": "CKKS (TenSEAL): the server adds ciphertexts it cannot "
            "decrypt",
        },
        {
            "--inprocess": "no processes: call the apps directly (fast; for experiments)",
            "--simulate": "Flower's simulation engine (Ray): many virtual owners on this machine, "
            "for studies; needs the simulation extra",
        },
    ):
        one_of = g.add_mutually_exclusive_group()
        for flag, text in switches.items():
            one_of.add_argument(flag, action="store_true", help=text)
    g.add_argument(
        "--sim-parallel",
        type=positive_int,
        default=None,
        metavar="K",
        help="with --simulate: owners training at once (default: the CPU count); fewer use "
        "less memory",
    )
    g.add_argument(
        "--tls",
        nargs=3,
        default=None,
        metavar=("CA", "CERT", "KEY"),
        help="serve TLS with these PEM files instead of insecure loopback",
    )
    g.add_argument("--timeout", type=positive_float, default=1800, help="seconds before giving up")
    d = p.add_argument_group("differential privacy")
    d.add_argument(
        "--epsilon",
        type=float,
        default=10.0,
        help="sample-level epsilon per owner (DP-SGD inside each owner; default 10)",
    )
    d.add_argument("--delta", type=float, default=None, help="per owner (default 1/(10 n_owner))")
    d.add_argument("--no-dp", action="store_true", help="no sample-level DP")
    d.add_argument("--clip", type=float, default=1.0, help="per-sample clip norm C")
    d.add_argument(
        "--accountant",
        choices=["prv", "rdp"],
        default="prv",
        help="Opacus accountant of each owner's sample-level epsilon",
    )
    d.add_argument(
        "--client-epsilon",
        type=float,
        default=None,
        help="add client-level DP (server-side noise) calibrated to this epsilon",
    )
    d.add_argument("--client-clip", type=float, default=1.0, help="update clip norm (client DP)")
    d.add_argument(
        "--client-delta", type=float, default=1e-5, help="delta of the client-level guarantee"
    )
    add_ledger_options(d)
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    add_output_options(p, progress=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..federated import FederateRequest, FederationRequest, federate
    from ..preflight import check_output_folder
    from ..report.card_lines import format_card
    from ..request import DataRequest, OutputRequest, PrivacyRequest, TrainingRequest

    check_output_folder(args.out)
    aggregation = (
        "secagg" if args.secure_aggregation else "ckks" if args.encrypted_aggregation else "plain"
    )
    federation = FederationRequest(
        clients=args.clients,
        rounds=args.rounds,
        local_steps=args.local_steps,
        fraction=args.fraction,
        aggregation=aggregation,
        client_epsilon=args.client_epsilon,
        client_clip=args.client_clip,
        client_delta=args.client_delta,
        dirichlet=args.dirichlet,
        owner_data=args.owner_data,
        mode="inprocess" if args.inprocess else "simulate" if args.simulate else "processes",
        sim_parallel=args.sim_parallel,
        tls=tuple(args.tls) if args.tls else None,
        timeout=args.timeout,
    )
    privacy = PrivacyRequest(
        epsilon=args.epsilon,
        delta=args.delta,
        max_grad_norm=args.clip,
        accountant=args.accountant,
        no_dp=args.no_dp,
        ledger=args.ledger,
        budget=args.budget,
        force=args.force,
    )
    data = DataRequest(
        source=data_source(args),
        holdout=args.holdout,
        split_seed=args.split_seed,
        image_size=args.image_size,
    )
    result = federate(
        FederateRequest(
            args.method,
            data,
            privacy,
            TrainingRequest(config=method_config(args), seed=args.seed, device=args.device),
            OutputRequest(out=Path(args.out), overwrite=args.overwrite),
            federation,
        )
    )
    print(format_card(result.card))
    print(result.card["privacy"]["guarantee"])
    return 0
