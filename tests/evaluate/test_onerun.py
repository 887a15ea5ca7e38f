import math

import numpy as np

from privsynth.evaluate.onerun import audit_scores, epsilon_lower_bound, guesses, p_value


def test_perfect_guesses_match_the_closed_form():
    # r = v = 20, delta = 0: the bound solves q^20 = 0.05 with q = e^eps / (1 + e^eps)
    q = 0.05 ** (1 / 20)
    expected = math.log(q / (1 - q))
    assert abs(epsilon_lower_bound(100, 20, 20, 0.0, 0.95) - expected) < 1e-6


def test_bound_properties():
    assert epsilon_lower_bound(100, 20, 10, 0.0, 0.95) == 0.0  # coin flips prove nothing
    with_delta = epsilon_lower_bound(1000, 100, 95, 1e-4, 0.95)
    assert 0 < with_delta <= epsilon_lower_bound(1000, 100, 95, 0.0, 0.95)
    assert p_value(100, 30, 25, 1.0) > p_value(100, 30, 25, 0.5)


def test_guesses_and_audit_scores():
    included = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    scores = np.r_[np.linspace(10, 20, 50), np.linspace(0, 9, 50)]
    assert guesses(scores, included, 10, 10) == (20, 20)
    strong = audit_scores({"perfect": scores}, included)
    assert strong["epsilon_lower_bound"] > 1.0
    noise = audit_scores({"noise": np.random.default_rng(0).random(100)}, included)
    assert noise["epsilon_lower_bound"] < strong["epsilon_lower_bound"]
