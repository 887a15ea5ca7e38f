"""Training progress over privacy steps, with the epsilon spent so far.

On a terminal: a tqdm bar. Redirected to a file or a pipe (CI logs, nohup, `| tee`): one plain line
per ~10% of the steps (steps, epsilon spent, elapsed, ETA) instead of a bar's thousand carriage-
return updates. The lines leave out the training losses: they are computed on private batches
without noise, and log files travel further than a terminal.
"""

from __future__ import annotations

import math
import sys
import time

from ..privacy.accounting import epsilon_from_history

LINES = 10  # progress lines per run when stderr is not a terminal


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class progress_bar:
    def __init__(self, total: int, start: int, ctx, plan, desc: str, stream=None):
        self.plan, self.ctx, self.desc = plan, ctx, desc
        self.total, self.start = total, start
        self.stream = stream or sys.stderr
        self.enabled = bool(ctx.progress) and total > 0
        self.tty = self.enabled and _isatty(self.stream)
        self.t0 = time.monotonic()
        self.next_line = self._after(start)
        self.bar = None
        if self.tty:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total,
                initial=start,
                desc=desc,
                dynamic_ncols=True,
                leave=False,
                file=self.stream,
            )
        # Epsilon on the bar comes from the same accountant as the card. One PRV evaluation costs
        # 0.2-0.8 s (more than a DP step), so refresh only when that keeps it under ~3% of the time.
        self.eps, self.last, self.cost = 0.0, 0.0, 0.0

    def _after(self, step: int) -> int:
        """The first step past ``step`` that ends a tenth of the run."""
        tenth = max(1, math.ceil(self.total / LINES))
        return min(self.total, (step // tenth + 1) * tenth)

    def _epsilon(self, step: int) -> float:
        history = [
            *self.ctx.privacy.prior,  # a warm-up release, if any, came first
            (self.plan.noise_multiplier, self.plan.sample_rate, step),
        ]
        return epsilon_from_history(history, self.plan.delta, self.ctx.privacy.accountant)

    def update(self, step: int, **losses: float) -> None:
        if not self.enabled:
            return
        if not self.tty:
            if step >= self.next_line:
                self._line(step)
                self.next_line = self._after(step)
            return
        self.bar.n = step
        now = time.monotonic()
        if self.plan is not None and (
            now - self.last > max(3.0, 30 * self.cost) or step == self.total
        ):
            self.eps = self._epsilon(step)
            self.last = time.monotonic()
            self.cost = self.last - now
        post = {k: f"{v:.3f}" for k, v in losses.items() if not math.isnan(v)}
        if self.plan is not None:
            post["eps"] = f"{self.eps:.2f}"
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(0)

    def _line(self, step: int) -> None:
        elapsed = time.monotonic() - self.t0
        done = step - self.start
        eta = elapsed / done * (self.total - step) if done > 0 else float("nan")
        parts = [f"{self.desc}: {step}/{self.total} ({step / self.total:.0%})"]
        if self.plan is not None:
            parts.append(f"epsilon spent {self._epsilon(step):.3g}")
        parts.append(f"elapsed {_clock(elapsed)}")
        parts.append(f"ETA {_clock(eta)}" if math.isfinite(eta) else "ETA ?")
        print("privsynth: " + ", ".join(parts), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
