"""The ServerApp: FedAvg over the owners' updates, optionally under SecAgg+ (secure.py) or CKKS
(encrypted.py), with optional client-level DP (Flower's fixed-clipping wrappers); writes a normal
run folder.

The server never sees an image. What it sees of the updates depends on ``aggregation``:
``plain`` every owner's update; ``secagg`` only their sum; ``ckks`` only ciphertexts. Under
client-level DP the released model is always the global model *after* the noise; how the noise
gets there in each mode is ``card.CLIENT_NOISE_PATH`` (the card states it).
"""

from __future__ import annotations

import time
from typing import Any, Iterable

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import (
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideFixedClipping,
    FedAvg,
)
from flwr.supercore.differential_privacy import add_gaussian_noise_inplace, compute_stdv

from ..errors import ConfigError
from . import encrypted, task
from .card import write_run
from .runconfig import client_dp, declared_owners, require_dp_accounting, resolve

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    run_federation(grid, context)


def run_federation(grid: Grid, context: Context) -> dict:
    """Train ``num-server-rounds`` rounds; write the run folder ``out-dir``; return its card."""
    cfg = resolve(context.run_config)
    from .oneshot import is_oneshot, run_release  # fedmerf: one-shot release (dpmerf/dpkernel)

    if is_oneshot(str(cfg["method"])):
        wait_for_nodes(grid, int(cfg["min-nodes"]), float(cfg["wait-timeout"]))
        return run_release(grid, context)
    t0 = time.time()
    synth = task.build_model(cfg)
    init = task.get_arrays(synth)
    keys = list(init)
    wait_for_nodes(grid, int(cfg["min-nodes"]), float(cfg["wait-timeout"]))
    mode = str(cfg["aggregation"])
    if client_dp(cfg):  # the declared m (a public constant), not the connected count
        cfg["sampled-per-round"] = declared_owners(cfg)
    if mode == "secagg":
        from .secure import run_secagg

        strategy = run_secagg(grid, context, list(init.values()), cfg)
        cfg["secagg-quantisation-margin"] = strategy.quantisation_margin  # (the card's)
        final = dict(zip(keys, strategy.current, strict=False))
        rounds_info = strategy.round_metrics
        enc_final = None
    elif mode in ("plain", "ckks"):
        strategy = make_strategy(cfg, mode, keys)
        result = strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord({k: Array(v) for k, v in init.items()}),
            num_rounds=int(cfg["num-server-rounds"]),
            timeout=float(cfg["round-timeout"]),
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
    accountant = getattr(strategy, "accountant", None)
    return write_run(cfg, synth, reports, rounds_info, time.time() - t0, accountant)


def wait_for_nodes(grid: Grid, n: int, timeout: float) -> None:
    t_end = time.time() + timeout
    while len(list(grid.get_node_ids())) < n:
        if time.time() > t_end:
            raise ConfigError(
                f"only {len(list(grid.get_node_ids()))} of {n} SuperNodes connected "
                f"within {timeout:.0f}s; start more SuperNodes or lower min-nodes"
            )
        time.sleep(0.5)


def _aggregate_metrics(contents: list[RecordDict], weight_key: str) -> MetricRecord:
    """Per round: the number of owners and the worst (largest) owner epsilon so far. (Owners
    send no losses: a loss on private batches is not DP, so it never leaves the owner.)"""
    ms = [next(iter(c.metric_records.values())) for c in contents]
    return MetricRecord({"owners": len(ms), "max-epsilon": max(float(m["epsilon"]) for m in ms)})


def make_strategy(cfg: dict, mode: str, keys: list[str]) -> Any:
    """The Message-API strategy for ``plain`` or ``ckks`` (``cfg``: a resolved run config)."""
    n_min = int(cfg["min-nodes"])
    dp = client_dp(cfg)
    kwargs = dict(
        fraction_train=float(cfg["fraction-train"]),
        fraction_evaluate=0.0,
        min_train_nodes=n_min,
        min_available_nodes=n_min,
        train_metrics_aggr_fn=_aggregate_metrics,
    )
    if mode == "ckks":
        public = encrypted.load_context(str(cfg["ckks-public"]), need_secret=False)
        if not dp:
            return EncryptedFedAvg(public, keys, **kwargs)
        m = int(cfg["sampled-per-round"])
        return EncryptedClientSideFixedClipping(
            EncryptedFedAvg(public, keys, planned_owners=m, **kwargs),
            float(cfg["client-noise"]),
            float(cfg["client-clip"]),
            m,
        )
    strategy: Any = FedAvg(**kwargs)
    if dp:
        from flwr.serverapp import NeighboringRelation, PrivacyConfig, RdpAccountant, SamplingMethod

        require_dp_accounting()  # (`flwr run .` does not pass through the launcher's check)
        m = int(cfg["sampled-per-round"])
        accountant = RdpAccountant(
            PrivacyConfig(
                target_delta=float(cfg["client-delta"]),
                population_size=max(m, n_min),
                neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
                sampling_method=SamplingMethod.NO_AMPLIFICATION,
            )
        )
        strategy = DifferentialPrivacyServerSideFixedClipping(
            strategy,
            float(cfg["client-noise"]),
            float(cfg["client-clip"]),
            m,
            accountant=accountant,
        )
    return strategy


class EncryptedFedAvg(FedAvg):
    """FedAvg whose aggregate is a CKKS ciphertext ``[S, n]``: the server adds, never decrypts;
    owners decrypt and divide (round 1 sends the plaintext initial model). With
    ``planned_owners`` m (client-level DP) the owners' ``[clipped delta_i, 0]`` are added to the
    global model kept as ``[m * w, m]``: ``w + sum_i delta_i / m``, whoever dropped out."""

    def __init__(
        self, public_ctx, keys: list[str], planned_owners: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.public_ctx = public_ctx
        self.keys = keys
        self.planned_owners = planned_owners
        self.n_values = 0  # length of the encrypted vector (weights + the count)
        self.base: list[bytes] = []

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        if self.planned_owners:
            self.base = self._global_sum(arrays)
        messages = list(super().configure_train(server_round, arrays, config, grid))
        if "blob" in arrays:  # an encrypted aggregate: send it under "enc" instead
            for msg in messages:  # the strategy shares one RecordDict between messages
                if "arrays" in msg.content:
                    del msg.content["arrays"]
                msg.content["enc"] = arrays
        return messages

    def _global_sum(self, arrays: ArrayRecord) -> list[bytes]:
        """The global model as the ciphertext ``[m * w, m]`` (m = ``planned_owners``)."""
        if "blob" in arrays:  # already so: the last round's aggregate
            return encrypted.from_record(arrays)
        # round 1: the plaintext initial model, encrypted with the public key
        vec = encrypted.flatten({k: arrays[k].numpy() for k in self.keys}, self.keys)
        self.n_values = len(vec) + 1
        m = float(self.planned_owners or 1)
        return encrypted.encrypt(self.public_ctx, np.append(vec * m, m))

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):
        valid = [m for m in replies if not m.has_error()]
        if not valid:
            return None, None
        chunks = [encrypted.from_record(m.content["enc"]) for m in valid]
        if self.planned_owners:
            chunks.append(self.base)
        metrics = self.train_metrics_aggr_fn([m.content for m in valid], self.weighted_by_key)
        return encrypted.to_record(encrypted.add(self.public_ctx, chunks)), metrics


class EncryptedClientSideFixedClipping(DifferentialPrivacyClientSideFixedClipping):
    """Flower's client-side fixed-clipping wrapper (it sends the clip norm C to the owners, who
    clip before encrypting), with its Gaussian noise added to the encrypted aggregate.

    The ciphertext holds ``[m * w, m]``: noise of Flower's std sigma*C/m on the model ``w`` is
    noise of std sigma*C on the first part (and none on the count)."""

    strategy: EncryptedFedAvg

    def _add_noise_to_aggregated_arrays(self, aggregated_arrays: ArrayRecord) -> ArrayRecord:
        m = self.num_sampled_clients
        noise = [np.zeros(self.strategy.n_values)]
        add_gaussian_noise_inplace(
            noise, compute_stdv(self.noise_multiplier, self.clipping_norm, m) * m
        )
        noise[0][-1] = 0.0
        chunks = encrypted.from_record(aggregated_arrays)
        return encrypted.to_record(encrypted.add_plain(self.strategy.public_ctx, chunks, noise[0]))


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
        m, info = reply.content["metrics"], reply.content["info"]
        reports.append(
            {
                "partition": int(info["partition-id"]),
                **{k.replace("-", "_"): kind(m[k]) for k, kind in task.REPORTED.items()},
                "history": str(info["history"]),
            }
        )
        if "arrays" in reply.content.array_records:
            rec = reply.content["arrays"]
            decrypted = {k: rec[k].numpy() for k in rec.keys()}
    return sorted(reports, key=lambda r: r["partition"]), decrypted
