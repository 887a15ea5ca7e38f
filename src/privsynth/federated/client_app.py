"""The ClientApp: one data owner. Its images never leave this process; only model updates do
(losses on private batches are not DP and never leave it either).

Handlers (Flower's Message API): ``train`` (local DP-SGD, then the new weights, the weight delta
inside SecAgg+'s ``secaggplus_mod``, or the CKKS ciphertext), ``query.report`` (this owner's
accounting and traffic; with CKKS it also decrypts the final model for the server to release)
and ``query.decrypt`` (a one-shot release's CKKS sum, oneshot_ckks.py).
"""

from __future__ import annotations

import json

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.client.mod import fixedclipping_mod, secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
from flwr.compat.common import recorddict_compat as compat
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM, clip_inputs_inplace

from . import encrypted, task
from .oneshot import is_oneshot
from .owner import OwnerSpend
from .runconfig import aggregation_weight, client_dp, privacy_spec, resolve
from .secure import fit_reply

STATE = "privsynth"


def _value_bytes(v) -> int:
    if isinstance(v, (bytes, str)):
        return len(v)
    if isinstance(v, list):
        return sum(_value_bytes(x) for x in v)
    return 8


def record_bytes(content: RecordDict) -> int:
    """Payload size of a message: array bytes plus config/metric values (keys included)."""
    total = 0
    for _name, rec in content.items():
        if isinstance(rec, ArrayRecord):
            total += rec.count_bytes()
        else:
            total += sum(len(k) + _value_bytes(v) for k, v in rec.items())
    return int(total)


def traffic_mod(msg: Message, ctx: Context, call_next) -> Message:
    """Count payload bytes in and out of this owner (record sizes, not wire framing)."""
    out = call_next(msg, ctx)
    st = _state(ctx)
    st["bytes-down"] = int(st.get("bytes-down", 0)) + record_bytes(msg.content)
    if not out.has_error():
        st["bytes-up"] = int(st.get("bytes-up", 0)) + record_bytes(out.content)
    return out


def secure_mod(msg: Message, ctx: Context, call_next) -> Message:
    """Flower's SecAgg+ client mod, applied only to messages of the SecAgg+ protocol. Inside it,
    updates become deltas (small numbers, inside SecAgg+'s quantization range) after Flower's
    fixed-clipping mod has clipped them, when the server asked for client-level DP."""
    if RECORD_KEY_CONFIGS not in msg.content.config_records:
        return call_next(msg, ctx)

    def clipped(m: Message, c: Context) -> Message:
        fitins = m.content.config_records.get("fitins.config")
        if fitins is not None and KEY_CLIPPING_NORM in fitins:
            return fixedclipping_mod(m, c, call_next)
        return call_next(m, c)

    def as_delta(m: Message, c: Context) -> Message:
        out = clipped(m, c)
        if out.has_error() or "fitins.parameters" not in m.content.array_records:
            return out
        sent = parameters_to_ndarrays(compat.recorddict_to_fitins(m.content, True).parameters)
        res = compat.recorddict_to_fitres(out.content, keep_input=True)
        new = parameters_to_ndarrays(res.parameters)
        res.parameters = ndarrays_to_parameters([a - b for a, b in zip(new, sent, strict=True)])
        out.content = compat.fitres_to_recorddict(res, keep_input=True)
        return out

    return secaggplus_mod(msg, ctx, as_delta)


app = ClientApp(mods=[traffic_mod])


def _state(ctx: Context) -> ConfigRecord:
    if STATE not in ctx.state.config_records:
        ctx.state.config_records[STATE] = ConfigRecord({})
    return ctx.state.config_records[STATE]


@app.train(mods=[secure_mod])
def train(msg: Message, context: Context) -> Message:
    cfg, node = resolve(context.run_config), dict(context.node_config)
    if is_oneshot(str(cfg["method"])):
        from .oneshot import owner_release  # fedmerf: one-shot release (dpmerf/dpkernel)

        return owner_release(msg, context)
    synth = task.build_model(cfg)
    keys = task.array_keys(synth)
    legacy = "fitins.parameters" in msg.content.array_records  # SecAgg+ workflow (legacy records)
    if legacy:
        fitins = compat.recorddict_to_fitins(msg.content, keep_input=True)
        server_round = int(fitins.config.get("server-round", 1))
        global_arrays = dict(zip(keys, parameters_to_ndarrays(fitins.parameters), strict=False))
    else:
        server_round = int(msg.content["config"]["server-round"])
        global_arrays = _global_arrays(msg, cfg, node, synth)
    task.set_arrays(synth, global_arrays)
    res = _train_locally(synth, cfg, context, server_round)
    momentum, st = task.global_momentum(cfg), _state(context)
    if momentum and not client_dp(cfg):  # FedAvgM momentum, applied by the owners (task.py)
        seen = int(st.get("global-round", -1)) == server_round - 1
        before = task.unpack_arrays(st["global-model"]) if seen else None
        res.arrays = task.with_momentum(res.arrays, global_arrays, before, momentum)
        st["global-model"] = task.pack_arrays(global_arrays)
        st["global-round"] = server_round
    return _reply(msg, cfg, node, res, keys, global_arrays, legacy)


def _train_locally(synth, cfg: dict, context: Context, server_round: int) -> task.LocalResult:
    """``local-steps`` DP-SGD steps, booked in this owner's ledger; what ran kept in its state."""
    node, st = dict(context.node_config), _state(context)
    data = task.load_owner_data(node, cfg)
    # the privacy state lives on disk (a restarted SuperNode gets a fresh Context): owner.py
    spec = privacy_spec(cfg) if synth.private else None
    owner = OwnerSpend(node, cfg, data, context.run_id) if spec is not None else None
    steps = int(cfg["local-steps"])
    res = task.local_train(
        synth,
        data,
        cfg,
        owner.history() if owner is not None else None,
        seed=int(cfg["seed"]) + 1000 * int(node.get("partition-id", 0)) + server_round,
        sigma=owner.sigma if owner is not None else None,  # calibrated in an earlier round
        # reserve and book in the ledger before the first private step
        on_plan=(lambda plan: owner.before_round(plan, steps, spec.accountant)) if owner else None,
    )
    if res.accountant is not None and owner is not None:
        owner.after_round(res.accountant, res.delta)  # history on disk, then book what ran
        st["history"] = json.dumps(res.accountant.to_json())
    st.update(
        {
            "epsilon": res.epsilon,
            "delta": res.delta,
            "num-examples": res.num_examples,
            "noise-multiplier": res.noise_multiplier,
            "sample-rate": res.sample_rate,
        }
    )
    return res


def _reply(msg: Message, cfg: dict, node: dict, res, keys, global_arrays, legacy: bool) -> Message:
    """The new weights (FedAvg), full weights for SecAgg+ (``secure_mod`` turns them into deltas
    after any clipping) or the CKKS ciphertext; metrics: the FedAvg weight and epsilon so far."""
    weight = aggregation_weight(cfg, res.num_examples)
    metrics = {"num-examples": weight, "epsilon": res.epsilon}
    if legacy:
        return fit_reply(msg, [res.arrays[k] for k in keys], weight, metrics)
    if str(cfg["aggregation"]) != "ckks":
        arrays = ArrayRecord({k: Array(res.arrays[k]) for k in keys})
        content = RecordDict({"arrays": arrays, "metrics": MetricRecord(metrics)})
        return Message(content, reply_to=msg)
    if client_dp(cfg):  # the clip norm comes from Flower's client-side clipping wrapper
        clip = float(msg.content["config"].get(KEY_CLIPPING_NORM, cfg["client-clip"]))
        payload = _clipped_delta_payload(res.arrays, global_arrays, keys, clip)
    else:
        payload = encrypted.weighted_payload(res.arrays, keys, weight)
    ctx = encrypted.secret_context(cfg, node)
    enc = encrypted.to_record(encrypted.encrypt(ctx, payload))
    return Message(RecordDict({"enc": enc, "metrics": MetricRecord(metrics)}), reply_to=msg)


@app.query("report")
def report(msg: Message, context: Context) -> Message:
    """This owner's privacy spend and traffic; with CKKS, the decrypted final model. The
    federation is over for this owner: its ledger segment settles to what ran."""
    st = _state(context)
    cfg, node = resolve(context.run_config), dict(context.node_config)
    if not is_oneshot(str(cfg["method"])) and privacy_spec(cfg) is not None:
        data = task.load_owner_data(node, cfg)
        owner = OwnerSpend(node, cfg, data, context.run_id)
        owner.settle_history()
        acc = owner.history()
        if acc is not None:  # from its disk: a restarted owner reports its whole history
            delta = float(owner.state["delta"])
            st.update(
                {
                    "history": json.dumps(acc.to_json()),
                    "epsilon": acc.epsilon(delta),
                    "delta": delta,
                    "num-examples": len(data),
                    "noise-multiplier": float(owner.sigma or 0.0),
                    "sample-rate": float(acc.history[-1][1]),
                }
            )
    out = RecordDict(
        {
            "metrics": MetricRecord({k: kind(st.get(k, 0)) for k, kind in task.REPORTED.items()}),
            "info": ConfigRecord(
                {
                    "history": str(st.get("history", "")),
                    "partition-id": int(context.node_config.get("partition-id", -1)),
                }
            ),
        }
    )
    if "enc" in msg.content.array_records:
        arrays = _global_arrays(msg, cfg, node, task.build_model(cfg))
        out["arrays"] = ArrayRecord({k: Array(v) for k, v in arrays.items()})
    return Message(out, reply_to=msg)


@app.query("decrypt")
def decrypt(msg: Message, context: Context) -> Message:
    """A one-shot release under CKKS: decrypt the server's sum of all owners' shares, once."""
    from .oneshot_ckks import owner_decrypt

    return owner_decrypt(msg, context, resolve(context.run_config))


def _global_arrays(msg: Message, cfg: dict, node: dict, synth) -> dict[str, np.ndarray]:
    """The global model the server sent (``synth``: a model of its shapes)."""
    like = task.get_arrays(synth)
    if "enc" in msg.content.array_records:  # CKKS: decrypt the server's sum, divide by the count
        ctx = encrypted.secret_context(cfg, node)
        total = encrypted.decrypt(ctx, encrypted.from_record(msg.content["enc"]))
        return encrypted.unflatten(encrypted.average_from_sum(total), like)
    return {k: msg.content["arrays"][k].numpy() for k in like}


def _clipped_delta_payload(
    new: dict[str, np.ndarray], start: dict[str, np.ndarray], keys: list[str], clip: float
) -> np.ndarray:
    """``[delta, 0]`` with this round's update clipped to L2 norm ``clip`` by Flower's own clipping
    (what ``fixedclipping_mod`` does; under CKKS the owner must clip before encrypting)."""
    delta = [np.asarray(new[k], np.float64) - np.asarray(start[k], np.float64) for k in keys]
    clip_inputs_inplace(delta, clip)
    return np.append(np.concatenate([d.ravel() for d in delta]), 0.0)
