"""Discriminator step time, DP vs non-DP, for each Opacus grad-sample mode, in one run.

    PYTHONPATH=src nice -n 10 python bench/speed_dp.py            # 28x28, expected batch 256
    PYTHONPATH=src python bench/speed_dp.py --smoke               # seconds; CI keeps it alive

One D step = what ``GANSynthesizer._d_step`` does: one forward over (real batch + as many fakes),
binary cross-entropy, backward, optimizer step. DP modes add per-sample gradients, clipping to C
and Gaussian noise (Opacus). Modes are timed in interleaved rounds (median per mode), so load from
other processes on a shared machine hits every mode alike; the JSON gives times as ratios to the
non-DP step measured in the same run. "correct" compares each mode's clipped, noise-free gradient
sum with an independent reference (one backward per row, clipped, summed) on the same batch.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from opacus import PrivacyEngine
from opacus.grad_sample import grad_sample_module as _gsm
from torch.utils.data import DataLoader, TensorDataset

from privsynth.atomic import write_json
from privsynth.models.gan import Discriminator
from privsynth.privacy import dpsgd

MODES = ("hooks", "hooks_stock", "functorch", "ew", "ghost")
# hooks_stock: Opacus' own per-sample buffer handling, without privsynth's zero-fill/copy skip
# (privsynth.privacy.dpsgd._store_grad_sample), to show what that change buys in the same run.


def build(mode: str, size: int, width: int, n: int, batch: int, classes: int, sigma: float):
    """(step function, module, optimizer) for ``mode``; 'none' is the plain non-private step."""
    if mode == "hooks_stock":
        step, D, opt = build("hooks", size, width, n, batch, classes, sigma)

        def stock(*a):
            _gsm.create_or_accumulate_grad_sample = dpsgd._opacus_store
            try:
                step(*a)
            finally:
                _gsm.create_or_accumulate_grad_sample = dpsgd._store_grad_sample
        return stock, D, opt
    torch.manual_seed(0)
    D = Discriminator(1, size, classes, width)
    opt = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    if mode == "none":
        def step(x, y, t):
            loss = F.binary_cross_entropy_with_logits(D(x, y), t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step, D, opt
    data = TensorDataset(torch.zeros(n, 1, size, size), torch.zeros(n, dtype=torch.long))
    loader = DataLoader(data, batch_size=batch)
    engine = PrivacyEngine(accountant="prv", secure_mode=False)
    kwargs = dict(module=D, optimizer=opt, data_loader=loader, noise_multiplier=sigma,
                  max_grad_norm=1.0, poisson_sampling=True, grad_sample_mode=mode)
    if mode == "ghost":
        D, opt, crit, _ = engine.make_private(criterion=torch.nn.BCEWithLogitsLoss(), **kwargs)
    else:
        D, opt, _ = engine.make_private(**kwargs)
        crit = torch.nn.BCEWithLogitsLoss()

    def step(x, y, t):
        opt.zero_grad(set_to_none=True)
        loss = crit(D(x, y), t)
        loss.backward()
        opt.step()
    return step, D, opt


def clipped_sum(mode: str, args, x, y, t) -> torch.Tensor:
    """The flattened gradient the optimizer would apply, noise 0: for the correctness check."""
    step, D, opt = build(mode, args.size, args.width, args.n, args.batch, 10, 0.0)
    inner = opt.original_optimizer if hasattr(opt, "original_optimizer") else opt
    grads = {}
    inner.step = lambda *a, **k: grads.update(
        g=torch.cat([p.grad.flatten() for p in inner.param_groups[0]["params"]]))
    step(x, y, t)
    return grads["g"]


def reference_sum(args, x, y, t) -> torch.Tensor:
    """Independent check: one backward per row, clip each row's gradient to C=1, sum, divide by
    the expected batch size, as DP-SGD defines it (no Opacus involved)."""
    torch.manual_seed(0)
    D = Discriminator(1, args.size, 10, args.width)
    params = list(D.parameters())
    total = [torch.zeros_like(p) for p in params]
    for i in range(len(x)):
        loss = F.binary_cross_entropy_with_logits(D(x[i:i + 1], y[i:i + 1]), t[i:i + 1])
        g = torch.autograd.grad(loss, params)
        norm = torch.sqrt(sum((gi ** 2).sum() for gi in g))
        for acc, gi in zip(total, g, strict=True):
            acc += gi * min(1.0, 1.0 / (norm.item() + 1e-6))
    q = 1 / math.ceil(args.n / args.batch)
    return torch.cat([a.flatten() for a in total]) / int(args.n * q)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--width", type=int, default=32, help="discriminator width (GANConfig.width)")
    ap.add_argument("--batch", type=int, default=256, help="expected real batch (fakes: as many)")
    ap.add_argument("--n", type=int, default=8000, help="private dataset size (sets q)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per mode per round")
    ap.add_argument("--modes", nargs="+", default=list(MODES))
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds")
    ap.add_argument("--out", default="bench/results/speed_dp.json")
    args = ap.parse_args(argv)
    if args.smoke:
        args.size, args.width, args.batch, args.n, args.rounds, args.steps = 8, 8, 16, 64, 1, 1
    warnings.filterwarnings("ignore")
    torch.manual_seed(1)
    b = args.batch
    x = torch.rand(2 * b, 1, args.size, args.size) * 2 - 1
    y = torch.randint(0, 10, (2 * b,))
    t = torch.cat([torch.ones(b), torch.zeros(b)])

    steppers, errors = {}, {}
    for mode in ("none", *args.modes):
        try:
            step = build(mode, args.size, args.width, args.n, b, 10, 1.0)[0]
            step(x, y, t)  # warm-up (and: does this mode run at all?)
            steppers[mode] = step
        except Exception as e:  # record why a mode cannot run with our layers
            msg = str(e).splitlines()[0][:300].split(", tensor(")[0]
            errors[mode] = f"{type(e).__name__}: {msg}"
    ref = reference_sum(args, x, y, t)
    scale = ref.abs().max().item()
    correct = {}
    for mode in steppers:
        if mode == "none":
            continue
        try:
            diff = (clipped_sum(mode, args, x, y, t) - ref).abs().max().item()
            correct[mode] = {"max_abs_diff_vs_reference": diff, "correct": diff < 1e-4 * scale}
        except Exception as e:
            correct[mode] = {"correct": False, "error": f"{type(e).__name__}: {e}"[:300]}

    times: dict[str, list[float]] = {m: [] for m in steppers}
    for _ in range(args.rounds):
        for mode, step in steppers.items():
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step(x, y, t)
            times[mode].append((time.perf_counter() - t0) / args.steps)
    med = {m: statistics.median(v) for m, v in times.items()}
    base = med["none"]
    modes = {m: {"step_seconds": med[m], "ratio_to_non_dp": med[m] / base, **correct.get(m, {})}
             for m in med}
    ok = [m for m in modes if m != "none" and modes[m].get("correct")]
    fastest = min(ok, key=lambda m: med[m]) if ok else None
    result = {
        "what": "discriminator step (forward real+fake, BCE, backward, optimizer step)",
        "image": f"1x{args.size}x{args.size}", "discriminator_width": args.width,
        "real_batch": b, "fake_batch": b, "n_private": args.n,
        "rounds": args.rounds, "steps_per_round": args.steps,
        "torch_threads": torch.get_num_threads(), "machine": platform.platform(),
        "python": sys.version.split()[0], "torch": torch.__version__,
        "modes": modes, "errors": errors, "fastest_correct_dp_mode": fastest,
        "fastest_ratio": modes[fastest]["ratio_to_non_dp"] if fastest else None,
        "smoke": args.smoke,
    }
    write_json(Path(args.out), result)
    print(json.dumps({m: round(v["ratio_to_non_dp"], 2) for m, v in modes.items()}), errors)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
