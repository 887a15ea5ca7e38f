"""Flags shared by several verbs (train, and later sweep / federate)."""

from __future__ import annotations

import argparse
import ast


def add_data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", default="digits",
                   help="'digits' (embedded), an IDX file/folder, an .npz, or a folder with one "
                        "sub-folder per class (default: digits)")
    g.add_argument("--image-size", type=int, default=None, help="resize images to N x N")
    g.add_argument("--holdout", type=float, default=0.2,
                   help="held-out fraction (<1) or count, never trained on (default 0.2)")
    g.add_argument("--split-seed", type=int, default=0)


def add_privacy_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("differential privacy")
    g.add_argument("--epsilon", type=float, default=10.0,
                   help="total epsilon target (default 10); the noise is calibrated to it")
    g.add_argument("--delta", type=float, default=None, help="delta (default 1/(10 N))")
    g.add_argument("--noise-multiplier", type=float, default=None,
                   help="fix sigma instead of calibrating from --epsilon")
    g.add_argument("--clip", type=float, default=1.0, help="per-sample gradient clip norm C")
    g.add_argument("--accountant", choices=["prv", "rdp"], default="prv")
    g.add_argument("--grad-sample-mode", choices=["bk", "hooks", "functorch", "ew"], default="bk",
                   help="how per-sample clipping is computed: bk (Book-Keeping, fastest) or "
                        "Opacus' hooks/functorch/ew; all exact, noise and accounting by Opacus")
    g.add_argument("--no-dp", action="store_true", help="train without privacy (a baseline)")
    g.add_argument("--ledger", default=None,
                   help="privacy ledger JSON (default: privacy-ledger.json beside --out)")
    g.add_argument("--budget", type=float, default=None,
                   help="total epsilon budget for this dataset; runs that would exceed it stop")
    g.add_argument("--force", action="store_true", help="run even if it exceeds --budget")


def add_method_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("method")
    g.add_argument("--epochs", type=float, default=None,
                   help="expected passes over the private data")
    g.add_argument("--batch-size", type=int, default=None, help="expected batch size")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any method option, e.g. --set n_d=50 --set width=64")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")


def method_config(args: argparse.Namespace) -> dict:
    config = {"epochs": args.epochs, "batch_size": args.batch_size}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            from ..errors import ConfigError

            raise ConfigError(f"--set expects KEY=VALUE, got '{item}'")
        try:
            config[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            config[key.strip()] = value
    return {k: v for k, v in config.items() if v is not None}
