"""A tighter composition of a dataset's spends than the ledger's basic rule, on request.

Every DP-SGD booking is a sequence of subsampled Gaussian mechanisms on the same records, so their
histories ``(sigma, q, steps)`` can be composed by one Opacus accountant (PRV when every segment
used it, else RDP) at the *same* total delta as the basic rule; other releases (class counts,
imported or federated spends) are added as in the basic rule. Still an upper bound, usually far
below the basic sum; labelled "tighter" wherever shown.
"""

from __future__ import annotations

from typing import Any

from .accounting import epsilon_from_history

TIGHTER_RULE = (
    "tighter (not used for budgets): the DP-SGD histories of all segments composed by "
    "one Opacus accountant at the same total delta, other releases added"
)


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
            acc = seg.get("accounting") or {}
            if "sgd_delta" not in acc:  # imported, federated, or refused before planning
                other_eps += seg["counted_epsilon"]
                continue
            running = seg["status"] == "running"
            history = acc.get("planned" if running else "booked") or []
            other = acc.get("other_planned" if running else "other_booked") or {}
            if history:
                histories += [tuple(h) for h in history]
                accountants.add(acc.get("accountant", "rdp"))
                n_sgd += 1
                sgd_delta += float(acc["sgd_delta"])
            other_eps += float(other.get("epsilon", 0.0))
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
