"""DP-SGD step time and memory vs the non-DP step, for every DP-SGD method and grad-sample mode.

    PYTHONPATH=src nice -n 10 python bench/speed_dp.py            # 28x28, all methods
    PYTHONPATH=src python bench/speed_dp.py --methods dpgan        # one method
    PYTHONPATH=src python bench/speed_dp.py --smoke               # seconds; CI keeps it alive

One step = what the method's training loop does with one private batch: forward, loss, backward,
optimizer step (Adam); VAE and diffusion batches go through ``dpsgd.backward`` as in training
(chunks of ``dpsgd.CHUNK_EXAMPLES`` examples, except Opacus' modes, which take the batch whole).
dpgan: the discriminator step of ``GANSynthesizer.private_loss`` on real + as
many fake rows (fakes precomputed); dpvae: the CVAE's negative ELBO; dpdiffusion: the denoiser's
EDM loss with noise multiplicity K (one gradient per image over its K noised copies). DP modes add
per-sample clipping to C and Opacus' Gaussian noise. Modes are timed in interleaved rounds (median
per mode) so load from other processes on a shared machine hits every mode alike; the JSON gives
times as ratios to the non-DP step of the same method in the same run: wall-clock
(``ratio_to_non_dp``, the headline) and this process' CPU time (``cpu_ratio_to_non_dp``, steadier
when other jobs compete for the cores).

"exact" compares each mode's clipped, noise-free gradient (what the optimizer would apply) with an
independent reference: one backward per example over the same forward (same random draws), each
example's gradient clipped to C and summed. ``bk_public`` (GAN only) clips the real rows and adds
the fake rows' gradient unclipped; its reference does the same. Peak memory: each (method, mode)
runs two steps in a fresh process; ``step_peak_mb`` is its peak resident memory minus the memory
it held before the first step.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from privsynth.atomic import write_json
from privsynth.models.diffusion import Denoiser
from privsynth.models.engine import merge_grad_samples
from privsynth.models.gan import Discriminator
from privsynth.models.vae import CVAE
from privsynth.privacy import PrivacySpec, dpsgd

MODES = ("bk", "bk_public", "hooks", "hooks_stock", "functorch", "ghost", "ew")
# bk: privsynth's Book-Keeping (the default); bk_public: the same without per-example norms
# for the GAN's fake rows (dpsgd.FAKE_ROWS, or "none" if that is "clip"); hooks_stock: Opacus'
# hooks without privsynth's zero-fill/copy skip (dpsgd._store_grad_sample), to show what that
# change buys in the same run.


@dataclass
class Case:
    """One method's private network and per-row loss on a fixed batch."""

    what: str
    build: Callable[[], torch.nn.Module]
    row_loss: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
    rows_per_unit: int
    x: torch.Tensor
    y: torch.Tensor
    public_from: int | None = None  # GAN: rows from here on are fakes

    def loss(self, model, x, y) -> torch.Tensor:
        return self.row_loss(model, x, y).mean()


def make_case(method: str, size: int, batch: int, width: int) -> Case:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(batch, 1, size, size, generator=g) * 2 - 1
    y = torch.randint(0, 10, (batch,), generator=g)

    def seeded(factory):
        def build():
            torch.manual_seed(0)
            return factory()

        return build

    if method == "dpgan":
        x2 = torch.cat([x, torch.rand(batch, 1, size, size, generator=g) * 2 - 1])
        y2 = torch.cat([y, torch.randint(0, 10, (batch,), generator=g)])
        return Case(
            "discriminator step: real + as many fake rows, BCE (GANSynthesizer._d_step)",
            seeded(lambda: Discriminator(1, size, 10, width)),
            lambda m, xb, yb: F.binary_cross_entropy_with_logits(
                m(xb, yb), real_then_fake(len(xb)), reduction="none"
            ),
            1,
            x2,
            y2,
            public_from=batch,
        )
    if method == "dpvae":
        return Case(
            "CVAE step: negative ELBO (VAESynthesizer.fit)",
            seeded(lambda: CVAE(1, size, 10, width, 16, 1.0)),
            lambda m, xb, yb: m(xb, yb),
            1,
            x,
            y,
        )
    if method == "dpdiffusion":
        k = 4
        return Case(
            f"denoiser step: EDM loss, noise multiplicity K={k} (DiffusionSynthesizer.fit)",
            seeded(lambda: Denoiser(1, size, 10, width, k, -1.2, 1.2, 0.1)),
            lambda m, xb, yb: m(xb, yb),
            k,
            x,
            y,
        )
    raise SystemExit(f"unknown method {method}")


def real_then_fake(rows: int) -> torch.Tensor:
    """GAN targets: the first half of the rows are real (1), the rest fake (0)."""
    return torch.cat([torch.ones(rows // 2), torch.zeros(rows - rows // 2)])


def subset(case: Case, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n units (GAN: n real and n fake rows) for the reference check."""
    if case.public_from is None:
        return case.x[:n], case.y[:n]
    b = case.public_from
    return (torch.cat([case.x[:n], case.x[b : b + n]]), torch.cat([case.y[:n], case.y[b : b + n]]))


def build(case: Case, mode: str, sigma: float, n_private: int):
    """(step function, optimizer) for ``mode``; 'none' is the plain non-private step."""
    model = case.build()
    opt = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.5, 0.999))
    if mode == "none":

        def step(x, y):
            opt.zero_grad(set_to_none=True)
            backward(case, model, x, y)
            opt.step()
            opt.zero_grad(set_to_none=True)  # hold no gradients between steps (memory)

        return step, opt
    units = case.public_from or len(case.x)
    if mode == "ghost":
        if case.public_from is None:
            raise RuntimeError(
                "Opacus' ghost clipping needs a criterion(output, target); this "
                "model returns its own per-row loss"
            )
        return _ghost(case, model, opt, sigma, n_private, units)
    gs_mode = {"bk_public": "bk", "hooks_stock": "hooks"}.get(mode, mode)
    spec = PrivacySpec(epsilon=None, noise_multiplier=sigma or 1.0, grad_sample_mode=gs_mode)
    data = dpsgd.TensorBatches(torch.zeros(n_private, 1), torch.zeros(n_private, dtype=torch.long))
    plan = dpsgd.plan(spec, n_private, units, 1)
    plan.noise_multiplier = sigma
    module, opt, _, _ = dpsgd.make_private(model, opt, data, plan, spec)
    public = mode == "bk_public"

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        with module.public_rows(len(x) // 2, fake_policy()) if public else contextlib.nullcontext():
            backward(case, module, x, y)
        if gs_mode != "bk":
            merge_grad_samples(module, len(x), case.rows_per_unit)
        opt.step()
        opt.zero_grad(set_to_none=True)  # free per-sample buffers between steps (memory)

    if mode == "hooks_stock":
        from opacus.grad_sample import grad_sample_module as gsm

        def stock(x, y):
            gsm.create_or_accumulate_grad_sample = dpsgd._opacus_store
            try:
                step(x, y)
            finally:
                gsm.create_or_accumulate_grad_sample = dpsgd._store_grad_sample

        return stock, opt
    return step, opt


def backward(case: Case, module, x, y) -> None:
    """As the training loops do: the GAN's D step whole (GANSynthesizer.private_loss), VAE and
    diffusion batches through dpsgd.backward (chunks of examples: bounded memory)."""
    if case.public_from is not None:
        case.loss(module, x, y).backward()
    else:
        dpsgd.backward(module, case.loss, x, y)


def _ghost(case, model, opt, sigma, n_private, units):
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(torch.zeros(n_private, 1)), batch_size=units)
    engine = PrivacyEngine(accountant="prv", secure_mode=False)
    module, opt, crit, _ = engine.make_private(
        module=model,
        optimizer=opt,
        data_loader=loader,
        noise_multiplier=sigma,
        max_grad_norm=1.0,
        poisson_sampling=True,
        grad_sample_mode="ghost",
        criterion=torch.nn.BCEWithLogitsLoss(),
    )

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        crit(module(x, y), real_then_fake(len(x))).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, opt


def applied_gradient(case: Case, mode: str, x, y, n_private: int) -> torch.Tensor:
    """The flattened gradient the optimizer would apply with noise 0 (for the exactness check)."""
    step, opt = build(case, mode, 0.0, n_private)
    inner = getattr(opt, "original_optimizer", opt)
    grads = {}
    inner.step = lambda *a, **k: grads.update(
        g=torch.cat([p.grad.flatten() for p in inner.param_groups[0]["params"]])
    )
    torch.manual_seed(7)  # the same random draws (VAE latents, diffusion noise) as the reference
    step(x, y)
    return grads["g"]


def reference(case: Case, x, y, n_private: int, public: str | None) -> torch.Tensor:
    """Independent of Opacus and of privsynth.privacy: one forward (seeded as above), then one
    backward per example of the mean of its rows' losses; each example's gradient is clipped to
    C = 1 and summed; divided by the expected batch. ``public`` (GAN): the fake rows' gradients
    are summed unclipped ("none"), that sum scaled to norm <= fakes x C ("total")."""
    model = case.build()
    params = list(model.parameters())
    torch.manual_seed(7)
    losses = case.row_loss(model, x, y)
    k = case.rows_per_unit
    per_unit = losses.view(-1, k).mean(1)
    units = len(per_unit)
    n_clip = units // 2 if public else units
    private, fakes = torch.zeros(sum(p.numel() for p in params)), None
    for i in range(units):
        g = torch.autograd.grad(per_unit[i], params, retain_graph=True, allow_unused=True)
        g = torch.cat(
            [
                (torch.zeros_like(p) if gi is None else gi).flatten()
                for gi, p in zip(g, params, strict=True)
            ]
        )
        if i < n_clip:
            private += g * min(1.0, 1.0 / (g.norm().item() + 1e-6))
        else:
            fakes = g if fakes is None else fakes + g
    if fakes is not None and public == "total":
        fakes = fakes * min(1.0, (units - n_clip) / (fakes.norm().item() + 1e-6))
    total = private if fakes is None else private + fakes
    expected = int(n_private / math.ceil(n_private / (case.public_from or len(case.x))))
    return total / expected


def memory_probe(method: str, mode: str, args) -> dict:
    """Peak resident memory of two steps of (method, mode), in this (fresh) process."""
    case = make_case(method, args.size, args.batch[method], args.width)
    step = build(case, mode, 1.0, args.n)[0]
    before = _status_mb("VmRSS")
    for _ in range(2):
        step(case.x, case.y)
    # VmHWM, not getrusage's ru_maxrss: Linux keeps ru_maxrss across fork + exec, so a probe
    # started by a big parent would report the parent's peak for every mode.
    peak = _status_mb("VmHWM")
    return {"peak_rss_mb": round(peak, 1), "step_peak_mb": round(peak - before, 1)}


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure_memory(method: str, mode: str, argv: list[str]) -> dict:
    cmd = [sys.executable, __file__, *argv, "--memory-probe", f"{method}:{mode}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if done.returncode:
        return {"memory_error": done.stderr.strip().splitlines()[-1][:200]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_method(method: str, args, argv: list[str]) -> dict:
    case = make_case(method, args.size, args.batch[method], args.width)
    modes = [m for m in args.modes if not (m == "bk_public" and case.public_from is None)]
    steppers, errors = {}, {}
    for mode in ("none", *modes):
        try:
            step = build(case, mode, 1.0, args.n)[0]
            step(case.x, case.y)  # warm-up (and: does this mode run at all?)
            steppers[mode] = step
        except Exception as e:  # record why a mode cannot run with these layers
            msg = str(e).splitlines()[0][:300].split(", tensor(")[0]
            errors[mode] = f"{type(e).__name__}: {msg}"
    xs, ys = subset(case, args.check_units)
    refs = {False: reference(case, xs, ys, args.n, None)}
    if case.public_from is not None:
        refs[True] = reference(case, xs, ys, args.n, fake_policy())
    exact = {}
    for mode in steppers:
        if mode == "none":
            continue
        ref = refs[mode == "bk_public"]
        diff = (applied_gradient(case, mode, xs, ys, args.n) - ref).abs().max().item()
        exact[mode] = {
            "max_abs_diff_vs_reference": diff,
            "exact": diff <= 1e-4 * ref.abs().max().item(),
        }
    times: dict[str, list[float]] = {m: [] for m in steppers}
    cpu: dict[str, list[float]] = {m: [] for m in steppers}
    for _ in range(args.rounds):
        for mode, step in steppers.items():
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                step(case.x, case.y)
            times[mode].append((time.perf_counter() - t0) / args.steps)
            cpu[mode].append((time.process_time() - c0) / args.steps)
    med = {m: statistics.median(v) for m, v in times.items()}
    med_cpu = {m: statistics.median(v) for m, v in cpu.items()}
    result = {
        m: {
            "step_seconds": med[m],
            "ratio_to_non_dp": med[m] / med["none"],
            "step_cpu_seconds": med_cpu[m],
            "cpu_ratio_to_non_dp": med_cpu[m] / med_cpu["none"],
            **exact.get(m, {}),
        }
        for m in med
    }
    if not args.no_memory:
        for m in result:
            result[m].update(measure_memory(method, m, argv))
    ok = [m for m in result if m != "none" and result[m].get("exact")]
    fastest = min(ok, key=lambda m: med[m]) if ok else None
    default = dpsgd_default_mode(case.public_from is not None)
    return {
        "what": case.what,
        "rows_per_step": len(case.x) * case.rows_per_unit,
        "units_per_step": len(case.x) // (2 if case.public_from else 1),
        "fake_rows_policy": fake_policy() if case.public_from else None,
        "modes": result,
        "errors": errors,
        "fastest_exact_dp_mode": fastest,
        "default_mode": default,
        "default_ratio": result.get(default, {}).get("ratio_to_non_dp"),
        "default_cpu_ratio": result.get(default, {}).get("cpu_ratio_to_non_dp"),
    }


def fake_policy() -> str:
    """How bk_public treats the GAN's fakes: the training default if it skips their norms."""
    return dpsgd.FAKE_ROWS if dpsgd.FAKE_ROWS != "clip" else "none"


def dpsgd_default_mode(gan: bool = False) -> str:
    """The mode training uses by default (for the GAN: with its default fake-row policy)."""
    mode = PrivacySpec().grad_sample_mode
    return "bk_public" if gan and mode == "bk" and dpsgd.FAKE_ROWS != "clip" else mode


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=["dpgan", "dpvae", "dpdiffusion"])
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--width", type=int, default=32, help="the methods' default width")
    ap.add_argument(
        "--batch",
        nargs="*",
        default=[],
        metavar="METHOD=N",
        help="private examples per step (default dpgan=256 (+256 fakes), dpvae=128, "
        "dpdiffusion=64)",
    )
    ap.add_argument("--n", type=int, default=8000, help="private dataset size (sets q)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per mode per round")
    ap.add_argument("--check-units", type=int, default=16, help="examples in the exactness check")
    ap.add_argument("--modes", nargs="+", default=list(MODES))
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the issue's setting)")
    ap.add_argument("--no-memory", action="store_true", help="skip the per-mode memory probes")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds")
    ap.add_argument("--out", default="bench/results/speed_dp.json")
    ap.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    ap.add_argument(
        "--memory-only",
        action="store_true",
        help="re-measure only the memory of the modes in an existing --out file",
    )
    args = ap.parse_args(argv)
    batch = {"dpgan": 256, "dpvae": 128, "dpdiffusion": 64}
    batch.update({k: int(v) for k, v in (b.split("=") for b in args.batch)})
    if args.smoke:
        args.size, args.width, args.n, args.rounds, args.steps = 8, 8, 64, 1, 1
        batch = dict.fromkeys(batch, 8)
        args.check_units, args.no_memory = 4, True
    args.batch = batch
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    if args.memory_probe:
        method, mode = args.memory_probe.split(":")
        print(json.dumps(memory_probe(method, mode, args)))
        return 0
    if args.memory_only:  # re-measure the memory of an existing result's modes only
        result = json.loads(Path(args.out).read_text())
        for method in args.methods:
            for mode, row in result["methods"][method]["modes"].items():
                row.update(measure_memory(method, mode, [a for a in argv if a != "--memory-only"]))
        write_json(Path(args.out), result)
        print(
            json.dumps(
                {
                    m: {k: v.get("step_peak_mb") for k, v in r["modes"].items()}
                    for m, r in result["methods"].items()
                }
            )
        )
        return 0
    t0, load_before = time.time(), os.getloadavg()
    methods = {m: bench_method(m, args, argv) for m in args.methods}
    gan = methods.get("dpgan", {})
    result = {
        "what": "one private step (forward, loss, backward, optimizer step) per method and mode",
        "image": f"1x{args.size}x{args.size}",
        "width": args.width,
        "n_private": args.n,
        "batch": args.batch,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "default_mode": dpsgd_default_mode(),
        "gan_fake_rows": dpsgd.FAKE_ROWS,
        "default_ratio": gan.get("default_ratio"),
        "default_cpu_ratio": gan.get("default_cpu_ratio"),
        # 1/5/15-minute load averages: on a shared machine the wall ratio is read next to them
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "cpus": os.cpu_count(),
        "methods": methods,
        "seconds": round(time.time() - t0, 1),
        "smoke": args.smoke,
    }
    write_json(Path(args.out), result)
    print(
        json.dumps(
            {
                m: {k: round(v["ratio_to_non_dp"], 2) for k, v in r["modes"].items()}
                for m, r in methods.items()
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
