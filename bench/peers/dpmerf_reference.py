"""DP-MERF's reference code (Harder et al., AISTATS 2021; github.com/ParkLabML/DP-MERF) run on the
suite's splits and scored by the suite's own evaluation, so its figures sit next to privsynth's.

The reference is not vendored: pass a checkout with ``--peer-src`` (its ``code_balanced/`` folder
is imported as is). What runs is the reference's own mechanism, loss and generator:
``rff_mmd_approx.get_rff_losses`` (random-Fourier-feature mean embedding of (image, one-hot label),
Gaussian noise of std ``2 * noise_factor / n``), ``models_gen.ConvCondGen`` (28x28) or
``FCCondGen`` (other sizes, the reference's fully connected generator) and its single-release
training loop, with the paper's MNIST settings (d_rff 10 000, rff sigma 105, 5 epochs of
n / 100 steps, Adam lr 0.01 decayed 0.9 per epoch, code 5, hidden 200, channels 16,8, kernels 5,5).

Two things are adapted, both stated in every row:
- data: the suite's private-train split as float pixels in [0, 1] (the reference's
  ``ToTensor``), not torchvision's MNIST (no download here); its ``aux`` module (which imports
  torchvision) is replaced by the one function the loss needs, ``flat_data``.
- noise: the reference picks ``noise_factor`` by hand per epsilon (5.0 for eps 1 at delta 1e-5).
  Here ``noise_factor`` is Opacus' calibration of one Gaussian release (sample rate 1, one step)
  to the row's (epsilon, delta) with the reference's own sensitivity (2/n, replace-one with a
  known n). privsynth's rows account add/remove-one with a DP size release as well, so the peer
  gets the easier accounting.

    python bench/peers/dpmerf_reference.py --peer-src /path/to/DP-MERF --dataset mnist10k \
        --epsilons 10,1 --seeds 0,1,2

Rows go to ``bench/results/peers/dpmerf_reference/<score>/`` with the peer's commit and ours.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import suite  # noqa: E402
import utility  # noqa: E402

PAPER = dict(
    d_rff=10_000,
    rff_sigma="105",
    epochs=5,
    batch_size=100,
    lr=0.01,
    lr_decay=0.9,
    d_code=5,
    gen_spec="200",
    n_channels="16,8",
    kernel_sizes="5,5",
    fc_spec="200,500",
    mmd_type="sphere",
)


def import_reference(peer_src: Path):
    """The reference's modules, with ``aux`` reduced to the function the loss imports."""
    code = peer_src / "code_balanced"
    if not (code / "rff_mmd_approx.py").exists():
        raise SystemExit(f"{code}/rff_mmd_approx.py not found: --peer-src is a DP-MERF checkout")
    aux = types.ModuleType("aux")

    def flat_data(data, labels, device, n_labels=10, add_label=False):
        return data.reshape(data.shape[0], -1)

    aux.flat_data = flat_data
    sys.modules["aux"] = aux
    sys.path.insert(0, str(code))
    import models_gen
    import rff_mmd_approx

    return models_gen, rff_mmd_approx


def noise_factor(epsilon: float, delta: float) -> float:
    """Opacus' noise multiplier for one full-batch Gaussian release at (epsilon, delta)."""
    from opacus.accountants.utils import get_noise_multiplier

    return float(
        get_noise_multiplier(
            target_epsilon=epsilon, target_delta=delta, sample_rate=1.0, steps=1, accountant="prv"
        )
    )


class PeerRun:
    """What `bench/utility.evaluate_cell` needs of a run: ``sample(n, labels, seed)``."""

    def __init__(self, gen, shape: tuple[int, int, int]):
        self.gen, self.shape = gen, shape

    def sample(self, n: int, labels=None, seed: int = 0):
        torch.manual_seed(seed)
        labels = np.asarray(labels)
        self.gen.eval()
        with torch.no_grad():
            code, _ = self.gen.get_code(n, "cpu", labels=torch.as_tensor(labels)[:, None])
            x = self.gen(code).clamp(0, 1).reshape(n, *self.shape)
        return (x.numpy() * 255).round().astype(np.uint8), labels


def train_peer(models_gen, rff, train, k: int, nf: float, seed: int) -> PeerRun:
    torch.manual_seed(seed)
    np.random.seed(seed)  # the reference draws its random features with numpy
    c, h, w = train.images.shape[1:]
    x = torch.as_tensor(train.images, dtype=torch.float32) / 255.0
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, torch.as_tensor(train.labels)),
        batch_size=PAPER["batch_size"],
    )
    d = c * h * w
    if (c, h, w) == (1, 28, 28):
        gen = models_gen.ConvCondGen(
            PAPER["d_code"], PAPER["gen_spec"], k, PAPER["n_channels"], PAPER["kernel_sizes"]
        )
    else:
        gen = models_gen.FCCondGen(PAPER["d_code"], PAPER["fc_spec"], d, k)
    single_release_loss, _, _ = rff.get_rff_losses(
        loader, d, PAPER["d_rff"], PAPER["rff_sigma"], "cpu", k, nf, PAPER["mmd_type"]
    )
    opt = torch.optim.Adam(gen.parameters(), lr=PAPER["lr"])
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=PAPER["lr_decay"])
    n_iter = len(train) // PAPER["batch_size"]
    for _ in range(PAPER["epochs"]):  # the reference's train_single_release, epoch by epoch
        for _ in range(n_iter):
            code, gen_labels = gen.get_code(PAPER["batch_size"], "cpu")
            loss = single_release_loss(gen(code), gen_labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return PeerRun(gen, (c, h, w))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--peer-src", required=True, type=Path, help="a ParkLabML/DP-MERF checkout")
    p.add_argument("--dataset", default="digits", choices=sorted(suite.DATASETS))
    p.add_argument("--epsilons", default="10,1")
    p.add_argument("--seeds", default="0")
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--score", default="validation", choices=["validation"])
    p.add_argument("--results", default=str(ROOT / "bench" / "results"))
    p.add_argument("--out", default=str(ROOT / "runs" / "peers"))
    a = p.parse_args(argv)
    git = suite.git_state(ROOT, (Path(a.results),))
    if git["dirty"]:
        raise SystemExit(f"{ROOT} has uncommitted changes; commit them first")
    peer_commit = (
        subprocess.run(
            ["git", "-C", str(a.peer_src), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        or None
    )
    models_gen, rff = import_reference(a.peer_src)
    dataset = suite.load(a.dataset)
    split = suite.splits(a.dataset, dataset, Path(a.results) / "suite")
    train = dataset.subset(split["train"], name=f"{a.dataset}-train")
    scored = dataset.subset(split[a.score], name=f"{a.dataset}-{a.score}")
    from privsynth.atomic import write_json
    from privsynth.evaluate.utility import DEFAULT_N_SYNTHETIC, DEFAULT_PASSES

    out, rows = Path(a.out), Path(a.results) / "peers" / "dpmerf_reference" / a.score
    for seed in [int(s) for s in a.seeds.split(",")]:
        ref = utility.Reference(
            train,
            scored,
            out / "ref" / f"{a.dataset}-{a.score}-seed{seed}",
            2000,
            DEFAULT_PASSES,
            seed,
        )
        for eps in [float(e) for e in a.epsilons.split(",")]:
            nf = noise_factor(eps, a.delta)
            t = time.time()
            run = train_peer(models_gen, rff, train, train.num_classes, nf, seed)
            wall = time.time() - t
            cell = out / f"{a.dataset}-eps{eps:g}-seed{seed}"
            cell.mkdir(parents=True, exist_ok=True)
            ev = utility.evaluate_cell(run, ref, DEFAULT_N_SYNTHETIC, cell, {}, detect=True)
            trtr = ref.info["trtr"]
            row = {
                "protocol": suite.PROTOCOL,
                "peer": "ParkLabML/DP-MERF code_balanced (single release)",
                "peer_commit": peer_commit,
                "adaptations": ["suite split as [0,1] pixels", "noise_factor from Opacus PRV"],
                "score": a.score,
                "dataset": a.dataset,
                "method": "dpmerf-reference",
                "epsilon": eps,
                "delta": a.delta,
                "noise_factor": nf,
                "seed": seed,
                "split_seed": split["split_seed"],
                "commit": git["commit"],
                "dirty": git["dirty"],
                "config": PAPER,
                "tstr": {c: r["accuracy"] for c, r in ev["tstr"].items()},
                "trtr": {c: r["accuracy"] for c, r in trtr.items()},
                "tstr_over_trtr": {
                    c: ev["tstr"][c]["accuracy"] / trtr[c]["accuracy"] for c in ev["tstr"]
                },
                "detection_auc": ev["detection"]["auc"],
                "fd": ev["fd_lenet"],
                "prdc": ev["prdc"],
                "train_wall_s": wall,
                "command": " ".join(["python", "bench/peers/dpmerf_reference.py", *argv])
                if argv
                else " ".join(sys.argv),
                "created": time.time(),
            }
            write_json(rows / f"{a.dataset}-eps{eps:g}-seed{seed}-{git['commit'][:12]}.json", row)
            print(
                f"{a.dataset} reference DP-MERF eps {eps:g} seed {seed}: TSTR LeNet "
                f"{row['tstr']['lenet']:.1%}, detection AUC {row['detection_auc']:.2f}, "
                f"recall {row['prdc']['recall']:.2f} (train {wall:.0f} s)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
