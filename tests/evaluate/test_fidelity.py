import numpy as np

from privsynth.evaluate.fidelity import frechet, kid, pixel_stats, prdc_scores, stats_table


def test_frechet_identical_is_zero_and_mean_shift_is_squared_distance():
    x = np.random.default_rng(0).normal(size=(500, 6))
    assert frechet(x, x) < 1e-4
    shift = np.array([3.0, 0, 0, 0, 0, 0])
    assert abs(frechet(x, x + shift) - 9.0) < 1e-3  # same covariance: only |mu1-mu2|^2


def test_kid_near_zero_for_same_distribution_large_for_disjoint():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    same = kid(a, b, subsets=5, subset_size=200)
    far = kid(a, b + 5, subsets=5, subset_size=200)
    assert abs(same["mean"]) < 0.05 and far["mean"] > 1.0


def test_prdc_identical_sets_are_perfect_and_disjoint_sets_score_zero():
    x = np.random.default_rng(2).normal(size=(200, 4))
    same = prdc_scores(x, x, nearest_k=5)
    assert same["precision"] == 1.0 and same["recall"] == 1.0 and same["coverage"] == 1.0
    far = prdc_scores(x, x + 100, nearest_k=5)
    assert far["precision"] == 0.0 and far["coverage"] == 0.0


def test_stats_table_differences():
    real = (np.arange(16) * 10).astype(np.uint8).reshape(4, 1, 2, 2)
    rows = stats_table(real, {"m": real + 51})
    assert rows[0]["model"] == "real" and abs(rows[1]["d_mean"] - 51 / 255) < 1e-9
    assert abs(rows[1]["d_std"]) < 1e-9 and abs(rows[1]["d_skewness"]) < 1e-9
    assert abs(pixel_stats(real)["mean"] - 75 / 255) < 1e-9
