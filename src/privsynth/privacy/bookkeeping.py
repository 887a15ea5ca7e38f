"""Book-Keeping DP-SGD: every example's gradient clipped and summed in one backward pass.

Bu, Wang, Zha, Karypis, "Differentially Private Optimization on Large Model at Small Cost"
(ICML 2023). Opacus' hooks mode stores every example's gradient of every layer and clips
afterwards; its ghost mode runs the backward twice. Here the forward runs with the weights
frozen, the backward computes only the gradients *between* layers, and each layer's input
(activation A) and output gradient (backprop G) are kept. From them:

1. each example's squared gradient norm, layer by layer: from the example's weight gradient
   ``G_i^T A_i`` formed a few examples at a time (cost T d p per example), or without forming it,
   the "ghost norm" ``<A_i A_i^T, G_i G_i^T>`` (cost T^2 (d + p)), whichever is cheaper for the
   layer's shape (T positions, d inputs, p outputs);
2. the clip factors ``c_i = min(1, C / (||g_i|| + 1e-6))``, Opacus' own formula;
3. each layer's clipped sum ``sum_i c_i g_i = (c G)^T A``: one weight-gradient product, the same
   one a non-private backward computes.

After ``loss.backward()`` every trainable parameter's ``.grad`` holds the clipped sum (no noise,
not averaged) added to what it held, like autograd, so a batch can run in chunks
(`dpsgd.backward`). Opacus' ``DPOptimizerFastGradientClipping`` then adds ``N(0, sigma^2 C^2)``,
divides by the expected batch size, and its accountant books the step: nothing here draws noise
or accounts (``dpsgd.make_private`` wires the two together).

Unit of privacy: one row of the wrapped module's first argument. A layer that sees K rows per
unit (noise multiplicity, rows laid out unit-major) gets one gradient per unit, the sum of its
rows' contributions scaled like Opacus' ``loss_reduction="mean"`` hooks followed by
``engine.merge_grad_samples``: the unit's gradient is the gradient of the mean of its K losses.
Rows past ``clip_rows`` (see `BookKeeping.public_rows`) are not units: their gradient enters the
sum unclipped, for rows computed from already-released values only (a GAN's fake images).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from .bk_layers import SUPPORTED, check, clipped_grads, norm_layer_rows, unit_norms_sq

# Per-example work is done in chunks of examples whose scratch tensors hold about this many
# floats (64 MiB), so peak memory does not grow with the batch.
CHUNK_FLOATS = 1 << 24


@dataclass
class _Record:
    module: nn.Module
    activation: torch.Tensor
    backprop: torch.Tensor | None = None
    norm_rows: tuple | None = None  # GroupNorm: per-row gradients, shared by norms and sums
    unit_grads: dict | None = None  # convolutions: units' weight gradients, if formed for norms


class BookKeeping(nn.Module):
    """Wraps ``module``; ``loss.backward()`` leaves the clipped per-unit gradient sum in ``.grad``
    for a ``loss`` that is the mean over the forward's rows (Opacus' ``loss_reduction="mean"``).
    ``disable_hooks()`` gives a plain forward (a GAN's generator step), as on Opacus' wrappers."""

    def __init__(self, module: nn.Module, max_grad_norm: float, chunk_floats: int = CHUNK_FLOATS):
        super().__init__()
        self._module = module
        self.max_grad_norm = float(max_grad_norm)
        self.chunk_floats = int(chunk_floats)
        self.hooks_enabled = True
        trainable = [
            m for m in module.modules() if any(p.requires_grad for p in m.parameters(recurse=False))
        ]
        unsupported = sorted({type(m).__name__ for m in trainable if not isinstance(m, SUPPORTED)})
        if unsupported:
            raise ConfigError(
                f"grad-sample mode 'bk' has no rule for {', '.join(unsupported)}; "
                "use --grad-sample-mode hooks"
            )
        self._layers = [m for m in trainable if isinstance(m, SUPPORTED)]
        for m in self._layers:
            why = check(m)
            if why:
                raise ConfigError(
                    f"grad-sample mode 'bk' does not support {why}; use --grad-sample-mode hooks"
                )
        self._handles = [m.register_forward_hook(self._capture) for m in self._layers]
        self._records: list[_Record] = []
        self._recording = False
        self._units = 0
        self._clip_rows: int | None = None
        self._public_clip = "total"
        self._queued = False

    # --- the Opacus-like surface the training loops use ------------------------------------
    def forward(self, *args, **kwargs):
        if not (self.hooks_enabled and torch.is_grad_enabled()):
            return self._module(*args, **kwargs)
        self._records, self._queued = [], False
        self._units = len(args[0])
        self._clip_units = (
            self._units if self._clip_rows is None else min(self._clip_rows, self._units)
        )
        self._clip_public = self._public_clip
        params = [p for m in self._layers for p in m.parameters(recurse=False) if p.requires_grad]
        self._frozen = params
        for p in params:  # the graph gets no weight-gradient nodes: those come from _finish
            p.requires_grad_(False)
        self._recording = True
        try:
            return self._module(*args, **kwargs)
        finally:
            self._recording = False
            for p in params:
                p.requires_grad_(True)

    def disable_hooks(self) -> None:
        self.hooks_enabled = False

    def enable_hooks(self) -> None:
        self.hooks_enabled = True

    def _close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles, self._records = [], []

    @contextmanager
    def public_rows(self, clip_rows: int, public_clip: str = "total"):
        """Within this block only the first ``clip_rows`` rows of a forward are units, clipped to
        C; the rest are *public* (functions of released values: a GAN's fakes) and get no
        per-example norm: their summed gradient is scaled to norm <= (public rows) x C
        (``"total"``: they weigh no more than clipping would let them) or added as it is
        (``"none"``). Either way the sensitivity to one unit stays C (docs/privacy.md)."""
        if public_clip not in ("total", "none"):
            raise ValueError(f"public_clip must be 'total' or 'none', got {public_clip!r}")
        self._clip_rows, self._public_clip = int(clip_rows), public_clip
        try:
            yield self
        finally:
            self._clip_rows = None

    # --- hooks ------------------------------------------------------------------------------
    def _capture(self, module: nn.Module, inputs, output):
        if not self._recording:
            return None
        if any(r.module is module for r in self._records):
            raise ConfigError(
                f"{type(module).__name__} runs twice in one forward; grad-sample "
                "mode 'bk' needs one call per layer (use --grad-sample-mode hooks)"
            )
        record = _Record(module, inputs[0].detach())
        replaced = None
        if not output.requires_grad:  # first trainable layer on this path: the backward ends here
            output = replaced = output.detach().requires_grad_(True)
        output.register_hook(lambda grad, r=record: self._on_backprop(r, grad))
        self._records.append(record)
        return replaced

    def _on_backprop(self, record: _Record, grad: torch.Tensor) -> None:
        record.backprop = grad.detach()
        if not self._queued:
            self._queued = True
            torch.autograd.Variable._execution_engine.queue_callback(self._finish)

    # --- the clipped sum ----------------------------------------------------------------------
    def _finish(self) -> None:
        records, self._records = self._records, []
        units, clip_rows = self._units, self._clip_units
        with torch.no_grad():
            grads = self.clipped_sum(records, units, clip_rows, self._clip_public)
        for p in self._frozen:  # like autograd, add to what an earlier chunk left in .grad
            g = grads.get(p)
            g = g if g is not None else torch.zeros_like(p)
            p.grad = g if p.grad is None else p.grad + g

    def clipped_sum(
        self, records: list[_Record], units: int, clip_rows: int, public_clip: str = "total"
    ) -> dict[torch.Tensor, torch.Tensor]:
        """{parameter: sum over units of the clipped unit gradient (+ the public rows' sum)}."""
        records = [r for r in records if r.backprop is not None]
        if units == 0 or not records:
            return {}
        # Each row's backprop of the mean loss is 1/rows of its own loss' gradient; a unit's
        # gradient is `units` x the sum of its rows' backprops (the mean of its K row losses).
        scale = float(units)
        norms_sq = torch.zeros(clip_rows, device=records[0].backprop.device)
        for r in records:
            k = _rows_per_unit(r, units)
            if isinstance(r.module, nn.GroupNorm):
                r.norm_rows = norm_layer_rows(r.module, r.activation, r.backprop)
            r.unit_grads = {}
            norms_sq += unit_norms_sq(
                r.module,
                r.activation[: clip_rows * k],
                r.backprop[: clip_rows * k],
                k,
                self.chunk_floats,
                _rows(r.norm_rows, 0, clip_rows * k),
                r.unit_grads,
            )
        norms = scale * norms_sq.sqrt()
        factor = (self.max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
        out = self._weighted_sum(records, units, 0, clip_rows, factor * scale)
        if clip_rows == units:
            return out
        public = self._weighted_sum(
            records, units, clip_rows, units, torch.full((units - clip_rows,), scale)
        )
        public_scale = 1.0
        if public_clip == "total":
            norm = torch.sqrt(sum(g.pow(2).sum() for g in public.values())).item()
            public_scale = min(1.0, (units - clip_rows) * self.max_grad_norm / (norm + 1e-6))
        for p, g in public.items():
            out[p] = out[p] + public_scale * g if p in out else public_scale * g
        return out

    def _weighted_sum(
        self, records, units: int, u0: int, u1: int, unit_weight: torch.Tensor
    ) -> dict[torch.Tensor, torch.Tensor]:
        """{parameter: sum over units u0..u1 of unit_weight x the unit's gradient}."""
        out: dict[torch.Tensor, torch.Tensor] = {}
        if u1 <= u0:
            return out
        for r in records:
            k = _rows_per_unit(r, units)
            row_weight = unit_weight.repeat_interleave(k) if k > 1 else unit_weight
            kept = (r.unit_grads or {}).get("weight")  # units 0 .. clip_rows, if formed
            kept = kept[u0:u1] if kept is not None and u1 <= len(kept) else None
            out.update(
                clipped_grads(
                    r.module,
                    r.activation[u0 * k : u1 * k],
                    r.backprop[u0 * k : u1 * k],
                    row_weight,
                    _rows(r.norm_rows, u0 * k, u1 * k),
                    kept,
                    unit_weight,
                )
            )
        return out


def _rows(pair: tuple | None, r0: int, r1: int) -> tuple | None:
    return None if pair is None else tuple(t[r0:r1] for t in pair)


def _rows_per_unit(record: _Record, units: int) -> int:
    rows = len(record.backprop)
    if rows % units:
        raise ConfigError(
            f"{type(record.module).__name__} saw {rows} rows for {units} examples; "
            "grad-sample mode 'bk' needs a whole number of rows per example "
            "(use --grad-sample-mode hooks)"
        )
    return rows // units
