"""A one-shot release (``dpmerf``, ``dpkernel``) under CKKS: the server adds ciphertexts only.

The noise is the SecAgg+ path's (oneshot.py): integer shares of distributed discrete Gaussian
noise, here sized for all ``n`` owners (``t = n``: CKKS has no threshold of its own), encrypted
(federated/encrypted.py) with a trailing 1, the count. The server, holding the public context
only, adds the ``n`` ciphertexts and asks one owner (who holds the secret key) to decrypt the sum.
That owner refuses unless the encrypted count is ``n`` (every share is in it, so the noise is the
full central one) and returns the values rounded to integers: CKKS' error (~1e-6 of a grid unit)
is far below 0.5, so this is the exact integer sum of the noisy shares, the same release as under
SecAgg+. Rounding also keeps CKKS' raw decryption error on the owner: published approximate
decryptions can leak the secret key (Li & Micciancio, Eurocrypt 2021), and the server holds every
owner's ciphertext.

Dropouts: a sum of fewer than ``n`` shares would carry less than the central noise, so the server
asks for no decryption (and an owner would refuse one): nothing is released (each owner's spend
stays booked: it drew its noise); use SecAgg+, which unmasks any sum of >= t shares, when owners
may drop out. What CKKS does not protect against (a deviating
server, an owner colluding with it) the card lists as assumptions (oneshot_card.py).
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid

from ..errors import ConfigError, PrivacyError
from ..privacy.distributed_noise import DistributedPlan, noisy_share
from . import encrypted
from .oneshot_plan import ask_every_owner, shares_info

MAX_ROUNDING_ERROR = 0.25  # grid units; CKKS' own error is ~1e-6 units at these magnitudes


def all_owners(cfg: dict) -> int:
    """n: the owners every share is sized for (the launcher sets min-nodes to all owners)."""
    return int(cfg["min-nodes"])


# --- the owner -------------------------------------------------------------------------------
def encrypted_share(msg: Message, total: np.ndarray, plan: DistributedPlan, ctx) -> Message:
    """``[a_i + noise_i, 1]`` (integer grid units, then the count), CKKS-encrypted."""
    units = np.rint(noisy_share(total, plan) / plan.grid)
    content = RecordDict(
        {
            "enc": encrypted.to_record(encrypted.encrypt(ctx, np.append(units.ravel(), 1.0))),
            "metrics": MetricRecord(
                {"threshold": plan.threshold, "share-scale-units": plan.share_scale_units}
            ),
        }
    )
    return Message(content, reply_to=msg)


def owner_decrypt(msg: Message, context: Context, cfg: dict) -> Message:
    """Decrypt the server's sum once per run, only if it holds every owner's share."""
    from .owner import OwnerSpend

    # the flag lives on the owner's disk: a restarted SuperNode remembers it decrypted
    owner = OwnerSpend(dict(context.node_config), cfg, None, context.run_id)
    if owner.state.get("decrypted"):
        raise ConfigError(
            "this owner already decrypted this run's sum; refusing a second decryption"
        )
    ctx = encrypted.secret_context(cfg, dict(context.node_config))
    total = encrypted.decrypt(ctx, encrypted.from_record(msg.content["enc"]))
    owner.save(decrypted=True)
    units = np.rint(total)
    if int(units[-1]) < all_owners(cfg):
        raise PrivacyError(
            f"the encrypted sum holds {int(units[-1])} shares, not all {all_owners(cfg)} "
            "owners'; its noise would be below the central release's; refusing to decrypt"
        )
    if np.abs(total - units).max() > MAX_ROUNDING_ERROR:
        raise PrivacyError(
            "the decrypted sum is not a sum of grid points (CKKS error or a forged "
            "ciphertext); refusing to release it"
        )
    content = RecordDict({"arrays": ArrayRecord({"units": Array(units[:-1])})})
    return Message(content, reply_to=msg)


# --- the server ------------------------------------------------------------------------------
def ckks_sum(
    grid: Grid, cfg: dict, plan: DistributedPlan, shape: tuple[int, int]
) -> tuple[np.ndarray, dict]:
    """Collect every owner's ciphertext, add them (public context), have one owner decrypt."""
    public = encrypted.load_context(str(cfg["ckks-public"]), need_secret=False)
    replies, asked = ask_every_owner(grid, cfg, "ckks")
    if len(replies) < plan.threshold:
        raise ConfigError(
            f"only {len(replies)} of {plan.threshold} owners sent their encrypted share; "
            "under CKKS every owner's share must be in the sum (each carries 1/n of the "
            "noise), so nothing was released (each owner's spend stays booked); rerun with "
            "every owner online, or use --secure-aggregation (SecAgg+), which tolerates dropouts"
        )
    told = {int(r.content["metrics"]["threshold"]) for r in replies}
    if told != {plan.threshold}:
        raise ConfigError(
            f"owners noised for {sorted(told)} shares, the server expects {plan.threshold}; "
            "nothing is released"
        )
    enc_sum = encrypted.add(public, [encrypted.from_record(r.content["enc"]) for r in replies])
    units = _decrypt_by_an_owner(
        grid, sorted(r.metadata.src_node_id for r in replies), encrypted.to_record(enc_sum)
    )
    info = shares_info("ckks", plan, len(replies), asked - len(replies))
    return units.reshape(shape) * plan.grid, info


def _decrypt_by_an_owner(grid: Grid, nodes: list[int], enc: ArrayRecord) -> np.ndarray:
    """Ask the owners in turn until one decrypts the sum (each decrypts at most once)."""
    for nid in nodes:
        msg = Message(RecordDict({"enc": enc}), message_type="query.decrypt", dst_node_id=nid)
        for reply in grid.send_and_receive([msg], timeout=120):
            if not reply.has_error():
                return reply.content["arrays"]["units"].numpy()
    raise ConfigError("no owner decrypted the CKKS sum; nothing was released")
