"""Per-layer rules for Book-Keeping (privacy/bookkeeping.py): per-unit squared gradient norms and
the weighted gradient sum, from a layer's input ``a`` and output gradient ``g``.

Rows are laid out unit-major, ``k`` consecutive rows per unit; a unit's gradient is the sum of its
rows' gradients. Norms are exact (float32, same values as a per-example backward up to rounding);
the scratch tensors are built a chunk of units at a time, so memory stays bounded.

Convolutions (ConvTranspose2d is the adjoint of a Conv2d, so it is one with input and output
gradient swapped). A row's weight gradient has one (out x in channel) block per kernel tap: the
backprop at the output positions times the input shifted by the tap. On a zero-padded input split
into stride phases and laid out channels-last, every tap's shifted input is a *view* (a fixed
offset into the flattened plane, Lavin-style "overcompute" of a few padding columns whose backprop
is zero), so no im2col copy is needed. Per unit, with L output positions:

- "mat": sum over taps of ||G^T X_tap||^2, the gradient block formed per tap (cost taps L C P);
- "ghost" (one row per unit): <sum_tap X_tap X_tap^T, G G^T> (Goodfellow's trick, Li et al. 2022;
  cost ~ L^2 (C taps + P)); the sum over taps is taken from the input's Gram matrix per phase;
- "im2col" for few input channels (the first layer), where one batched product is cheapest;
- "loop": when one unit's gradient is a big computation (large planes, noise multiplicity), the
  unit's own weight gradient from the convolution kernels, one call per unit.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.grad import conv2d_weight

# Rough CPU costs (ms) that pick a convolution's norm strategy: a kernel call per unit costs
# ~0.35 ms plus its work at ~30 G multiply-adds/s; batched products run at ~12 G/s.
CALL_MS, KERNEL_MACS_PER_MS, BMM_MACS_PER_MS = 0.35, 30e6, 12e6
SUPPORTED = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d, nn.GroupNorm, nn.Embedding)


def check(module: nn.Module) -> str | None:
    """Why ``module`` cannot go through these rules (None if it can)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        if (
            module.groups != 1
            or module.padding_mode != "zeros"
            or isinstance(module.padding, str)
            or any(d != 1 for d in module.dilation)
        ):
            return f"{type(module).__name__} with groups, dilation or padding modes"
        if isinstance(module, nn.ConvTranspose2d) and any(module.output_padding):
            return "ConvTranspose2d with output_padding"
    if isinstance(module, nn.Embedding) and (
        module.max_norm is not None
        or module.sparse
        or module.scale_grad_by_freq
        or module.padding_idx is not None
    ):
        return "Embedding with max_norm/sparse/scale_grad_by_freq/padding_idx"
    return None


# --- per-unit squared norms ------------------------------------------------------------------
def unit_norms_sq(
    m: nn.Module,
    a: torch.Tensor,
    g: torch.Tensor,
    k: int,
    chunk_floats: int,
    norm_rows=None,
    keep: dict | None = None,
) -> torch.Tensor:
    """Squared norm of each unit's gradient of ``m``'s parameters (rows: unit-major, k per unit).
    ``norm_rows``: GroupNorm's per-row gradients if already computed (`norm_layer_rows`).
    ``keep``: where a convolution whose units' weight gradients were formed one by one ("loop")
    leaves them (``keep["weight"]``: units x weight shape), if they fit in ``chunk_floats``; the
    clipped sum is then their weighted sum (`clipped_grads`), with no second pass."""
    units = len(g) // k
    if isinstance(m, nn.GroupNorm):
        w, b = norm_rows if norm_rows is not None else norm_layer_rows(m, a, g)
        return _per_unit(w, k).pow(2).sum(1) + _per_unit(b, k).pow(2).sum(1)
    if isinstance(m, nn.Embedding):
        return _embedding_norms_sq(
            a.reshape(units, -1), g.reshape(units, -1, g.shape[-1]), chunk_floats
        )
    out = torch.zeros(units, device=g.device, dtype=g.dtype)
    if m.bias is not None and m.bias.requires_grad:
        out += _per_unit(_bias_rows(m, g), k).pow(2).sum(1)
    if not m.weight.requires_grad or units == 0:
        return out
    if isinstance(m, nn.Linear):
        return out + _linear_norms_sq(a, g, k, chunk_floats)
    x, gy = (a, g) if isinstance(m, nn.Conv2d) else (g, a)  # ConvTranspose2d: the adjoint
    strategy = "auto"
    if keep is not None and units * m.weight.numel() <= chunk_floats:
        strategy = _conv_strategy(x, gy, m.kernel_size, m.stride, k)
        if strategy == "loop":
            grads = conv_unit_grads(x, gy, m.kernel_size, m.stride, m.padding, k)
            keep["weight"] = grads
            return out + grads.pow(2).flatten(1).sum(1)
    return out + conv_norms_sq(x, gy, m.kernel_size, m.stride, m.padding, k, chunk_floats, strategy)


def _bias_rows(m: nn.Module, g: torch.Tensor) -> torch.Tensor:
    """Each row's bias gradient: its backprop summed over positions."""
    return (
        g.reshape(len(g), -1, g.shape[-1]).sum(1)
        if isinstance(m, nn.Linear)
        else g.flatten(2).sum(2)
    )


def _per_unit(rows: torch.Tensor, k: int) -> torch.Tensor:
    return rows if k == 1 else rows.view(len(rows) // k, k, *rows.shape[1:]).sum(1)


def _linear_norms_sq(a, g, k, chunk_floats) -> torch.Tensor:
    units, d, p = len(g) // k, a.shape[-1], g.shape[-1]
    A, G = a.reshape(units, -1, d), g.reshape(units, -1, p)
    kt = A.shape[1]
    if kt == 1:  # one position: ||g a^T||^2 = ||a||^2 ||g||^2
        return A.pow(2).sum((1, 2)) * G.pow(2).sum((1, 2))
    return _mat_or_ghost(A, G, chunk_floats)


def _mat_or_ghost(A: torch.Tensor, G: torch.Tensor, chunk_floats: int) -> torch.Tensor:
    """Per-unit ||G_u^T A_u||^2 for A (units, T, d), G (units, T, p)."""
    units, t, d = A.shape
    p = G.shape[2]
    ghost = t * (d + p) < d * p
    per_unit = (2 * t * t if ghost else p * d) + t * (d + p)
    step = max(1, chunk_floats // per_unit)
    out = A.new_empty(units)
    for u0 in range(0, units, step):
        a, g = A[u0 : u0 + step], G[u0 : u0 + step]
        if ghost:
            out[u0 : u0 + step] = (
                torch.bmm(a, a.transpose(1, 2)) * torch.bmm(g, g.transpose(1, 2))
            ).sum((1, 2))
        else:
            out[u0 : u0 + step] = torch.bmm(g.transpose(1, 2), a).pow(2).sum((1, 2))
    return out


def conv_norms_sq(
    x: torch.Tensor,
    g: torch.Tensor,
    kernel,
    stride,
    padding,
    k: int,
    chunk_floats: int,
    strategy: str = "auto",
) -> torch.Tensor:
    """Per-unit squared norm of a Conv2d's weight gradient; x: input rows (R, C, H, W),
    g: output gradient rows (R, P, Ho, Wo), k rows per unit. ``strategy``: "auto" (the cheapest),
    or "im2col" / "loop" / "ghost" (k = 1 only) / "mat" (all exact; tests compare them)."""
    units, p = len(x) // k, g.shape[1]
    if strategy == "auto":
        strategy = _conv_strategy(x, g, kernel, stride, k)
    if strategy == "loop":
        out = x.new_empty(units)
        for u in range(units):
            out[u] = _unit_conv_grad(x, g, u, k, kernel, stride, padding).pow(2).sum()
        return out
    if strategy == "im2col":
        # few input channels: one batched product over im2col columns
        cols = F.unfold(x, kernel, 1, padding, stride).transpose(1, 2)
        return _mat_or_ghost(
            cols.reshape(units, -1, cols.shape[2]),
            g.flatten(2).transpose(1, 2).reshape(units, -1, p),
            chunk_floats,
        )
    if strategy == "ghost" and k != 1:
        raise ValueError("the ghost norm here takes one row per unit")
    return _phase_norms_sq(x, g, kernel, stride, padding, k, chunk_floats, strategy == "ghost")


def _plane(g: torch.Tensor, kernel, stride) -> tuple[int, int]:
    """(hph, wph): the phase plane holding every output position and the taps' overcompute."""
    (ho, wo), (kh, kw), (sh, sw) = g.shape[2:], kernel, stride
    return ho + math.ceil(kh / sh), wo + math.ceil(kw / sw) - 1


def _phase_norms_sq(x, g, kernel, stride, padding, k, chunk_floats, ghost: bool) -> torch.Tensor:
    """ "mat" or "ghost" on stride phase planes, a chunk of units at a time (module docstring)."""
    c, (p, ho, wo), (kh, kw), (sh, sw) = x.shape[1], g.shape[1:], kernel, stride
    units = len(x) // k
    hph, wph = _plane(g, kernel, stride)
    n, length = hph * wph, ho * wph
    # Phase planes of hph x wph, flattened; output (i, j) -> i * wph + j, tap -> + offset.
    taps = [
        (
            ra * sw + rb,
            [
                oa * wph + ob
                for oa in range(math.ceil((kh - ra) / sh))
                for ob in range(math.ceil((kw - rb) / sw))
            ],
        )
        for ra in range(sh)
        for rb in range(sw)
    ]
    phases, extra = sh * sw, max(o for _, offsets in taps for o in offsets)
    per_unit = k * n * (phases * c + p) + (phases * n * n + 2 * length * length if ghost else p * c)
    step = max(1, chunk_floats // per_unit)
    out = x.new_zeros(units)
    for u0 in range(0, units, step):
        u1 = min(units, u0 + step)
        xs, gs, nu = x[u0 * k : u1 * k], g[u0 * k : u1 * k], u1 - u0
        planes = _phase_planes(xs, padding, stride, (hph, wph), extra)  # (phases, flat, c)
        # the backprop on the same grid: zero at the overcomputed positions
        gf = gs.new_zeros(len(gs), hph, wph, p)
        gf[:, :ho, :wo] = gs.permute(0, 2, 3, 1)
        if ghost:
            out[u0:u1] = _ghost_chunk(planes, gf.view(len(gs), n, p)[:, :length], taps, nu, n)
            continue
        # A unit's k rows are consecutive planes: one product per tap over all k * n positions
        # (the zero backprop rows skip the windows that straddle two planes).
        gt = gf.view(nu, k * n, p).transpose(1, 2)
        for phase, offsets in taps:
            flat = planes[phase]
            for o in offsets:
                window = flat.as_strided(
                    (nu, k * n, c), (k * n * c, c, 1), flat.storage_offset() + o * c
                )
                out[u0:u1] += torch.bmm(gt, window).pow(2).sum((1, 2))
    return out


def _ghost_chunk(planes, gf, taps, nu: int, n: int) -> torch.Tensor:
    """<sum_tap X_tap X_tap^T, G G^T> per unit, the patch Gram summed from each phase's Gram."""
    c, length = planes.shape[2], gf.shape[1]
    patch_gram = None
    for phase, offsets in taps:
        plane = planes[phase, : nu * n].view(nu, n, c)
        gram = torch.bmm(plane, plane.transpose(1, 2))
        for o in offsets:
            block = gram[:, o : o + length, o : o + length]
            patch_gram = block.clone() if patch_gram is None else patch_gram.add_(block)
    return (patch_gram * torch.bmm(gf, gf.transpose(1, 2))).sum((1, 2))


def _unit_conv_grad(x, g, u: int, k: int, kernel, stride, padding) -> torch.Tensor:
    """Unit ``u``'s Conv2d weight gradient (P, C, kh, kw) from its k rows, one kernel call."""
    rows = slice(u * k, (u + 1) * k)
    return conv2d_weight(x[rows], (g.shape[1], x.shape[1], *kernel), g[rows], stride, padding)


def conv_unit_grads(
    x: torch.Tensor, g: torch.Tensor, kernel, stride, padding, k: int
) -> torch.Tensor:
    """Each unit's Conv2d weight gradient (units, P, C, kh, kw), one kernel call per unit."""
    return torch.stack(
        [_unit_conv_grad(x, g, u, k, kernel, stride, padding) for u in range(len(x) // k)]
    )


def _conv_strategy(x, g, kernel, stride, k: int) -> str:
    """The strategy with the lowest estimated time per unit (see the module docstring)."""
    c, (p, ho, wo), (kh, kw) = x.shape[1], g.shape[1:], kernel
    taps, phases = kh * kw, stride[0] * stride[1]
    if c * taps <= 32:
        return "im2col"
    hph, wph = _plane(g, kernel, stride)
    n, length = hph * wph, ho * wph
    cost = {
        "loop": CALL_MS + k * ho * wo * c * taps * p / KERNEL_MACS_PER_MS,
        "mat": taps * k * n * p * c / BMM_MACS_PER_MS,
    }
    if k == 1:
        cost["ghost"] = (
            phases * n * n * c + taps * length * length + length * length * p
        ) / BMM_MACS_PER_MS
    return min(cost, key=cost.get)


def _phase_planes(x: torch.Tensor, padding, stride, plane, extra: int) -> torch.Tensor:
    """Zero-padded x split into stride phases, channels-last, rows one after another:
    (phases, rows * hph * wph + extra, C), ``extra`` zero positions at the end for the last tap.

    Phase (ra, rb) holds padded pixels (sh * i + ra, sw * j + rb); pixels past the plane are never
    read by a tap, so they are left out."""
    (ph, pw), (sh, sw), (hph, wph) = padding, stride, plane
    rows, c, h, w = x.shape
    n = hph * wph
    flat = x.new_zeros(sh * sw, rows * n + extra, c)
    out = flat[:, : rows * n].view(sh, sw, rows, hph, wph, c)
    for ra in range(sh):
        i0 = max(0, math.ceil((ph - ra) / sh))
        r0 = sh * i0 + ra - ph
        ni = min(hph - i0, len(range(r0, h, sh)))
        for rb in range(sw):
            j0 = max(0, math.ceil((pw - rb) / sw))
            c0 = sw * j0 + rb - pw
            nj = min(wph - j0, len(range(c0, w, sw)))
            if ni > 0 and nj > 0:
                out[ra, rb, :, i0 : i0 + ni, j0 : j0 + nj] = x[:, :, r0::sh, c0::sw][
                    :, :, :ni, :nj
                ].permute(0, 2, 3, 1)
    return flat


def norm_layer_rows(m: nn.GroupNorm, a: torch.Tensor, g: torch.Tensor):
    """Per-row gradients of GroupNorm's affine weight and bias (zero-width if frozen)."""
    empty = torch.zeros(len(g), 0, device=g.device, dtype=g.dtype)
    w = (
        (F.group_norm(a, m.num_groups, eps=m.eps) * g).flatten(2).sum(2)
        if m.weight is not None and m.weight.requires_grad
        else empty
    )
    b = g.flatten(2).sum(2) if m.bias is not None and m.bias.requires_grad else empty
    return w, b


def _embedding_norms_sq(idx: torch.Tensor, g: torch.Tensor, chunk_floats: int) -> torch.Tensor:
    """Rows of one unit that look up the same index add up: sum_{s,t} [i_s = i_t] g_s . g_t."""
    if idx.shape[1] == 1:
        return g.pow(2).sum((1, 2))
    out = torch.empty(len(idx), device=g.device, dtype=g.dtype)
    step = max(1, chunk_floats // idx.shape[1] ** 2)
    for u0 in range(0, len(idx), step):
        i, gg = idx[u0 : u0 + step], g[u0 : u0 + step]
        same = (i[:, :, None] == i[:, None, :]).to(g.dtype)
        out[u0 : u0 + step] = (same * torch.bmm(gg, gg.transpose(1, 2))).sum((1, 2))
    return out


# --- the weighted sum ------------------------------------------------------------------------
def clipped_grads(
    m: nn.Module,
    a: torch.Tensor,
    g: torch.Tensor,
    row_weight: torch.Tensor,
    norm_rows=None,
    unit_grads: torch.Tensor | None = None,
    unit_weight: torch.Tensor | None = None,
) -> dict[torch.Tensor, torch.Tensor]:
    """{param: sum over rows of row_weight[r] * (row r's gradient)} for ``m``'s parameters:
    the same products as a non-private backward, with each row's backprop (or input) scaled.
    ``unit_grads`` (kept by `unit_norms_sq`): the weight's sum is ``unit_weight . unit_grads``."""
    out: dict[torch.Tensor, torch.Tensor] = {}
    if isinstance(m, nn.GroupNorm):
        wr, br = norm_rows if norm_rows is not None else norm_layer_rows(m, a, g)
        if wr.shape[1]:
            out[m.weight] = row_weight @ wr
        if br.shape[1]:
            out[m.bias] = row_weight @ br
        return out
    w = row_weight.view(-1, *([1] * (g.dim() - 1)))
    if isinstance(m, nn.Embedding):
        gw = (g * w).reshape(-1, g.shape[-1])
        out[m.weight] = torch.zeros_like(m.weight).index_add_(0, a.reshape(-1), gw)
        return out
    if m.bias is not None and m.bias.requires_grad:
        out[m.bias] = row_weight @ _bias_rows(m, g)
    if not m.weight.requires_grad:
        return out
    if unit_grads is not None:
        out[m.weight] = torch.tensordot(unit_weight, unit_grads, dims=1)
    elif isinstance(m, nn.Linear):
        out[m.weight] = (g * w).reshape(-1, g.shape[-1]).t() @ a.reshape(-1, a.shape[-1])
    else:  # a convolution: scale whichever of input / backprop is smaller
        if a.numel() < g.numel():
            a = a * w
        else:
            g = g * w
        # ConvTranspose2d: the weight gradient of the adjoint convolution (input g, output a)
        x, gy = (a, g) if isinstance(m, nn.Conv2d) else (g, a)
        out[m.weight] = conv2d_weight(x, m.weight.shape, gy, m.stride, m.padding)
    return out
