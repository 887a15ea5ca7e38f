"""Attribute inference from a partial image: the attacker knows the top half of a real image and
wants the bottom half and the label. Its only tool is a set of images it can search: the
synthetic set, or (the baseline) an equal-size set of real population images that were never
trained on. It answers with the nearest image on the known half (pixel L2).

If the synthetic set reconstructs training members better than holdout images — or better than
population data does — it leaks attributes of individuals."""

from __future__ import annotations

import numpy as np


def _halves(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = images.shape[2] // 2
    return images[:, :, :h], images[:, :, h:]


def _infer(
    targets: np.ndarray, t_labels: np.ndarray, pool: np.ndarray, p_labels: np.ndarray
) -> dict:
    import torch

    known_t, hidden_t = _halves(targets)
    known_p, hidden_p = _halves(pool)
    flat = lambda a: torch.from_numpy(a.reshape(len(a), -1).astype(np.float32) / 255.0)
    j = torch.cdist(flat(known_t), flat(known_p)).argmin(1).numpy()
    err = ((hidden_t.astype(np.float64) - hidden_p[j]) / 255.0) ** 2
    return {
        "mse_hidden_half": float(err.mean()),
        "label_accuracy": float((p_labels[j] == t_labels).mean()),
    }


def attribute_inference(
    members, m_labels, nonmembers, n_labels, synthetic, s_labels, reference, r_labels, seed: int = 0
) -> dict:
    """Reconstruction error of the hidden (bottom) half and label accuracy, for members and
    non-members, with the synthetic set vs an equal-size real reference set as the attacker's
    knowledge. ``member_advantage_*`` > 0 means members are inferred better than non-members."""
    rng = np.random.default_rng(seed)
    n = min(len(synthetic), len(reference))
    si = rng.permutation(len(synthetic))[:n]
    syn, syn_y = synthetic[si], s_labels[si]
    out = {"known": "top half", "n_pool": int(n)}
    for name, (pool, pool_y) in {
        "synthetic": (syn, syn_y),
        "reference": (reference[:n], r_labels[:n]),
    }.items():
        out[name] = {
            "members": _infer(members, m_labels, pool, pool_y),
            "nonmembers": _infer(nonmembers, n_labels, pool, pool_y),
        }
    mem, non = out["synthetic"]["members"], out["synthetic"]["nonmembers"]
    out["member_advantage_mse"] = non["mse_hidden_half"] - mem["mse_hidden_half"]
    out["member_advantage_label"] = mem["label_accuracy"] - non["label_accuracy"]
    return out
