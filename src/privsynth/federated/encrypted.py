"""Encrypted aggregation with CKKS (TenSEAL): the server adds ciphertexts it cannot read.

Key handling: one owner (or the launcher, standing in for the owners) makes a CKKS context with
:func:`make_keys`. The *secret* context (with the secret key) goes to every owner only; the
*public* context (no secret key) goes to the server. Each round every owner encrypts
``[n_i * w_i, n_i]`` (its weights scaled by its example count, and the count); the server
multiplies nothing and decrypts nothing — it only adds the ciphertexts; owners decrypt the sum
and divide, which is exactly FedAvg. (With client-level DP the owners encrypt ``[clipped delta,
0]`` and the server adds them, and its plaintext noise via :func:`add_plain`, to the global model
it keeps encrypted as ``[m * w, m]``; see ``server_app.EncryptedFedAvg``.) CKKS is approximate:
:func:`precision_loss` measures the error against plaintext FedAvg (it is ~1e-6 here, far below
DP noise). A one-shot release (dpmerf/dpkernel, oneshot_ckks.py) encrypts integer noisy shares
instead, and its owner returns the decrypted sum rounded to integers (exact).

What it protects: individual updates from the server (and from anyone reading its traffic).
What it does not: the owners all hold the secret key, so they must not collude with the server;
the decrypted aggregate is as visible as in plain FedAvg; a malicious server can drop or replay
ciphertexts (CKKS gives confidentiality, not integrity).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import write_bytes
from ..errors import ConfigError

POLY_MODULUS = 8192
COEFF_BITS = [60, 40, 60]  # additions only: no multiplicative depth needed
SCALE_BITS = 40
CHUNK = 65536  # values per serialized ciphertext vector (keeps messages bounded)


def _ts():
    from .extra import require

    require("tenseal", "CKKS encrypted aggregation")
    import tenseal as ts

    return ts


def make_keys(folder: str | Path) -> tuple[Path, Path]:
    """Write ``ckks-secret.bin`` (owners only) and ``ckks-public.bin`` (server) into ``folder``."""
    ts = _ts()
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, POLY_MODULUS, coeff_mod_bit_sizes=COEFF_BITS)
    ctx.global_scale = 2**SCALE_BITS
    folder = Path(folder)
    secret, public = folder / "ckks-secret.bin", folder / "ckks-public.bin"
    write_bytes(secret, ctx.serialize(save_secret_key=True))
    ctx.make_context_public()
    write_bytes(public, ctx.serialize(save_secret_key=False))
    secret.chmod(0o600)
    return secret, public


def load_context(path: str | Path, need_secret: bool):
    path = Path(path)
    if not path.exists():
        raise ConfigError(
            f"CKKS context '{path}' not found; create keys with "
            "privsynth.federated.encrypted.make_keys(folder) and pass its path"
        )
    ctx = _ts().context_from(path.read_bytes())
    if need_secret and not ctx.is_private():
        raise ConfigError(f"'{path}' has no secret key; owners need ckks-secret.bin")
    if not need_secret and ctx.is_private():
        raise ConfigError(f"'{path}' holds the secret key; give the server ckks-public.bin only")
    return ctx


def flatten(arrays: dict[str, np.ndarray], keys: list[str]) -> np.ndarray:
    return np.concatenate([np.asarray(arrays[k], dtype=np.float64).ravel() for k in keys])


def unflatten(
    vec: np.ndarray, like: dict[str, np.ndarray], keys: list[str]
) -> dict[str, np.ndarray]:
    out, i = {}, 0
    for k in keys:
        n = like[k].size
        out[k] = vec[i : i + n].reshape(like[k].shape).astype(np.float32)
        i += n
    return out


def encrypt(ctx, vec: np.ndarray) -> list[bytes]:
    """CKKS-encrypt a float vector in chunks; returns the serialized ciphertexts."""
    ts = _ts()
    return [
        ts.ckks_vector(ctx, vec[i : i + CHUNK].tolist()).serialize()
        for i in range(0, len(vec), CHUNK)
    ]


def add(public_ctx, ciphertexts: list[list[bytes]]) -> list[bytes]:
    """Homomorphic sum of several owners' chunk lists (server side, public context only)."""
    ts = _ts()
    if not ciphertexts:
        return []
    total = [ts.ckks_vector_from(public_ctx, c) for c in ciphertexts[0]]
    for other in ciphertexts[1:]:
        if len(other) != len(total):
            raise ConfigError(
                "owners sent encrypted updates of different sizes; all owners must "
                "run the same model"
            )
        for j, c in enumerate(other):
            total[j] = total[j] + ts.ckks_vector_from(public_ctx, c)
    return [t.serialize() for t in total]


def decrypt(secret_ctx, chunks: list[bytes]) -> np.ndarray:
    ts = _ts()
    return np.concatenate(
        [np.asarray(ts.ckks_vector_from(secret_ctx, c).decrypt(), np.float64) for c in chunks]
    )


def pack(chunks: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Ciphertext chunks -> (uint8 blob, int64 lengths), so they travel in an ArrayRecord."""
    lengths = np.asarray([len(c) for c in chunks], dtype=np.int64)
    return np.frombuffer(b"".join(chunks), dtype=np.uint8).copy(), lengths


def unpack(blob: np.ndarray, lengths: np.ndarray) -> list[bytes]:
    raw, out, i = blob.tobytes(), [], 0
    for n in lengths.tolist():
        out.append(raw[i : i + n])
        i += n
    return out


def weighted_payload(arrays: dict[str, np.ndarray], keys: list[str], n: int) -> np.ndarray:
    """``[n * w, n]``: what each owner encrypts; sum / last element = FedAvg."""
    return np.append(flatten(arrays, keys) * n, float(n))


def average_from_sum(total: np.ndarray) -> np.ndarray:
    if not total[-1] > 0.5:
        raise ConfigError("decrypted example count is 0; no owner contributed this round")
    return total[:-1] / total[-1]


def precision_loss(
    updates: list[np.ndarray], weights: list[int], secret_path: str | Path, public_path: str | Path
) -> dict:
    """Max / mean absolute error of CKKS FedAvg against plaintext FedAvg on the same updates."""
    sec, pub = load_context(secret_path, True), load_context(public_path, False)
    payloads = [np.append(u * w, float(w)) for u, w in zip(updates, weights, strict=False)]
    enc = add(pub, [encrypt(sec, p) for p in payloads])
    ckks = average_from_sum(decrypt(sec, enc))
    plain = np.average(np.stack(updates), axis=0, weights=np.asarray(weights, float))
    err = np.abs(ckks - plain)
    return {
        "max_abs_error": float(err.max()),
        "mean_abs_error": float(err.mean()),
        "n_values": int(plain.size),
        "max_abs_value": float(np.abs(plain).max()),
    }


def add_plain(public_ctx, chunks: list[bytes], vec: np.ndarray) -> list[bytes]:
    """Add a plaintext vector to an encrypted one chunk by chunk (server side, public context):
    how the server puts its DP noise into an aggregate it cannot read."""
    ts = _ts()
    return [
        (ts.ckks_vector_from(public_ctx, c) + vec[j * CHUNK : (j + 1) * CHUNK].tolist()).serialize()
        for j, c in enumerate(chunks)
    ]
