"""Composing a dataset's spends: the basic rule the ledger checks, and a tighter one on request.

Basic composition (the ledger's rule): runs with (eps_i, delta_i) compose to
(sum eps_i, sum delta_i), for any mix of mechanisms; a run's own segments are composed by its
accountant once (a superseded segment's history is in its run's later booking).

Tighter (labelled as such wherever shown): every DP-SGD booking is a sequence of subsampled
Gaussian mechanisms on the same records, so their histories ``(sigma, q, steps)`` can be composed
by one Opacus accountant (PRV when every segment used it, else RDP) at the *same* total delta as
the basic rule; other releases (class counts, imported or federated spends) are added as in the
basic rule. The result is still an upper bound, usually far below the basic sum.
"""

from __future__ import annotations

from typing import Any

from .accounting import epsilon_from_history

TIGHTER_RULE = (
    "tighter (not used for budgets): the DP-SGD histories of all segments composed by "
    "one Opacus accountant at the same total delta, other releases added"
)


def segment_parts(segment: dict[str, Any]) -> tuple[list, float, float, float] | None:
    """``(history, sgd_delta, other_epsilon, other_delta)`` of one segment, or None when it has
    no accountant history (imported, federated, or refused before planning)."""
    acc = segment.get("accounting") or {}
    if "sgd_delta" not in acc:
        return None
    running = segment["status"] == "running"
    history = acc.get("planned" if running else "booked") or []
    other = acc.get("other_planned" if running else "other_booked") or {}
    sgd_delta = float(acc["sgd_delta"]) if history else 0.0
    return history, sgd_delta, float(other.get("epsilon", 0.0)), float(other.get("delta", 0.0))


def tighter(dataset: dict[str, Any]) -> dict[str, Any] | None:
    """The tighter composition of one dataset from `Ledger.datasets`, or None when it is no
    tighter than the basic sum (e.g. a single segment, or no DP-SGD history at all)."""
    histories: list = []
    accountants: set[str] = set()
    sgd_delta = other_eps = 0.0
    n_sgd = 0
    for run in dataset["runs"].values():
        for seg in run["segments"]:
            if seg.get("superseded"):  # its run's later segment books its history too
                continue
            parts = segment_parts(seg)
            if parts is None:
                other_eps += seg["counted_epsilon"]
                continue
            history, d, e_other, _ = parts
            if history:
                histories += [tuple(h) for h in history]
                accountants.add(seg["accounting"].get("accountant", "rdp"))
                n_sgd += 1
            sgd_delta += d
            other_eps += e_other
    if n_sgd < 2 or not 0 < sgd_delta < 1:
        return None
    name = "prv" if accountants == {"prv"} else "rdp"
    try:
        eps = epsilon_from_history(histories, sgd_delta, name)
    except Exception:  # PRV's numerical domain can fail on long mixed histories; RDP does not
        name = "rdp"
        eps = epsilon_from_history(histories, sgd_delta, name)
    total = eps + other_eps
    if not total < dataset["epsilon_spent"] - 1e-9:
        return None
    return {
        "epsilon": total,
        "delta": dataset["delta_spent"],
        "accountant": name,
        "dp_sgd_segments": n_sgd,
        "rule": TIGHTER_RULE,
    }
