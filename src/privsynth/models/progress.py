"""A tqdm bar over privacy steps that shows the epsilon spent so far."""

from __future__ import annotations

import math
import time

from tqdm.auto import tqdm

from ..privacy.accounting import epsilon_from_history


class progress_bar:
    def __init__(self, total: int, start: int, ctx, plan, desc: str):
        self.plan, self.ctx = plan, ctx
        self.bar = tqdm(total=total, initial=start, desc=desc, disable=not ctx.progress,
                        dynamic_ncols=True, leave=False)
        # Epsilon on the bar comes from the same accountant as the card. One PRV evaluation costs
        # 0.2-0.8 s (more than a DP step), so refresh only when that keeps it under ~3% of the time.
        self.eps, self.last, self.cost = 0.0, 0.0, 0.0

    def update(self, step: int, **losses: float) -> None:
        self.bar.n = step
        if self.bar.disable:
            return
        now = time.monotonic()
        if self.plan is not None and (now - self.last > max(3.0, 30 * self.cost)
                                      or step == self.bar.total):
            history = [*self.ctx.privacy.prior,  # a warm-up release, if any, came first
                       (self.plan.noise_multiplier, self.plan.sample_rate, step)]
            self.eps = epsilon_from_history(history, self.plan.delta, self.ctx.privacy.accountant)
            self.last = time.monotonic()
            self.cost = self.last - now
        post = {k: f"{v:.3f}" for k, v in losses.items() if not math.isnan(v)}
        if self.plan is not None:
            post["eps"] = f"{self.eps:.2f}"
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(0)

    def close(self) -> None:
        self.bar.close()
