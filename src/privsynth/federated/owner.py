"""One data owner's spend on one federation, kept in its own ledger and on its own disk.

An owner spends through the same ledger calls as any `privsynth train` user (privacy/ledger/):
it reserves its whole plan for the federation before its first private step, books before and
after each round, and settles on the final report; one federation is one segment, so two on the
same data add up. Its accountant history lives in a state file keyed by the federation, so a
restarted SuperNode continues it instead of starting from zero (docs/federated.md, "Privacy").
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..atomic import write_json
from ..errors import BudgetError, ConfigError
from ..privacy.accounting import AccountantState, epsilon_from_history
from ..privacy.ledger import Ledger, default_location, resolve_location
from ..privacy.ledger.spend import history_steps
from ..privacy.ledger.store import is_url


def state_dir(node: dict) -> Path:
    """Node config ``state-dir``, else ``owner-state/`` beside this owner's ledger file."""
    if node.get("state-dir"):
        return Path(str(node["state-dir"])).expanduser()
    location = resolve_location(node.get("ledger") or None)
    base = default_location() if is_url(location) else Path(location).expanduser()
    return base.parent / "owner-state"


def _owner_tag(node: dict) -> str:
    """Which owner of this state directory (owners sharing a machine share the default dir)."""
    if "data-path" in node:
        return "data-" + hashlib.sha256(str(node["data-path"]).encode()).hexdigest()[:16]
    return f"partition-{int(node.get('partition-id', 0))}"


class OwnerSpend:
    """This owner's ledger segment and accountant history for one federation (``data``: the
    owner's images, whose key the ledger books under; None to read and write the state only)."""

    def __init__(self, node: dict, cfg: dict, data, run_id: int):
        # the launcher's federation-id, else Flower's run id (unique on its SuperLink)
        self.key = str(cfg.get("federation-id") or f"flwr-run-{run_id}")
        self.path = state_dir(node) / f"{self.key}-{_owner_tag(node)}.json"
        self.ledger = Ledger(str(node["ledger"]) if node.get("ledger") else None)
        self.data, self.cfg = data, cfg
        self.state: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}

    # --- the state on disk ---------------------------------------------------------------------
    def history(self) -> AccountantState | None:
        h = self.state.get("history")
        return AccountantState.from_json(h) if h else None

    @property
    def sigma(self) -> float | None:
        return self.state.get("noise-multiplier") or None

    @property
    def released(self) -> bool:
        return bool(self.state.get("released"))

    def save(self, **values: Any) -> None:
        self.state.update(values)
        write_json(self.path, self.state)  # temp file then rename: never half-written

    # --- the ledger ----------------------------------------------------------------------------
    def reserve(self, epsilon: float, delta: float, accounting: dict) -> str:
        """Check the budget and reserve this federation's whole plan for this owner (the same
        segment again in later rounds and after a restart)."""
        if self.state.get("settled"):
            raise ConfigError(
                "this owner already reported its final spend for this federation; "
                "start a new federation to train again"
            )
        budget = float(self.cfg.get("budget") or 0.0)
        try:
            segment = self.ledger.reserve(
                self.data.source_fingerprint,
                self.data.name,
                run_id=self.key,
                epsilon=epsilon,
                delta=delta,
                method=f"{self.cfg['method']}-federated",
                out=str(self.cfg.get("out-dir", "")),
                kind="federated",
                limit=budget if budget > 0 else None,
                force=bool(self.cfg.get("force", False)),
                accounting=accounting,
                segment=self.state.get("segment"),
            )
        except BudgetError as e:
            raise BudgetError(f"this owner refuses to train: {e}") from None
        if segment != self.state.get("segment"):
            self.save(segment=segment)
        return segment

    def book(self, epsilon: float, delta: float, accounting: dict | None = None) -> None:
        self.ledger.book(self.state["segment"], epsilon=epsilon, delta=delta, accounting=accounting)

    def settle(self, epsilon: float, delta: float) -> None:
        if self.state.get("segment") and not self.state.get("settled"):
            self.ledger.settle(self.state["segment"], "complete", epsilon=epsilon, delta=delta)
            self.save(settled=True)

    # --- DP-SGD rounds ---------------------------------------------------------------------------
    def before_round(self, plan, steps: int, accountant: str) -> None:
        """Before this round's first private step: refuse steps beyond the planned ones,
        reserve the whole plan, book what ran plus this round."""
        prior = (self.state.get("history") or {}).get("history", [])
        done = history_steps(prior)
        if done + steps > plan.steps:
            raise ConfigError(
                f"this owner already ran {done} of its {plan.steps} planned DP-SGD steps in "
                f"this federation; {steps} more would exceed the epsilon it was calibrated for"
            )
        whole = [(plan.noise_multiplier, plan.sample_rate, plan.steps)]
        ahead = [*map(tuple, prior), (plan.noise_multiplier, plan.sample_rate, steps)]
        self.reserve(
            epsilon_from_history(whole, plan.delta, accountant),
            plan.delta,
            {"accountant": accountant, "planned": whole, "ran": prior},
        )
        self.save(**{"noise-multiplier": plan.noise_multiplier, "delta": plan.delta})
        self.book(
            epsilon_from_history(ahead, plan.delta, accountant),
            plan.delta,
            {"accountant": accountant, "planned": whole, "booked": ahead},
        )

    def after_round(self, acc: AccountantState, delta: float) -> float:
        """Save the history (this round's steps included) and book exactly what ran."""
        self.save(history=acc.to_json())
        epsilon = acc.epsilon(delta)
        self.book(epsilon, delta)
        return epsilon

    def settle_history(self) -> None:
        """The final report: settle to exactly what ran (nothing if it never trained)."""
        acc = self.history()
        if acc is not None and "delta" in self.state:
            delta = float(self.state["delta"])
            self.settle(acc.epsilon(delta), delta)
