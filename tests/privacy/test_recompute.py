"""Epsilon recomputed outside our code path: a fresh Opacus accountant and Google's dp-accounting.

dp-accounting composes ``steps`` Poisson-subsampled Gaussians: its RDP accountant must match
Opacus' RDP almost exactly, its PLD accountant must match Opacus' PRV within ~2%.
"""

from __future__ import annotations

import dp_accounting as dpa
import pytest
from dp_accounting import pld, rdp
from opacus.accountants import PRVAccountant, RDPAccountant

from privsynth.privacy import epsilon_from_history

CASES = [(1.0, 0.01, 1000, 1e-5), (0.8, 0.05, 200, 1e-5), (1.1, 0.0266, 76, 1e-4)]


def dp_accounting_epsilon(sigma: float, q: float, steps: int, delta: float, kind: str) -> float:
    event = dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma)), steps)
    acc = (
        rdp.RdpAccountant()
        if kind == "rdp"
        else pld.PLDAccountant(value_discretization_interval=1e-3)
    )
    acc.compose(event)
    return acc.get_epsilon(delta)


def opacus_fresh(sigma, q, steps, delta, kind) -> float:
    acc = RDPAccountant() if kind == "rdp" else PRVAccountant()
    for _ in range(steps):  # step by step, as a training loop does
        acc.step(noise_multiplier=sigma, sample_rate=q)
    return acc.get_epsilon(delta=delta)


@pytest.mark.parametrize("sigma, q, steps, delta", CASES)
def test_rdp_agrees_with_dp_accounting(sigma, q, steps, delta):
    ours = epsilon_from_history([(sigma, q, steps)], delta, "rdp")
    assert ours == pytest.approx(opacus_fresh(sigma, q, steps, delta, "rdp"), rel=1e-9)
    assert ours == pytest.approx(dp_accounting_epsilon(sigma, q, steps, delta, "rdp"), rel=2e-3)


@pytest.mark.parametrize("sigma, q, steps, delta", CASES)
def test_prv_agrees_with_pld(sigma, q, steps, delta):
    ours = epsilon_from_history([(sigma, q, steps)], delta, "prv")
    assert ours == pytest.approx(opacus_fresh(sigma, q, steps, delta, "prv"), rel=1e-6)
    assert ours == pytest.approx(dp_accounting_epsilon(sigma, q, steps, delta, "pld"), rel=0.02)
    # PRV/PLD are tighter than RDP for the same mechanism.
    assert ours < epsilon_from_history([(sigma, q, steps)], delta, "rdp")


def test_history_composes_like_one_run():
    # A resumed run's history is two segments; epsilon must equal the uninterrupted run's.
    whole = epsilon_from_history([(1.0, 0.02, 300)], 1e-5, "rdp")
    parts = epsilon_from_history([(1.0, 0.02, 100), (1.0, 0.02, 200)], 1e-5, "rdp")
    assert parts == pytest.approx(whole, rel=1e-12)
