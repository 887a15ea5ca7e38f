"""Central DP vs federated (plain / SecAgg+ / CKKS) at equal epsilon, IID and Dirichlet 0.3.

Writes bench/results/federated.json. For each setting: the privacy guarantee (words + epsilon),
TSTR accuracy (privsynth.evaluate.utility.tstr: the fixed CNN trained on 2000 synthetic images,
tested on the real holdout), wall time relative to central training, bytes sent per round, and
for CKKS the max abs deviation of its model from the plaintext-FedAvg model with the same seeds.

Compute is matched: every owner runs rounds x local_steps D-steps on ~1/5 of the data; central
DP runs 5x that many steps on all of it, at the same expected batch size.

    nice -n 10 python bench/federated_bench.py                       # in-process apps (default)
    nice -n 10 python bench/federated_bench.py --mode processes      # real SuperLink + SuperNodes
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from privsynth import train
from privsynth.atomic import write_json
from privsynth.evaluate.utility import tstr
from privsynth.federated import federate
from privsynth.federated.encrypted import make_keys, precision_loss


def evaluate(run, n=2000, seed=0) -> float:
    _, holdout = run.load_data()
    images, labels = run.sample(n, seed=seed)
    return float(
        tstr(images, labels, holdout.images, holdout.labels, len(run.class_names), seed=seed)
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="digits")
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--local-steps", type=int, default=30)
    ap.add_argument("--epsilon", type=float, default=10.0)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--mode", default="inprocess", choices=["inprocess", "processes"])
    ap.add_argument("--width", type=int, default=16, help="GAN channels (D and G)")
    ap.add_argument("--accountant", default="rdp", choices=["rdp", "prv"])
    ap.add_argument("--out", default="bench/results/federated.json")
    args = ap.parse_args()
    gan = {"batch_size": args.batch_size, "n_d": 5, "width": args.width, "g_width": args.width}
    work = Path(tempfile.mkdtemp(prefix="fedbench-"))
    rows = []

    t = time.time()
    central_steps = args.clients * args.rounds * args.local_steps
    n_train = 1437 if args.data == "digits" else 8000
    epochs = central_steps * args.batch_size / n_train
    central = train(
        args.data,
        "dpgan",
        work / "central",
        epsilon=args.epsilon,
        accountant=args.accountant,
        config=dict(gan, epochs=epochs),
        progress=False,
        ledger=work / "ledger.json",
        holdout=0.2 if args.data == "digits" else 2000,
    )
    central_wall = time.time() - t
    rows.append(
        {
            "setting": "central DP",
            "partition": "-",
            "epsilon": central.epsilon,
            "guarantee": central.card["privacy"]["guarantee"][:160],
            "tstr": evaluate(central),
            "wall_s": round(central_wall, 1),
            "wall_vs_central": 1.0,
            "bytes_up_per_round": 0,
            "d_steps": central_steps,
        }
    )
    print(rows[-1], flush=True)

    for part in (None, 0.3):
        finals = {}
        for agg in ("plain", "secagg", "ckks"):
            t = time.time()
            run = federate(
                args.data,
                "dpgan",
                work / f"{agg}-{part}",
                args.clients,
                args.rounds,
                local_steps=args.local_steps,
                aggregation=agg,
                epsilon=args.epsilon,
                accountant=args.accountant,
                dirichlet=part,
                config=gan,
                mode=args.mode,
                ledger=work / "ledger.json",
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
                "tstr": evaluate(run),
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
            "machine": "2-core CPU, shared with 4 other engineers' jobs "
            f"({platform.processor() or 'x86_64'})",
            "mode": args.mode,
            "data": args.data,
            "clients": args.clients,
            "rounds": args.rounds,
            "local_steps": args.local_steps,
            "epsilon": args.epsilon,
            "gan_config": gan,
            "command": f"OMP_NUM_THREADS=1 nice -n 10 python bench/federated_bench.py --mode "
            f"{args.mode} --rounds {args.rounds} --local-steps {args.local_steps} --width "
            f"{args.width} --accountant {args.accountant}",
            "accountant": args.accountant,
            "rows": rows,
            "ckks_precision_on_model_sized_updates": ckks_loss,
            "notes": "wall_vs_central: wall time of the whole federated run / central DP training "
            "(same total D-steps). bytes: payload bytes of Flower records each owner sent, "
            "summed over owners, per round (SecAgg+ includes its key-exchange stages).",
        },
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
