"""One process's spend on one run (`RunSpend`), kept in the ledger from before its first private
step to its end: reserve (the whole remaining plan, with the budget check), book at every
checkpoint (what ran plus one interval, so a killed process is never under-booked), settle (what
ran, or what was booked); cancelled if refused before it planned. The rules: docs/privacy.md,
"Segments, reserved before they run".

Every booking is the whole run's (``scope: run``): one accountant over everything the run ran; a
resumed segment carries what it does not rerun from its checkpoint (``carried``). A *lead*
(`set_lead`: the size release, the warm-up's) precedes DP-SGD in the same accountant history and
is booked before it is drawn (`book_lead`); the checkpoint interval counts DP-SGD steps only.
"""

from __future__ import annotations

import warnings
from typing import Sequence

from ..accounting import epsilon_from_history
from .counting import run_scoped
from .ledger import Ledger

History = list[tuple[float, float, int]]


def history_steps(history: Sequence) -> int:
    return sum(int(h[2]) for h in history)


def _cut(history: Sequence, steps: int) -> tuple[History, History]:
    """``history`` split after its first ``steps`` steps."""
    head: History = []
    tail: History = []
    for sigma, q, n in history:
        use = min(int(n), steps)
        steps -= use
        if use > 0:
            head.append((float(sigma), float(q), use))
        if int(n) > use:
            tail.append((float(sigma), float(q), int(n) - use))
    return head, tail


def history_take(history: Sequence, steps: int) -> History:
    """The first ``steps`` steps of ``history``."""
    return _cut(history, steps)[0]


def _merged(history: Sequence) -> History:
    """``history`` with adjacent entries of the same (sigma, q) joined, as Opacus keeps it."""
    out: History = []
    for sigma, q, n in history:
        if out and (out[-1][0], out[-1][1]) == (float(sigma), float(q)):
            out[-1] = (out[-1][0], out[-1][1], out[-1][2] + int(n))
        elif int(n) > 0:
            out.append((float(sigma), float(q), int(n)))
    return out


def history_minus(full: Sequence, prefix: Sequence) -> History:
    """The steps of ``full`` after its first ``history_steps(prefix)`` steps (a resumed run's
    accountant history minus what earlier segments ran)."""
    return _cut(full, history_steps(prefix))[1]


def _plus(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    return (a[0] + b[0], a[1] + b[1])


class RunSpend:
    """The ledger booking of one segment of one run (used by `privsynth.train`)."""

    def __init__(
        self,
        ledger: Ledger,
        fingerprint: str,
        name: str,
        *,
        run_id: str,
        method: str,
        out: str,
        kind: str,
        limit: float | None,
        force: bool,
        accountant: str,
        chunk: int,
        prefix: Sequence = (),
    ):
        """``prefix``: the accountant history of the checkpoint this segment resumes from (the
        model's own lineage, already run)."""
        self.ledger, self.fingerprint, self.name = ledger, fingerprint, name
        self.meta = dict(run_id=run_id, method=method, out=out, kind=kind)
        self.limit, self.force, self.accountant = limit, force, accountant
        self.chunk = max(1, int(chunk))
        self.prefix: History = [tuple(h) for h in prefix]
        self.segment: str | None = None
        self.planned = False
        self.sigma = self.q = 0.0
        self.steps, self.sgd_delta = 0, 0.0
        self.other = (0.0, 0.0)  # a release still to come (class counts): (eps, delta)
        self.other_booked = False
        self.booked: History = []
        self.settled = False
        self.lead: History = []  # releases before DP-SGD in the accountant (warm-up)
        self.lead_booked = False
        self.forced_check = ""  # a check --force let through before the ledger (delta >= 1/n)
        # --nproc: the empty-local-batch allowance the card adds to delta (dpsgd.py)
        self.extra_delta = 0.0
        self.force_warned = False  # the ledger's --force warning, shown once per segment
        # The run's last whole-run booking by an earlier segment (a resumed or restarted run).
        rows = ledger.run_segments(fingerprint, run_id)
        self.previous = next((r for r in reversed(rows) if run_scoped(r)), None)
        if self.previous is not None:  # a segment that only finishes still needs the run's delta
            self.sgd_delta = float(self.previous["accounting"].get("sgd_delta", 0.0))

    @property
    def carried(self) -> History:
        """What earlier segments of this run ran (or were booked for) beyond the lineage this
        segment resumes from: their carried steps plus their booked lineage past ``prefix``."""
        if self.previous is None:
            return []
        acc = self.previous["accounting"]
        lineage = [tuple(h) for h in acc.get("lineage", [])]
        mine = [(float(a), float(b), int(c)) for a, b, c in self.prefix]
        # A checkpoint that is not a prefix of what the run booked (e.g. copied from another
        # run) skips nothing: the run's whole earlier lineage is carried (never under-booked).
        same = _merged(history_take(lineage, history_steps(mine))) == _merged(mine)
        skip = mine if same else []
        return [*(tuple(h) for h in acc.get("carried", [])), *history_minus(lineage, skip)]

    @property
    def carried_other(self) -> tuple[float, float]:
        """Releases outside the accountant (class counts) that earlier segments booked."""
        if self.previous is None:
            return (0.0, 0.0)
        other = self.previous["accounting"].get("other_booked") or {}
        return (float(other.get("epsilon", 0.0)), float(other.get("delta", 0.0)))

    def _run(self, segment: History) -> History:
        """The run's whole history: carried, the resumed lineage, then this segment's part."""
        return [*self.carried, *(tuple(h) for h in self.prefix), *segment]

    def set_lead(self, lead: Sequence, delta: float, released: Sequence = ()) -> None:
        """``lead``: the run's accountant entries before its DP-SGD steps, composed with them at
        ``delta``. ``released``: the part an earlier segment already released and booked (it
        joins the prefix when no DP checkpoint carries it)."""
        self.lead, self.sgd_delta = [tuple(h) for h in lead], float(delta)
        if released and history_steps(self.prefix) < history_steps(released):
            self.prefix = [tuple(h) for h in released]

    def book_lead(self) -> None:
        """Book the lead release (reserving it if nothing was reserved yet) before it is drawn."""
        pending = history_minus(self.lead, self.prefix)
        if not pending:
            return
        if self.segment is None:
            eps, delta = self._value(pending, (0.0, 0.0))
            self.segment = self._reserve(eps, delta, self._accounting(pending))
        self.lead_booked = True
        self._book(pending)

    # --- reserve -------------------------------------------------------------------------------
    def reserve_target(self, epsilon: float, delta: float) -> None:
        """Fail fast: reserve a calibrated run's target before any work; `plan` replaces it.
        (A restarted run adds what its earlier segments booked: an upper bound, basic.) Called
        again (the delta fixed once the size is released), it re-reserves the same segment."""
        before_eps, before_delta = self._value([], (0.0, 0.0))
        self.segment = self._reserve(
            epsilon + before_eps,
            delta + before_delta,
            {**self._accounting([]), "target_epsilon": epsilon},
            self.segment,
        )

    def plan(
        self,
        sigma: float,
        q: float,
        steps: int,
        sgd_delta: float,
        other: tuple[float, float] = (0.0, 0.0),
    ) -> float:
        """Reserve the remaining plan (``steps`` in total for the run, minus what earlier
        segments ran) and ``other`` (a release this segment will make). Returns the epsilon
        reserved."""
        self.sigma, self.q, self.sgd_delta, self.other = sigma, q, sgd_delta, other
        self.steps = int(steps)
        planned = self._planned()
        eps, delta = self._value(planned, other)
        self.segment = self._reserve(eps, delta, self._accounting(planned), self.segment)
        self.planned = True
        self._book(self._ahead([]))
        return eps

    def ensure_planned(self, other: tuple[float, float]) -> None:
        """A segment that runs no private step but still releases ``other`` (a resumed run
        whose DP part was finished) reserves that release first."""
        if not self.planned:
            done = history_steps(self.prefix) - history_steps(self.lead)
            self.plan(self.sigma, self.q, max(0, done), self.sgd_delta, other)

    # --- book and settle -----------------------------------------------------------------------
    def checkpoint(self, full_history: Sequence) -> None:
        self._book(self._ahead(history_minus(full_history, self.prefix)))

    def releasing_other(self) -> None:
        """Book the coming release (class counts) before it is drawn."""
        self.other_booked = True
        self._book(self.booked)

    def finish(self, full_history: Sequence | None, status: str = "complete") -> None:
        """Settle to exactly what ran (``full_history``: the run's accountant history now)."""
        ran = history_minus(full_history or [], self.prefix)
        if self.segment is not None:
            self._settle(self.segment, status, ran)
        elif self.previous is not None:  # nothing private ran here (a resumed post-step):
            # the run's last segment is what ran, and it now ends the run
            self._settle(
                self.previous["id"], status, ran, "the run was completed by a resumed process"
            )

    def abort(self, status: str, note: str = "") -> None:
        """The process is ending early: settle to what was booked (an upper bound on what ran),
        or cancel a reservation that never reached its first private step."""
        if self.segment is None or self.settled:
            return
        self.settled = True
        if not self.planned and not self.lead_booked:
            self.ledger.cancel(self.segment)
            return
        self._settle(self.segment, status, self.booked, note)

    def _settle(self, segment: str, status: str, history: History, note: str = "") -> None:
        eps, delta = self._value(history)
        accounting = self._accounting(self._planned(), history)
        self.ledger.settle(
            segment, status, epsilon=eps, delta=delta, accounting=accounting, note=note
        )
        self.settled = True

    def outside(self) -> tuple[float, float]:
        """The run's releases outside the accountant (class counts), as booked: this segment's
        and the earlier segments'."""
        return _plus(self._other_booked, self.carried_other)

    @property
    def forced(self) -> bool:
        """Whether --force let any segment of this run past a budget (or another check)."""
        rows = self.ledger.run_segments(self.fingerprint, self.meta["run_id"])
        return bool(self.forced_check) or any(r["forced"] for r in rows)

    # --- helpers ---------------------------------------------------------------------------------
    def _reserve(self, epsilon: float, delta: float, accounting: dict, segment=None) -> str:
        # A segment re-reserves (target, then plan): its --force warning is shown once.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            segment = self.ledger.reserve(
                self.fingerprint,
                self.name,
                epsilon=epsilon,
                delta=delta,
                limit=self.limit,
                force=self.force,
                segment=segment,
                accounting=accounting,
                **self.meta,
            )
        for w in caught:
            if str(w.message).startswith("--force:"):
                if self.force_warned:
                    continue
                self.force_warned = True
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return segment

    def _planned(self) -> History:
        """What this segment plans to run: the whole run's plan (lead + DP-SGD) minus what
        earlier segments ran."""
        whole = [*self.lead, *([(self.sigma, self.q, self.steps)] if self.steps else [])]
        return history_minus(whole, self.prefix)

    def _ahead(self, ran: History) -> History:
        """``ran`` plus the steps the next checkpoint interval may run: any lead release not yet
        in ``ran``, then ``chunk`` DP-SGD steps."""
        rest = history_minus(self._planned(), ran)
        lead_left = max(
            0, history_steps(history_minus(self.lead, self.prefix)) - history_steps(ran)
        )
        out = [tuple(h) for h in ran]
        for sigma, q, n in history_take(rest, lead_left + self.chunk):
            if out and (out[-1][0], out[-1][1]) == (sigma, q):  # one entry per run, as Opacus
                out[-1] = (sigma, q, int(out[-1][2]) + n)
            else:
                out.append((sigma, q, n))
        return out

    def _value(self, history: History, other=None) -> tuple[float, float]:
        """The whole run's (epsilon, delta) when this segment has run ``history``: one
        accountant over the run's history, plus the releases outside it (basic)."""
        whole = self._run(history)
        eps = epsilon_from_history(whole, self.sgd_delta, self.accountant)
        sgd = (eps, self.sgd_delta + self.extra_delta if whole else 0.0)
        return _plus(_plus(sgd, self._other_booked if other is None else other), self.carried_other)

    @property
    def _other_booked(self) -> tuple[float, float]:
        return self.other if self.other_booked else (0.0, 0.0)

    def _book(self, history: History) -> None:
        self.booked = history
        eps, delta = self._value(history)
        self.ledger.book(
            self.segment,
            epsilon=eps,
            delta=delta,
            accounting=self._accounting(self._planned(), history),
        )

    def _accounting(self, planned: History, booked: History | None = None) -> dict:
        """The row's accounting: the whole run's histories (``planned``, ``booked``: carried +
        lineage), the lineage alone (what a resumed segment skips from its checkpoint) and the
        carried part, so that a later segment can supersede this one."""
        booked = booked or []

        def plus(a: tuple[float, float]) -> dict:
            return dict(zip(("epsilon", "delta"), _plus(a, self.carried_other), strict=True))

        return {
            "scope": "run",
            "accountant": self.accountant,
            "sgd_delta": self.sgd_delta,
            "planned": [list(h) for h in self._run(planned)],
            "booked": [list(h) for h in self._run(booked)],
            "lineage": [list(h) for h in (*self.prefix, *booked)],
            "carried": [list(h) for h in self.carried],
            "other_planned": plus(self.other),
            "other_booked": plus(self._other_booked),
            "checkpoint_interval": self.chunk,
            "resumed_after_steps": history_steps(self.prefix),
            **({"forced": self.forced_check} if self.forced_check else {}),
        }
