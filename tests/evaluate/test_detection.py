import numpy as np

from privsynth.evaluate.detection import delong_ci, detection


def test_delong_perfect_and_chance():
    y = np.r_[np.ones(50), np.zeros(50)]
    auc, lo, hi = delong_ci(y, np.r_[np.arange(50) + 100, np.arange(50)])
    assert auc == 1.0 and lo == 1.0
    auc, lo, hi = delong_ci(y, np.random.default_rng(0).random(100))
    assert lo < auc < hi and lo < 0.5 < hi


def test_detection_same_distribution_is_chance_disjoint_is_perfect(digits_parts):
    (a, _), (b, _) = digits_parts[0], digits_parts[1]
    same = detection(a, b, passes=1500)
    assert abs(same["auc"] - 0.5) < 0.15 and same["auc_ci"][0] < 0.5 + 0.05
    far = detection(a, 255 - b, passes=1500)  # inverted images: trivially told apart
    assert far["auc"] > 0.95 and far["accuracy"] > 0.9
