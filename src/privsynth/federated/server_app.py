"""The ServerApp: FedAvg over the owners' GAN updates, optionally under SecAgg+ or CKKS, with
optional client-level DP (Flower's fixed-clipping wrappers); writes a normal run folder.

The server never sees an image. What it sees of the updates depends on ``aggregation``:
``plain`` every owner's update; ``secagg`` only their sum (SecAgg+); ``ckks`` only ciphertexts.
"""

from __future__ import annotations

import time
from typing import Any, Iterable

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg

from ..errors import ConfigError
from . import encrypted, task
from .card import write_run

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    run_federation(grid, context)


def run_federation(grid: Grid, context: Context) -> dict:
    """Train ``num-server-rounds`` rounds; write the run folder ``out-dir``; return its card."""
    cfg = dict(context.run_config)
    t0 = time.time()
    synth = task.build_model(cfg)
    keys = task.array_keys(synth)
    init = task.get_arrays(synth)
    n_min = int(cfg.get("min-nodes", 2))
    wait_for_nodes(grid, n_min, float(cfg.get("wait-timeout", 120)))
    mode = str(cfg.get("aggregation", "plain"))
    rounds = int(cfg.get("num-server-rounds", 1))
    client_dp = float(cfg.get("client-noise", 0)) > 0
    if client_dp:
        cfg["sampled-per-round"] = sampled_per_round(cfg, len(list(grid.get_node_ids())))
    rounds_info: dict[int, dict] = {}
    if mode == "secagg":
        from .secure import run_secagg

        strategy = run_secagg(grid, context, [init[k] for k in keys], cfg)
        final = dict(zip(keys, strategy.current, strict=False))
        rounds_info = strategy.round_metrics
        enc_final = None
    elif mode in ("plain", "ckks"):
        if mode == "ckks" and client_dp:
            raise ConfigError(
                "client-level DP needs the server to clip each update, which CKKS "
                "hides; use --secure-aggregation with client-level DP instead"
            )
        strategy = make_strategy(cfg, mode, keys)
        result = strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord({k: Array(init[k]) for k in keys}),
            num_rounds=rounds,
            timeout=float(cfg.get("round-timeout", 600)),
            train_config=ConfigRecord({}),
        )
        rounds_info = {r: dict(m) for r, m in result.train_metrics_clientapp.items()}
        enc_final = result.arrays if mode == "ckks" else None
        final = None if mode == "ckks" else {k: result.arrays[k].numpy() for k in keys}
    else:
        raise ConfigError(f"unknown aggregation '{mode}'; choose plain, secagg or ckks")
    reports, decrypted = query_reports(grid, enc_final)
    if final is None:
        if decrypted is None:
            raise ConfigError("no owner answered to decrypt the final CKKS aggregate")
        final = decrypted
    task.set_arrays(synth, final)
    task.finalize(synth)
    wall = time.time() - t0
    accountant = getattr(strategy, "accountant", None)
    return write_run(cfg, synth, reports, rounds_info, wall, flower_accountant=accountant)


def wait_for_nodes(grid: Grid, n: int, timeout: float) -> None:
    t_end = time.time() + timeout
    while len(list(grid.get_node_ids())) < n:
        if time.time() > t_end:
            raise ConfigError(
                f"only {len(list(grid.get_node_ids()))} of {n} SuperNodes connected "
                f"within {timeout:.0f}s; start more SuperNodes or lower min-nodes"
            )
        time.sleep(0.5)


def sampled_per_round(cfg: dict, n_nodes: int) -> int:
    n_min = int(cfg.get("min-nodes", 2))
    return max(int(n_nodes * float(cfg.get("fraction-train", 1.0))), n_min)


def _aggregate_metrics(contents: list[RecordDict], weight_key: str) -> MetricRecord:
    """Per round: the worst (largest) owner epsilon so far, mean losses, number of owners."""
    ms = [next(iter(c.metric_records.values())) for c in contents]
    return MetricRecord(
        {
            "owners": len(ms),
            "max-epsilon": max(float(m["epsilon"]) for m in ms),
            "d-loss": float(np.mean([m["d-loss"] for m in ms])),
            "g-loss": float(np.mean([m["g-loss"] for m in ms])),
        }
    )


def make_strategy(cfg: dict, mode: str, keys: list[str]) -> Any:
    n_min = int(cfg.get("min-nodes", 2))
    kwargs = dict(
        fraction_train=float(cfg.get("fraction-train", 1.0)),
        fraction_evaluate=0.0,
        min_train_nodes=n_min,
        min_available_nodes=n_min,
        train_metrics_aggr_fn=_aggregate_metrics,
    )
    if mode == "ckks":
        public = encrypted.load_context(str(cfg["ckks-public"]), need_secret=False)
        return EncryptedFedAvg(public, **kwargs)
    strategy: Any = FedAvg(**kwargs)
    if float(cfg.get("client-noise", 0)) > 0:
        from flwr.serverapp import NeighboringRelation, PrivacyConfig, RdpAccountant, SamplingMethod

        m = int(cfg["sampled-per-round"])
        accountant = RdpAccountant(
            PrivacyConfig(
                target_delta=float(cfg.get("client-delta", 1e-5)),
                population_size=max(m, n_min),
                neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
                sampling_method=SamplingMethod.NO_AMPLIFICATION,
            )
        )
        strategy = DifferentialPrivacyServerSideFixedClipping(
            strategy,
            float(cfg["client-noise"]),
            float(cfg.get("client-clip", 1.0)),
            m,
            accountant=accountant,
        )
    return strategy


class EncryptedFedAvg(FedAvg):
    """FedAvg whose aggregate is a CKKS ciphertext: the server adds, never decrypts.

    Round 1 sends the plaintext initial model; later rounds send the encrypted sum
    ``[sum n_i w_i, sum n_i]``, which each owner decrypts and divides.
    """

    def __init__(self, public_ctx, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.public_ctx = public_ctx

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        messages = list(super().configure_train(server_round, arrays, config, grid))
        if "blob" in arrays:  # an encrypted aggregate: send it under "enc" instead
            for msg in messages:  # the strategy shares one RecordDict between messages
                if "arrays" in msg.content:
                    del msg.content["arrays"]
                msg.content["enc"] = arrays
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):
        valid = [m for m in replies if not m.has_error()]
        if not valid:
            return None, None
        chunks = [
            encrypted.unpack(m.content["enc"]["blob"].numpy(), m.content["enc"]["lengths"].numpy())
            for m in valid
        ]
        blob, lengths = encrypted.pack(encrypted.add(self.public_ctx, chunks))
        metrics = self.train_metrics_aggr_fn([m.content for m in valid], self.weighted_by_key)
        return ArrayRecord({"blob": Array(blob), "lengths": Array(lengths)}), metrics


def query_reports(grid: Grid, enc_final: ArrayRecord | None) -> tuple[list[dict], dict | None]:
    """Ask every owner for its privacy report (and, with CKKS, one owner to decrypt the final
    aggregate: the released model is the only plaintext the server ever gets)."""
    nodes = sorted(grid.get_node_ids())
    msgs = []
    for i, nid in enumerate(nodes):
        content = RecordDict({"config": ConfigRecord({})})
        if enc_final is not None and i == 0:
            content["enc"] = enc_final
        msgs.append(Message(content, message_type="query.report", dst_node_id=nid))
    reports, decrypted = [], None
    for reply in grid.send_and_receive(msgs, timeout=120):
        if reply.has_error():
            continue
        m = reply.content["metrics"]
        info = reply.content["info"]
        reports.append(
            {
                "partition": int(info["partition-id"]),
                "epsilon": float(m["epsilon"]),
                "delta": float(m["delta"]),
                "num_examples": int(m["num-examples"]),
                "noise_multiplier": float(m["noise-multiplier"]),
                "sample_rate": float(m["sample-rate"]),
                "bytes_up": int(m["bytes-up"]),
                "bytes_down": int(m["bytes-down"]),
                "history": str(info["history"]),
            }
        )
        if "arrays" in reply.content.array_records:
            rec = reply.content["arrays"]
            decrypted = {k: rec[k].numpy() for k in rec.keys()}
    return sorted(reports, key=lambda r: r["partition"]), decrypted
