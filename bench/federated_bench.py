"""Central DP vs federated (plain / SecAgg+ / CKKS) at equal epsilon, IID and Dirichlet 0.3.

Writes bench/results/federated.json (or --out). For each setting: the privacy guarantee (words +
epsilon), TSTR accuracy (privsynth.evaluate.utility.tstr: the fixed CNN trained on 2000 synthetic
images, tested on the real holdout), Fréchet distance in the features of a LeNet trained on the
real training split (the sweep's "frechet_lenet"), wall time relative to central training, bytes
sent per round, and for CKKS the max abs deviation of its model from the plaintext-FedAvg model.

Compute is matched: every owner runs rounds x local_steps DP-SGD steps on ~1/5 of the data;
central DP runs 5x that many steps on all of it, at the same expected batch size.

    python bench/federated_bench.py                                  # dpgan, in-process apps
    python bench/federated_bench.py --method dpvae --rounds 20 --local-steps 15
    python bench/federated_bench.py --mode processes                 # real SuperLink + SuperNodes
    python bench/federated_bench.py --method dpdiffusion --splits iid --aggregations plain \
        --out bench/results/federated_gap_digits.json --label baseline   # one row, merged in

Without --rounds, the model config is the method's recommended one for the central data size
(models/defaults.py) with --batch-size, and rounds = central D-steps / (clients x local-steps).
With --label the result is merged into --out under (method, label), so one file holds every
method and variant.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from privsynth import train
from privsynth.atomic import write_json
from privsynth.evaluate.classifier import embed, train_classifier
from privsynth.evaluate.fidelity import frechet
from privsynth.evaluate.utility import tstr
from privsynth.federated import federate
from privsynth.federated.encrypted import make_keys, precision_loss
from privsynth.models.defaults import recommended_config
from privsynth.models.registry import method_class, twin_of
from privsynth.privacy.accounting import default_delta


class Judge:
    """TSTR and Fréchet distance against the real holdout, with one LeNet feature extractor."""

    def __init__(self, run, seed=0):
        train_set, self.holdout = run.load_data()
        k = len(run.class_names)
        self.features = train_classifier(train_set.images, train_set.labels, k, seed=seed)
        self.real = embed(self.features, self.holdout.images)

    def __call__(self, run, n=2000, seeds=1) -> dict:
        """Mean (and sd over ``seeds`` > 1) of TSTR and FD: sample seed and classifier seed vary."""
        h, k = self.holdout, len(run.class_names)
        accs, fds = [], []
        for seed in range(seeds):
            images, labels = run.sample(n, seed=seed)
            accs.append(
                tstr(images, labels, h.images, h.labels, k, epochs=10, seed=seed)["accuracy"]
            )
            fds.append(frechet(self.real, embed(self.features, images)))
        out = {"tstr": float(np.mean(accs)), "frechet_lenet": float(np.mean(fds))}
        if seeds > 1:
            out.update(tstr_sd=float(np.std(accs)), frechet_lenet_sd=float(np.std(fds)))
        return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="digits")
    ap.add_argument(
        "--classes",
        type=int,
        default=None,
        help="class count for IDX/NPZ data without a class list (MNIST: 10)",
    )
    ap.add_argument("--method", default="dpgan", choices=["dpgan", "dpvae", "dpdiffusion"])
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument(
        "--rounds", type=int, default=None, help="default: from the method's epochs (see above)"
    )
    ap.add_argument("--local-steps", type=int, default=30)
    ap.add_argument(
        "--epochs",
        type=float,
        default=None,
        help="central expected passes (default: the recommended config's); sets --rounds",
    )
    ap.add_argument(
        "--aggregations",
        default="plain,secagg,ckks",
        help="comma-separated subset of plain, secagg, ckks",
    )
    ap.add_argument("--no-central", action="store_true", help="federated rows only")
    ap.add_argument(
        "--sequential",
        action="store_true",
        help="every owner runs central's step count (clients x the compute; the same wall time "
        "when owners train in parallel); with --no-central only",
    )
    ap.add_argument(
        "--repeats", type=int, default=1, help="federated runs per setting (DP noise differs)"
    )
    ap.add_argument(
        "--momentum",
        type=float,
        default=None,
        help="run config global-momentum (default: the method's federated_momentum)",
    )
    ap.add_argument("--eval-seeds", type=int, default=3, help="TSTR / FD repeats (mean, sd)")
    ap.add_argument("--grids", default=None, help="folder for sample grids (PNG) to look at")
    ap.add_argument("--label", default=None, help="merge into --out under (method, label)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model config override (JSON value), e.g. --set lr=1e-3",
    )
    ap.add_argument("--epsilon", type=float, default=10.0)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument(
        "--splits",
        default="iid,0.3",
        help="owner splits: iid and/or Dirichlet alphas, comma-separated",
    )
    ap.add_argument("--mode", default="inprocess", choices=["inprocess", "processes"])
    ap.add_argument("--width", type=int, default=16, help="model channels (GAN: D and G)")
    ap.add_argument("--accountant", default="rdp", choices=["rdp", "prv"])
    ap.add_argument("--out", default="bench/results/federated.json")
    args = ap.parse_args()
    n_train = 1437 if args.data == "digits" else 8000
    if args.sequential and not args.no_central:
        ap.error("--sequential changes the owners' step count only: pass --no-central")
    if args.rounds is None:  # the recommended model for this data size, at --batch-size
        model = recommended_config(args.method, n_train)
        model.update(batch_size=args.batch_size)
        epochs = args.epochs if args.epochs is not None else float(model["epochs"])
        del model["epochs"]
        central_steps = round(epochs * n_train / args.batch_size)
        owners_share = 1 if args.sequential else args.clients
        args.rounds = max(1, round(central_steps / (owners_share * args.local_steps)))
    elif args.method == "dpgan":
        model = {
            "batch_size": args.batch_size,
            "n_d": 5,
            "width": args.width,
            "g_width": args.width,
        }
    else:
        model = {"batch_size": args.batch_size, "width": args.width}
    for kv in args.set:
        key, value = kv.split("=", 1)
        model[key] = json.loads(value)
    aggregations = [a.strip() for a in args.aggregations.split(",")]
    momentum_config = {} if args.momentum is None else {"global-momentum": args.momentum}
    # --epsilon 0: the same model and compute without DP (the method's non-private twin), to
    # separate what federated averaging costs from what the owners' separate noise costs
    trained = args.method if args.epsilon > 0 else twin_of(args.method)
    epsilon = args.epsilon if args.epsilon > 0 else None
    load_1m = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="fedbench-"))
    rows = []

    central_steps = args.clients * args.rounds * args.local_steps
    epochs = central_steps * args.batch_size / n_train
    from privsynth.data import DataSource

    data = DataSource(args.data, classes=args.classes)
    holdout = 0.2 if args.data == "digits" else 2000
    judge = None
    central_wall = None
    if not args.no_central:
        t = time.time()
        central = train(
            data,
            trained,
            work / "central",
            epsilon=epsilon,
            accountant=args.accountant,
            config=dict(model, epochs=epochs),
            progress=False,
            ledger=work / "ledger.sqlite",
            holdout=holdout,
        )
        central_wall = time.time() - t
        judge = Judge(central)
        rows.append(
            {
                "setting": "central DP",
                "partition": "-",
                "epsilon": central.epsilon,
                "guarantee": str(central.card["privacy"].get("guarantee", ""))[:160],
                **judge(central, seeds=args.eval_seeds),
                "wall_s": round(central_wall, 1),
                "wall_vs_central": 1.0,
                "bytes_up_per_round": 0,
                "d_steps": central_steps,
            }
        )
        print(rows[-1], flush=True)
        if args.grids:
            save_grid(central, Path(args.grids) / f"{args.method}-{args.label}-central.png")

    splits = [None if x.strip() == "iid" else float(x) for x in args.splits.split(",")]
    finals = {}
    for part in splits:
        finals = {}
        for agg, repeat in [(a, r) for a in aggregations for r in range(args.repeats)]:
            t = time.time()
            run = federate(
                data=data,
                method=trained,
                out=work / f"{agg}-{part}-{repeat}",
                clients=args.clients,
                rounds=args.rounds,
                local_steps=args.local_steps,
                aggregation=agg,
                epsilon=epsilon,
                accountant=args.accountant,
                dirichlet=part,
                delta=run_delta(central if not args.no_central else None, n_train),
                config=model,
                mode=args.mode,
                ledger=work / "ledger.sqlite",
                holdout=holdout,
                extra_run_config=momentum_config,
            )
            wall = time.time() - t
            judge = judge or Judge(run)
            finals.setdefault(agg, {k: v.numpy() for k, v in run.synthesizer.state_dict().items()})
            pv = run.card["privacy"]
            row = {
                "setting": {
                    "plain": "federated",
                    "secagg": "federated+SecAgg+",
                    "ckks": "federated+CKKS",
                }[agg],
                "partition": "IID" if part is None else f"Dirichlet {part}",
                "epsilon": pv.get("epsilon"),
                "guarantee": pv.get("guarantee"),
                "server_sees": pv.get("server_sees"),
                **judge(run, seeds=args.eval_seeds),
                "wall_s": round(wall, 1),
                "wall_vs_central": round(wall / central_wall, 2) if central_wall else None,
                "bytes_up_per_round": run.card["federated"]["bytes_up_per_round"],
                "bytes_down_per_round": run.card["federated"]["bytes_down_per_round"],
                "d_steps_per_owner": args.rounds * args.local_steps,
                "repeat": repeat,
            }
            if agg == "ckks" and "plain" in finals and repeat == 0:
                row["ckks_max_abs_dev_from_plain_model"] = float(
                    max(
                        np.abs(finals["ckks"][k] - finals["plain"][k]).max()
                        for k in finals["plain"]
                    )
                )
            rows.append(row)
            print(row, flush=True)
            if args.grids:
                name = f"{args.method}-{args.label}-{agg}-{row['partition'].replace(' ', '')}.png"
                save_grid(run, Path(args.grids) / name)
    plain_rows = [r for r in rows if r["setting"] == "federated"]
    for r in rows:
        if r["setting"] == "central DP":
            continue
        ref = next(
            (p for p in plain_rows if same_setting(p, r)),
            None,
        )
        if ref is None:
            continue
        r["wall_vs_plain_federated"] = round(r["wall_s"] / ref["wall_s"], 2)
        r["bytes_vs_plain_federated"] = round(
            r["bytes_up_per_round"] / ref["bytes_up_per_round"], 2
        )

    ckks_loss = None
    if "ckks" in aggregations and "plain" in finals:
        # CKKS precision on model-sized vectors: 5 owners' updates around the final weights
        keys = make_keys(work / "keys")
        flat = np.concatenate([v.ravel() for v in finals["plain"].values()]).astype(np.float64)
        rng = np.random.default_rng(0)
        updates = [flat + rng.normal(0, 0.01, flat.size) for _ in range(args.clients)]
        ckks_loss = precision_loss(updates, [287] * args.clients, *keys)

    result = {
        "machine": f"{os.cpu_count()}-core CPU ({platform.machine()}), no GPU; "
        f"load average {load_1m:.2f} at start, {os.getloadavg()[0]:.2f} at end",
        "mode": args.mode,
        "data": args.data,
        "clients": args.clients,
        "rounds": args.rounds,
        "local_steps": args.local_steps,
        "epsilon": args.epsilon,
        "method": args.method,
        "model_config": model,
        "global_momentum": args.momentum
        if args.momentum is not None
        else method_class(args.method).federated_momentum,
        "command": f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} python "
        + " ".join(sys.argv),
        "accountant": args.accountant,
        "rows": rows,
        "notes": "wall_vs_central: wall time of the whole federated run / central DP training "
        "(same total DP-SGD steps). bytes: payload bytes of Flower records each owner sent, "
        "summed over owners, per round (SecAgg+ includes its key-exchange stages).",
    }
    if ckks_loss is not None:
        result["ckks_precision_on_model_sized_updates"] = ckks_loss
    if args.label is None:
        write_json(args.out, result)
    else:
        merge_part(Path(args.out), dict(result, label=args.label))
    shutil.rmtree(work, ignore_errors=True)


def same_setting(a: dict, b: dict) -> bool:
    return (a["partition"], a["repeat"]) == (b["partition"], b["repeat"])


def run_delta(central, n_train: int) -> float:
    """Equal (epsilon, delta) to central DP, not the owner's default 1/(10 n_owner)."""
    return central.delta if central is not None else default_delta(n_train)


def merge_part(path: Path, part: dict) -> None:
    """Replace the part with the same (method, label) in ``path``'s "parts", or add it."""
    doc = json.loads(path.read_text()) if path.exists() else {"parts": []}
    key = (part["method"], part["label"])
    doc["parts"] = [p for p in doc["parts"] if (p["method"], p["label"]) != key] + [part]
    write_json(path, doc)


def save_grid(run, path: Path, per_class: int = 8) -> None:
    """``per_class`` samples of every class, one class per row (to look at)."""
    from PIL import Image

    k = len(run.class_names)
    images, _ = run.sample(per_class * k, labels=np.repeat(np.arange(k), per_class), seed=0)
    n, c, h, w = images.shape
    grid = images.reshape(k, per_class, c, h, w).transpose(0, 3, 1, 4, 2).reshape(k * h, -1, c)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid.squeeze(-1) if c == 1 else grid).resize(
        (grid.shape[1] * 4, grid.shape[0] * 4), Image.NEAREST
    ).save(path)


if __name__ == "__main__":
    main()
