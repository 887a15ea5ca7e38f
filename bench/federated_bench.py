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
"""

from __future__ import annotations

import argparse
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


class Judge:
    """TSTR and Fréchet distance against the real holdout, with one LeNet feature extractor."""

    def __init__(self, run, seed=0):
        train_set, self.holdout = run.load_data()
        k = len(run.class_names)
        self.features = train_classifier(train_set.images, train_set.labels, k, seed=seed)
        self.real = embed(self.features, self.holdout.images)

    def __call__(self, run, n=2000, seed=0) -> dict:
        images, labels = run.sample(n, seed=seed)
        h = self.holdout
        acc = tstr(images, labels, h.images, h.labels, len(run.class_names), epochs=10, seed=seed)[
            "accuracy"
        ]
        return {
            "tstr": float(acc),
            "frechet_lenet": float(frechet(self.real, embed(self.features, images))),
        }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="digits")
    ap.add_argument(
        "--classes",
        type=int,
        default=None,
        help="class count for IDX/NPZ data without a class list (MNIST: 10)",
    )
    ap.add_argument("--method", default="dpgan", choices=["dpgan", "dpvae"])
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--local-steps", type=int, default=30)
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
    if args.method == "dpgan":
        model = {
            "batch_size": args.batch_size,
            "n_d": 5,
            "width": args.width,
            "g_width": args.width,
        }
    else:
        model = {"batch_size": args.batch_size, "width": args.width}
    load_1m = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="fedbench-"))
    rows = []

    t = time.time()
    central_steps = args.clients * args.rounds * args.local_steps
    n_train = 1437 if args.data == "digits" else 8000
    epochs = central_steps * args.batch_size / n_train
    from privsynth.data import DataSource

    data = DataSource(args.data, classes=args.classes)
    central = train(
        data,
        args.method,
        work / "central",
        epsilon=args.epsilon,
        accountant=args.accountant,
        config=dict(model, epochs=epochs),
        progress=False,
        ledger=work / "ledger.sqlite",
        holdout=0.2 if args.data == "digits" else 2000,
    )
    central_wall = time.time() - t
    judge = Judge(central)
    rows.append(
        {
            "setting": "central DP",
            "partition": "-",
            "epsilon": central.epsilon,
            "guarantee": central.card["privacy"]["guarantee"][:160],
            **judge(central),
            "wall_s": round(central_wall, 1),
            "wall_vs_central": 1.0,
            "bytes_up_per_round": 0,
            "d_steps": central_steps,
        }
    )
    print(rows[-1], flush=True)

    splits = [None if x.strip() == "iid" else float(x) for x in args.splits.split(",")]
    for part in splits:
        finals = {}
        for agg in ("plain", "secagg", "ckks"):
            t = time.time()
            run = federate(
                data,
                args.method,
                work / f"{agg}-{part}",
                args.clients,
                args.rounds,
                local_steps=args.local_steps,
                aggregation=agg,
                epsilon=args.epsilon,
                accountant=args.accountant,
                dirichlet=part,
                delta=central.delta,  # equal (epsilon, delta) to central DP, not 1/(10 n_owner)
                config=model,
                mode=args.mode,
                ledger=work / "ledger.sqlite",
                holdout=0.2 if args.data == "digits" else 2000,
            )
            wall = time.time() - t
            finals[agg] = {k: v.numpy() for k, v in run.synthesizer.state_dict().items()}
            pv = run.card["privacy"]
            row = {
                "setting": {
                    "plain": "federated",
                    "secagg": "federated+SecAgg+",
                    "ckks": "federated+CKKS",
                }[agg],
                "partition": "IID" if part is None else f"Dirichlet {part}",
                "epsilon": pv["epsilon"],
                "guarantee": pv["guarantee"],
                "server_sees": pv["server_sees"],
                **judge(run),
                "wall_s": round(wall, 1),
                "wall_vs_central": round(wall / central_wall, 2),
                "bytes_up_per_round": run.card["federated"]["bytes_up_per_round"],
                "bytes_down_per_round": run.card["federated"]["bytes_down_per_round"],
                "d_steps_per_owner": args.rounds * args.local_steps,
            }
            if agg == "ckks":
                row["ckks_max_abs_dev_from_plain_model"] = float(
                    max(
                        np.abs(finals["ckks"][k] - finals["plain"][k]).max()
                        for k in finals["plain"]
                    )
                )
            rows.append(row)
            print(row, flush=True)
    plain_rows = [r for r in rows if r["setting"] == "federated"]
    for r in rows[1:]:
        ref = next(p for p in plain_rows if p["partition"] == r["partition"])
        r["wall_vs_plain_federated"] = round(r["wall_s"] / ref["wall_s"], 2)
        r["bytes_vs_plain_federated"] = round(
            r["bytes_up_per_round"] / ref["bytes_up_per_round"], 2
        )

    # CKKS precision on model-sized vectors: 5 owners' updates around the final weights
    keys = make_keys(work / "keys")
    flat = np.concatenate([v.ravel() for v in finals["plain"].values()]).astype(np.float64)
    rng = np.random.default_rng(0)
    updates = [flat + rng.normal(0, 0.01, flat.size) for _ in range(args.clients)]
    ckks_loss = precision_loss(updates, [287] * args.clients, *keys)

    write_json(
        args.out,
        {
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
            "command": f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} python "
            + " ".join(sys.argv),
            "accountant": args.accountant,
            "rows": rows,
            "ckks_precision_on_model_sized_updates": ckks_loss,
            "notes": "wall_vs_central: wall time of the whole federated run / central DP training "
            "(same total DP-SGD steps). bytes: payload bytes of Flower records each owner sent, "
            "summed over owners, per round (SecAgg+ includes its key-exchange stages).",
        },
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
