"""Membership-inference attacks on a synthetic set: each returns one score per candidate image,
higher = "more likely a training member". Plain functions on arrays.

Candidates are real images with labels: members (training split) and non-members (holdout).
The attacker holds the synthetic set and, for the calibrated attacks, a *reference* set of real
images from the same population that were never trained on (the other half of the holdout).
Distances are Euclidean on pixels scaled to 0..1; with labels, only same-class synthetic images
count (a conditional generator is asked for the candidate's class).
"""

from __future__ import annotations

import numpy as np
import torch


def _flat(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0)


def distance_blocks(
    queries: np.ndarray, q_labels: np.ndarray | None, pool: np.ndarray, p_labels: np.ndarray | None
):
    """Yield (query indices, pool indices, distance matrix) per class: the same-class pool, or the
    whole pool for a class it lacks; one block without labels."""
    q, p = _flat(queries), _flat(pool)
    if q_labels is None or p_labels is None:
        yield np.arange(len(q)), np.arange(len(p)), torch.cdist(q, p).numpy()
        return
    for k in np.unique(q_labels):
        qi = np.flatnonzero(q_labels == k)
        pi = np.flatnonzero(p_labels == k)
        if len(pi) == 0:
            pi = np.arange(len(p))
        yield qi, pi, torch.cdist(q[qi], p[pi]).numpy()


def nearest_distance(queries, q_labels, pool, p_labels) -> np.ndarray:
    """Distance from each query to its nearest pool image (same class when labels are given)."""
    out = np.empty(len(queries))
    for qi, _, d in distance_blocks(queries, q_labels, pool, p_labels):
        out[qi] = d.min(1)
    return out


def gan_leaks(candidates, c_labels, synthetic, s_labels, reference=None, r_labels=None) -> dict:
    """GAN-Leaks full black-box (Chen et al. CCS 2020): score = -distance to the nearest synthetic
    image. Calibrated: + distance to the nearest reference image, which removes how "typical" a
    candidate is (an easy image is near everything, member or not)."""
    d_syn = nearest_distance(candidates, c_labels, synthetic, s_labels)
    out = {"gan_leaks": -d_syn}
    if reference is not None and len(reference):
        out["gan_leaks_calibrated"] = (
            nearest_distance(candidates, c_labels, reference, r_labels) - d_syn
        )
    return out


def monte_carlo(
    candidates, c_labels, synthetic, s_labels, radius: float | None = None
) -> tuple[np.ndarray, float]:
    """Monte-Carlo attack (Hilprecht et al. PETS 2019): the fraction of synthetic images inside an
    epsilon-ball around the candidate. ``radius`` defaults to the median nearest-synthetic distance
    of all candidates (their median heuristic). Ties are broken by the nearest distance."""
    blocks = list(distance_blocks(candidates, c_labels, synthetic, s_labels))
    nearest = np.empty(len(candidates))
    for qi, _, d in blocks:
        nearest[qi] = d.min(1)
    if radius is None:
        radius = float(np.median(nearest))
    score = np.empty(len(candidates))
    for qi, _, d in blocks:
        score[qi] = (d <= radius).mean(1)
    scale = max(float(nearest.max()), 1e-12)
    return score - 1e-6 * nearest / scale, radius


def membership_scores(candidates, synthetic, reference, synthesizer, extra=None) -> tuple:
    """Every attack's scores per candidate: the black-box ones, then ``extra`` (e.g. DOMIAS),
    then white-box when ``synthesizer`` exposes ``membership_scores``; and the Monte-Carlo
    radius. ``candidates``, ``synthetic`` and ``reference`` are (images, labels) pairs."""
    scores = gan_leaks(*candidates, *synthetic, *reference)
    scores["monte_carlo"], radius = monte_carlo(*candidates, *synthetic)
    scores.update(extra or {})
    white = synthesizer.membership_scores(*candidates) if synthesizer is not None else None
    if white is not None:
        scores["white_box"] = np.asarray(white, dtype=np.float64)
    return scores, radius


def domias(
    cand_feats: np.ndarray,
    synth_feats: np.ndarray,
    ref_feats: np.ndarray,
    dims: int = 10,
    seed: int = 0,
) -> np.ndarray:
    """DOMIAS-style density ratio (van Breugel et al. AISTATS 2023): log p_synthetic(x) -
    log p_reference(x), with Gaussian KDEs (Scott bandwidth) in a whitened PCA of the feature
    space. Overfitting shows as synthetic density piled on members, beyond the population's."""
    from sklearn.decomposition import PCA
    from sklearn.neighbors import KernelDensity

    dims = int(min(dims, len(ref_feats) - 1, len(synth_feats) - 1, cand_feats.shape[1]))
    pca = PCA(n_components=dims, whiten=True, random_state=seed)
    pca.fit(np.concatenate([synth_feats, ref_feats]))
    z_s, z_r, z_c = pca.transform(synth_feats), pca.transform(ref_feats), pca.transform(cand_feats)
    log_s = KernelDensity(bandwidth="scott").fit(z_s).score_samples(z_c)
    log_r = KernelDensity(bandwidth="scott").fit(z_r).score_samples(z_c)
    return log_s - log_r


def dcr(members, m_labels, nonmembers, n_labels, synthetic, s_labels) -> dict:
    """Distance to closest record (DCR) vs the holdout baseline (equal-size members/non-members).

    For each synthetic image: is its nearest real image (same class) a training member or a
    holdout image? With no memorisation about half are members ("share_closer_to_train" ~ 0.5)."""
    real = np.concatenate([members, nonmembers])
    labels = None if m_labels is None else np.concatenate([m_labels, n_labels])
    is_member = np.r_[np.ones(len(members), bool), np.zeros(len(nonmembers), bool)]
    closer = np.empty(len(synthetic), bool)
    nearest_d = np.empty(len(synthetic))
    for si, pool, d in distance_blocks(synthetic, s_labels, real, labels):
        closer[si] = is_member[pool[d.argmin(1)]]
        nearest_d[si] = d.min(1)
    d_m = nearest_distance(members, m_labels, synthetic, s_labels)
    d_n = nearest_distance(nonmembers, n_labels, synthetic, s_labels)
    return {
        "share_closer_to_train": float(closer.mean()),
        "median_dcr_members": float(np.median(d_m)),
        "median_dcr_holdout": float(np.median(d_n)),
        "min_dcr_synthetic": float(nearest_d.min()),
        "p05_dcr_members": float(np.quantile(d_m, 0.05)),
        "p05_dcr_holdout": float(np.quantile(d_n, 0.05)),
    }


def nearest_pairs(train: np.ndarray, synthetic: np.ndarray, k: int = 12) -> list[dict]:
    """The ``k`` synthetic images closest to any training image (pixel L2), each with that image:
    what a reviewer looks at first for copies."""
    best_d = np.full(len(synthetic), np.inf)
    best_j = np.zeros(len(synthetic), np.int64)
    t = _flat(train)
    for start in range(0, len(synthetic), 2048):
        d = torch.cdist(_flat(synthetic[start : start + 2048]), t)
        v, j = d.min(1)
        best_d[start : start + len(v)], best_j[start : start + len(v)] = v.numpy(), j.numpy()
    order = np.argsort(best_d)[:k]
    return [
        {"synthetic": int(i), "train": int(best_j[i]), "distance": float(best_d[i])} for i in order
    ]
