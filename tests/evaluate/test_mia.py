import math

import numpy as np

from privsynth.evaluate import privacy
from privsynth.evaluate.mia import dp_auc_ceiling, dp_ceiling, roc_summary


def _auc(scores, m):
    return roc_summary(scores[:m], scores[m:])["auc"]


def test_roc_summary_perfect_attack_and_dp_ceiling():
    r = roc_summary(np.arange(100) + 100.0, np.arange(100.0), epsilon=1.0, delta=1e-5)
    assert r["auc"] == 1.0 and r["tpr_at_0.01_fpr"] == 1.0 and r["auc_ci95"][0] == 1.0
    assert abs(r["dp_ceiling_tpr_at_0.01_fpr"] - (math.e * 0.01 + 1e-5)) < 1e-9
    assert r["exceeds_dp_ceiling"]  # all 100 members caught at 1% FPR: far above e*1% + delta
    chance = roc_summary(*np.split(np.random.default_rng(0).random(400), 2), epsilon=1.0)
    assert not chance["exceeds_dp_ceiling"]
    assert dp_ceiling(math.inf, 0, 0.01) == 1.0 and dp_auc_ceiling(0.0, 0.0) < 0.5 + 1e-3
    assert 0.5 < dp_auc_ceiling(1.0, 0.0) < 1.0


def test_attacks_see_a_memorising_model(digits_parts):
    (xm, ym), (xn, yn), (xr, yr), _ = digits_parts
    synth, syn_y = xm.copy(), ym.copy()  # the "model" released its training images
    cand, cand_y, m = np.concatenate([xm, xn]), np.concatenate([ym, yn]), len(xm)
    s = privacy.gan_leaks(cand, cand_y, synth, syn_y, xr, yr)
    assert _auc(s["gan_leaks"], m) > 0.99 and _auc(s["gan_leaks_calibrated"], m) > 0.99
    mc, _ = privacy.monte_carlo(cand, cand_y, synth, syn_y)
    assert _auc(mc, m) > 0.95
    f = lambda x: x.reshape(len(x), -1).astype(np.float64)  # pixels as the feature space
    assert _auc(privacy.domias(f(cand), f(synth), f(xr)), m) > 0.8
    d = privacy.dcr(xm, ym, xn, yn, synth, syn_y)
    assert d["share_closer_to_train"] == 1.0 and d["median_dcr_members"] == 0.0


def test_attacks_are_chance_on_independent_data(digits_parts):
    (xm, ym), (xn, yn), (xr, yr), (xs, ys) = digits_parts
    cand, cand_y, m = np.concatenate([xm, xn]), np.concatenate([ym, yn]), len(xm)
    s = privacy.gan_leaks(cand, cand_y, xs, ys, xr, yr)
    mc, _ = privacy.monte_carlo(cand, cand_y, xs, ys)
    f = lambda x: x.reshape(len(x), -1).astype(np.float64)
    for scores in (
        s["gan_leaks"],
        s["gan_leaks_calibrated"],
        mc,
        privacy.domias(f(cand), f(xs), f(xr)),
    ):
        assert abs(_auc(scores, m) - 0.5) < 0.1
    assert abs(privacy.dcr(xm, ym, xn, yn, xs, ys)["share_closer_to_train"] - 0.5) < 0.1


def test_nearest_pairs_find_copies(digits_parts):
    (xm, _), _, _, (xs, _) = digits_parts
    synth = np.concatenate([xs[:20], xm[5:6]])
    pairs = privacy.nearest_pairs(xm, synth, k=3)
    assert pairs[0] == {"synthetic": 20, "train": 5, "distance": 0.0}
