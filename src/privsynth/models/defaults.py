"""Per-method defaults by dataset size, chosen without looking at anyone's private data.

Where each number comes from (also in docs/zoo.md):
- dpgan: "Private GANs, revisited" (Bie, Kamath, Zhang 2023) — many D steps per G step, large
  batches; scaled down to CPU budgets.
- dpvae: standard conditional-VAE settings (Kingma & Welling 2014; Sohn et al. 2015), batch/epochs
  set like the DP-GAN's; EMA/temperature checked on the public sklearn digits only.
- dpdiffusion: DPDM's MNIST configs (nv-tlabs/DPDM configs/mnist_28/train_eps_*.yaml: EDM loss,
  p_mean -1.2, p_std 1.2, noise multiplicity 32, batch 4096, lr 3e-4, EMA 0.999, 50 DDIM steps),
  scaled down (K 4, batch 256-512, lr 1e-3, 20 steps) so a run fits minutes on CPU.
- dpmerf: DP-MERF (Harder et al. 2021) uses thousands of random features and a length scale on
  the order of the data's typical distance; ours is a fraction of sqrt(pixels) (a property of the
  image size, not of the private pixels), picked on the public sklearn digits.
- dpkernel: DP-Kernel's (Functional RDP, NeurIPS 2023) sum of RBF bandwidths, on the full image
  and on 2x / 4x pooled copies; 300 frequencies per kernel keep the one release's noise small at
  epsilon 1 (docs/zoo.md has the MNIST-10k figures that chose it).
"Small" datasets (< 3,000 training images, e.g. digits) get fewer epochs per cell so a 20-cell sweep
fits a CPU; larger ones get more steps (the noise per step shrinks with N at fixed epsilon).
"""

from __future__ import annotations

import math

SMALL = 3000

_DEFAULTS: dict[str, dict[str, dict]] = {
    # Small = GANConfig's own defaults (tuned on public digits, docs/gan.md); large = fewer
    # epochs so 8k 28x28 images fit ~25 CPU-minutes, and a generator of half the width: at 28x28
    # its forward pass over each D step's fakes cost more than the DP step itself (106 -> 43 ms
    # per 64 fakes, one core). n_d 2 and the auxiliary classifier: at these budgets the generator
    # needs the updates (n_d 5 -> 2: 29.5% -> 64.2% TSTR at eps 10) and the class signal; but
    # too many generator updates collapse each class (n_d 1 at 30 epochs, and n_d 2 at 60
    # epochs: recall 0.00 / 0.07), so 30 epochs. MNIST-10k study in docs/gan.md.
    "dpgan": {
        "small": {"batch_size": 64, "epochs": 250, "n_d": 5},
        "large": {"batch_size": 64, "epochs": 30, "n_d": 2, "g_width": 16, "aux": 1.0},
    },
    # Large: 40 epochs (1 250 DP steps; 10 below eps 3.5, _BY_EPSILON). With 10 epochs the
    # MNIST-10k DP-VAE drew speckled, broken strokes at eps 10 (73.9% TSTR, FD 1157, recall
    # 0.06); with 40: 77.0%, FD 801, recall 0.19, in 18 CPU-minutes (docs/zoo.md, "DP-VAE epochs").
    "dpvae": {
        "small": {"batch_size": 128, "epochs": 30},
        "large": {"batch_size": 256, "epochs": 40},
    },
    "dpdiffusion": {
        "small": {"batch_size": 128, "epochs": 20, "width": 32, "multiplicity": 4},
        "large": {"batch_size": 256, "epochs": 5, "width": 32, "multiplicity": 4},
    },
    # One-shot methods: the generator's steps are post-processing and stop early once the
    # public loss against the release stops improving; `steps` is only the ceiling. On large
    # data the ceiling is the stop (patience = steps): stopping at patience 600 cut MNIST-10k
    # eps-10 runs at 2 400-3 500 steps with a Fréchet distance of 47 and 27, where the full
    # 4 000 steps (10 CPU-minutes) reached 15.2 (bench/results/dpmerf_rerun/). The batch loss is
    # ~95% minibatch variance, so a 0.5% relative gain is hard to see even while FD still drops.
    "dpmerf": {"small": {"steps": 2000}, "large": {"steps": 4000, "patience": 4000}},
    "dpkernel": {"small": {"steps": 2000}, "large": {"steps": 4000, "patience": 4000}},
    # dpmepf trains the same generator against the same kind of release: dpmerf's ceiling
    # (carried over, not tuned for dpmepf)
    "dpmepf": {"small": {"steps": 2000}, "large": {"steps": 4000, "patience": 4000}},
}


# The warm-up a private run gets when the user names none (no --warmup, --public-data or warm-up
# option), by the requested epsilon: the first row whose bound the epsilon is below. dpgan on
# large data: without a warm-up the MNIST-10k DP-GAN draws digits of the wrong class at CPU
# budgets (64.2% TSTR at eps 10; 83.3% with central images, recall 0.65; docs/gan.md); 5 warm-up
# epochs is what that study ran. From eps 3.5 the DP-MERF release is the better start (eps 10,
# two seeds: 89.7% / 89.6% LeNet, FD 9.7 / 11.5, against 81.3% and FD 21.0 over four central
# runs; eps 5: 85.6%, FD 15.7, against 81.7%, FD 23.7), at the method's own warm-up epochs and
# ~13-16 more CPU-minutes; at eps 1 its release (eps 0.3 alone) is mostly noise and the run fell
# to 43.4% against central's 66.2%. The bound is dpgan's epochs bound between eps 2 and 5; eps 2
# is not measured (docs/gan.md, "sixth round"). Either release spends the default share (0.3) of
# epsilon, composed with DP-SGD in one accountant, so the user's epsilon is unchanged.
_WARMUPS: dict[str, dict[str, list[tuple[float, dict]]]] = {
    "dpgan": {"large": [(3.5, {"kind": "central", "epochs": 5}), (math.inf, {"kind": "merf"})]},
}


def recommended_warmup(method: str, n_train: int, epsilon: float) -> tuple[str, dict]:
    """(kind, warm-up options) for a private run of ``method`` on ``n_train`` images at the
    target ``epsilon``."""
    from .registry import private_name

    row = dict(_first_below(_WARMUPS, private_name(method), n_train, epsilon) or {"kind": "none"})
    return row.pop("kind"), row


def _first_below(table: dict, method: str, n_train: int, epsilon: float) -> dict | None:
    """The row of ``table`` for ``method`` and ``n_train``'s size whose bound ``epsilon`` is
    below first (None: no row)."""
    size = "small" if n_train < SMALL else "large"
    return next(
        (row for bound, row in table.get(method, {}).get(size, []) if epsilon < bound), None
    )


# Overrides by the requested epsilon (public: the user states it), first row whose bound the
# epsilon is below. dpgan on large data: at high noise the generator drifts into per-class
# collapse as its updates accumulate (MNIST-10k, 30 epochs: recall 0.03 at eps 1, 0.22 at eps 2),
# while a shorter run (a smaller noise multiplier too) keeps the variety (eps 1, 10 epochs:
# recall 0.41, TSTR 64.7%; docs/gan.md, "third round"). At eps 5, 25 epochs edged out 20 and
# 30 (81.7% vs 79.8% / 79.5%, one seed each); at eps 10, 30 epochs beat 15-60 ("fourth round").
# The 7.5 bound sits between the two measured points. From 7.5 (30 epochs) dpgan mixes five EMA
# snapshots (the last 40% of training; free post-processing): a run that drifts into repeated
# shapes late is diluted by its earlier generators (eps 10, four runs, the same weights scored
# both ways: recall 0.60 -> 0.69, LeNet TSTR 78.7% -> 81.3%, worst run 72.0% -> 80.5%). At eps
# 1 / 2 / 5 and without DP (one run each) it did not raise the TSTR (the twin lost 3.7 points),
# so those keep the final generator alone (docs/gan.md, "fifth round").
# dpvae on large data: 40 epochs help at eps 10 but hurt below: at eps 1 / 2 the longer run's
# larger noise multiplier leaves only speckle (60.7% / 68.8% TSTR against 66.2% / 74.6% at 10
# epochs; docs/zoo.md, "DP-VAE epochs").
# dpmerf: a witness floor of 0.4 below eps 3 (a sampling-time knob, post-processing). At eps 1 the
# generator fits the release's noise and about a sixth of its draws are noise blobs whose witness
# sits at 0.11-0.37x the class median, over the 0.2 floor; 0.4 redraws them (MNIST-10k eps-1 cell,
# the same weights scored both ways: FD 191 -> 106, precision 0.79 -> 0.96, for TSTR 89.1% ->
# 88.0% and recall 0.44 -> 0.37: fewer odd images, a little less variety). At eps 2 it is neutral
# (FD 28.2 -> 28.9, TSTR 93.3% -> 93.2%); at eps 10 it cost Fréchet (27.1 -> 30.7), so from 3 up
# the floor stays 0.2. On digits at eps 1 no draw falls under it (bench/results/dpmerf_rerun/).
# dpmerf on small data below eps 3 also stops at the noise floor (`stop_at_noise`: the loss the
# private data itself scores against the noisy release; post-processing). Digits at eps 1 (1 257
# images) reached the floor after 178-274 of its 2 000 steps, then fitted the noise: speckle.
# Stopped there, validation split, 3 seeds against 3: LeNet TSTR 89.9 -> 90.7%, recall 0.15 ->
# 0.54, precision 0.57 -> 0.77, FD 3.3 -> 1.9, detection AUC 0.99 -> 0.97, under half the CPU
# (bench/results/suite/README.md, "Stopping at the noise floor").
_BY_EPSILON: dict[str, dict[str, list[tuple[float, dict]]]] = {
    "dpgan": {
        "large": [
            (1.5, {"epochs": 10}),
            (3.5, {"epochs": 15}),
            (7.5, {"epochs": 25}),
            (math.inf, {"snapshots": 5}),
        ]
    },
    "dpvae": {"large": [(3.5, {"epochs": 10})]},
    "dpmerf": {
        "small": [(3.0, {"witness_floor": 0.4, "stop_at_noise": True})],
        "large": [(3.0, {"witness_floor": 0.4})],
    },
    "dpmepf": {size: [(3.0, {"witness_floor": 0.4})] for size in ("small", "large")},
}


# Colour images (3 channels): dpgan's generator pads its convolutions by reflection. With zero
# padding its CIFAR-10-5k images (eps 10 and 1) sat in a bright frame; with reflection (and the
# MERF warm-up's generator padded alike) the frame is gone and, at eps 10, seed 0: FD 1.44 ->
# 1.19, precision 0.80 -> 0.92, coverage 0.34 -> 0.51, TSTR LeNet 26.6 -> 28.6%. dpmerf lost
# with reflection at eps 10 (no frame there; TSTR 36.8 -> 32.2%, FD 3.26 -> 3.78, precision
# 0.42 -> 0.23) and at eps 1, where it drew a frame, changed little (TSTR 27.6 -> 28.0%, FD
# 4.89 -> 4.40, precision 0.43 -> 0.28; one seed), so it keeps zero padding, as grey sets do
# (bench/results/suite/README.md).
_COLOUR = {"dpgan": {"g_padding": "reflect"}}

# Grey images (1 channel), by size and epsilon as `_BY_EPSILON`: dpmerf samples through a
# contrast curve (`contrast`, tanh(c x) / tanh(c); post-processing). Below eps 3 its generator
# draws soft mid-grey strokes where the data has ink or paper, which a real-vs-synthetic
# classifier picks up. Digits validation split, the same weights sampled both ways, c = 1: at
# eps 1 (3 seeds) detection AUC 0.97 -> 0.89, recall 0.55 -> 0.72, FD 1.92 -> 1.33, LeNet TSTR
# 90.7 -> 91.6%; at eps 10 (2 seeds) neutral (AUC 0.68 -> 0.68, TSTR 98.9 -> 98.7%), so off
# there (bench/results/suite/README.md, "A contrast curve at sampling"). Not on colour, whose
# pixels are not ink on paper, and not yet measured by the suite on large grey sets.
# With the curve, a higher witness floor (0.8 of the class median) lowered FD and raised
# precision for some recall, but left detection AUC where it was on freshly trained cells (0.893
# -> 0.888, 3 seeds): the floor stays 0.4 (bench/results/suite/README.md, "A higher witness floor").
_GREY = {"dpmerf": {"small": [(3.0, {"contrast": 1.0})]}}


def recommended_config(
    method: str, n_train: int, epsilon: float | None = None, channels: int = 1
) -> dict:
    """Defaults for ``method`` (private name or its non-private twin) on ``n_train`` images of
    ``channels`` channels; ``epsilon`` (the private run's target; None or inf = no DP / not
    calibrated: no row is below inf) may refine them."""
    from .registry import private_name

    size = "small" if n_train < SMALL else "large"
    config = dict(_DEFAULTS.get(private_name(method), {}).get(size, {}))
    if channels > 1:
        config.update(_COLOUR.get(private_name(method), {}))
    if epsilon is not None and method == private_name(method):
        config.update(_first_below(_BY_EPSILON, method, n_train, epsilon) or {})
        if channels == 1:
            config.update(_first_below(_GREY, method, n_train, epsilon) or {})
    return config


# Config fields that act only when sampling: the trained weights do not depend on them
# (the witness floor's share, reported on the card, is a count of the trained generator's draws).
SAMPLING_FIELDS = ("contrast", "witness_floor")

# Config fields that name a user's input file (dpmepf's feature network), not a tuned setting.
INPUT_FIELDS = ("features",)


def changed_settings(
    method: str, n_train: int, epsilon: float, config: dict, channels: int = 1
) -> dict:
    """The fields of ``config`` that differ from ``recommended_config`` (input files aside):
    what tells a tuning trial from the method's default in a benchmark table. A field either
    side leaves out is the method's built-in default, so a row written before a default was
    added reads as what it ran (e.g. ``g_padding=zeros`` on colour)."""
    from dataclasses import fields

    from .registry import method_class

    built_in = {f.name: f.default for f in fields(method_class(method).config_class)}
    default = recommended_config(method, n_train, epsilon, channels)
    return {
        k: config.get(k, built_in.get(k))
        for k in sorted(set(config) | set(default))
        if k not in INPUT_FIELDS
        and default.get(k, built_in.get(k)) != config.get(k, built_in.get(k))
    }
