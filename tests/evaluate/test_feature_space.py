"""The fidelity feature space sees colour: blurred colour noise reads far from real images.

Fixtures are procedural and tiny (16x16 RGB, a few hundred): "real" images are shapes with hard
edges and textures on plain or gradient backgrounds, labelled by shape; the blob set is smooth,
saturated colour noise with no object and no edge in it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from privsynth.data import ImageDataset
from privsynth.evaluate import fidelity
from privsynth.evaluate.feature_space import (
    FeatureSpace,
    colour_edge_features,
    default_space,
    fitted_space,
    random_conv_features,
)
from privsynth.evaluate.features import feature_model

SIZE = 16


def shapes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """N x 3 x 16 x 16 uint8 'real' images: 4 classes (disc, square, stripes, checker) drawn in
    natural-looking colours (a grey level plus a little chroma) over a textured background
    (a gradient plus fine grain), with a second, smaller shape as clutter."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]

    def colour():
        return np.clip(rng.uniform(0.15, 0.85) + rng.normal(0, 0.12, 3), 0, 1)[:, None, None]

    images = np.zeros((n, 3, SIZE, SIZE), np.float64)
    labels = rng.integers(0, 4, n)
    for i, k in enumerate(labels):
        slope = rng.uniform(-0.3, 0.3, 2)
        shade = 1 + slope[0] * (yy / SIZE - 0.5) + slope[1] * (xx / SIZE - 0.5)
        img = colour() * shade[None] + rng.normal(0, 0.06, (1, SIZE, SIZE))
        cy, cx, r = rng.integers(5, 11), rng.integers(5, 11), rng.integers(3, 6)
        if k == 0:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        elif k == 1:
            mask = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
        elif k == 2:
            mask = ((xx + rng.integers(0, 4)) // 2) % 2 == 0
        else:
            mask = ((xx // 3) + (yy // 3)) % 2 == 0
        img = np.where(mask[None], colour(), img)
        oy, ox = rng.integers(0, SIZE - 3, 2)
        img[:, oy : oy + 3, ox : ox + 3] = colour()
        images[i] = img + rng.normal(0, 0.03, img.shape)
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8), labels.astype(np.int64)


def blurred_colour_noise(n: int, seed: int) -> np.ndarray:
    """Smooth random colour fields stretched to full saturation: blobs, no objects."""
    g = torch.Generator().manual_seed(seed)
    x = F.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=(SIZE, SIZE), mode="bicubic")
    lo, hi = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
    return (((x - lo) / (hi - lo + 1e-6)).clamp(0, 1) * 255).round().to(torch.uint8).numpy()


@pytest.fixture(scope="module")
def colour_sets(tmp_path_factory):
    ref_x, ref_y = shapes(300, seed=1)
    ref = ImageDataset(ref_x, ref_y, ["disc", "square", "stripes", "checker"], "shapes")
    extractor, _ = feature_model(ref, tmp_path_factory.mktemp("cache"), passes=3000)
    return extractor, shapes(300, seed=2)[0], shapes(300, seed=3)[0], blurred_colour_noise(300, 4)


def test_colour_space_reads_blurred_colour_noise_as_far_from_real(colour_sets):
    extractor, real, real2, blobs = colour_sets
    space = fitted_space(extractor, real)
    assert space.info()["name"] == "lenet+colour" == default_space(3)
    f_real = space(real)
    again = fidelity.prdc_scores(f_real, space(real2))
    noise = fidelity.prdc_scores(f_real, space(blobs))
    assert again["recall"] > 0.7 and again["precision"] > 0.7
    assert noise["recall"] < 0.3 and noise["precision"] < 0.3
    assert fidelity.frechet(f_real, space(blobs)) > 5 * fidelity.frechet(f_real, space(real2))


def test_lenet_only_space_let_colour_noise_pass(colour_sets):
    """The bug, on the old space (LeNet features alone) and the same sets: every blob lands
    inside the real images' k-NN balls (precision measured 1.00, density 1.01; the colour space
    gives 0.01 / 0.00), i.e. featureless colour noise passed for real images."""
    extractor, real, real2, blobs = colour_sets
    old = FeatureSpace(extractor, "lenet").fit(real)
    noise = fidelity.prdc_scores(old(real), old(blobs))
    new = fitted_space(extractor, real)
    assert noise["precision"] > 0.3
    assert noise["precision"] > 3 * fidelity.prdc_scores(new(real), new(blobs))["precision"]


def test_feature_blocks_are_fixed_and_standardised(colour_sets):
    extractor, real, _, blobs = colour_sets
    a, b = random_conv_features(real[:20], seed=0), random_conv_features(real[:20], seed=0)
    assert np.array_equal(a, b) and a.shape == (20, 384)
    assert not np.array_equal(a, random_conv_features(real[:20], seed=1))
    assert np.isfinite(colour_edge_features(blobs)).all()
    space = fitted_space(extractor, real)
    f = space(real)
    # each block weighs the same: unit mean squared norm on the data it was fitted on
    widths = [128, 384, colour_edge_features(real[:1]).shape[1]]
    edges = np.cumsum([0, *widths])
    per_block = [
        ((f[:, lo:hi]) ** 2).sum(1).mean() for lo, hi in zip(edges[:-1], edges[1:], strict=True)
    ]
    assert np.allclose(per_block, 1.0)


def test_grey_space_is_the_lenet_space_bit_for_bit(tiny_dataset, tmp_path):
    from privsynth.evaluate.features import features

    extractor, _ = feature_model(tiny_dataset, tmp_path, passes=300)
    space = fitted_space(extractor, tiny_dataset.images)
    assert default_space(1) == "lenet" and space.info()["name"] == "lenet"
    assert np.array_equal(space(tiny_dataset.images), features(extractor, tiny_dataset.images))


def test_grey_default_stays_lenet_as_colour_blocks_read_real_digits_as_less_real(
    digits_parts, tmp_path
):
    """Why grey keeps the LeNet space: on digits the extra blocks make a second real sample
    read less real (400 vs 400 digits measured: recall 0.99 -> 0.955, precision 0.985 ->
    0.943), i.e. worse at telling real from real, for no colour to see."""
    (ref_x, ref_y), (a, _), (b, _), _ = digits_parts
    ref = ImageDataset(ref_x, ref_y, [str(i) for i in range(10)], "digits-ref")
    extractor, _ = feature_model(ref, tmp_path, passes=3000)
    scores = {}
    for name in ("lenet", "lenet+colour"):
        space = FeatureSpace(extractor, name).fit(a)
        scores[name] = fidelity.prdc_scores(space(a), space(b))
    lenet, colour = scores["lenet"], scores["lenet+colour"]
    assert lenet["recall"] + lenet["precision"] > colour["recall"] + colour["precision"]
    assert default_space(1) == "lenet"


def test_evaluate_reads_colour_fidelity_in_the_colour_space_and_says_so(tmp_path):
    """`evaluate` on colour data: FD / PRDC in the colour space, named in metrics.json and the
    report; the blob set reads far from real there, next to a real floor that reads real."""
    import json

    from privsynth.evaluate import evaluate

    x, y = shapes(240, seed=5)
    data = ImageDataset(x, y, ["disc", "square", "stripes", "checker"], "shapes")
    blobs = blurred_colour_noise(80, seed=6)
    np.savez(tmp_path / "blobs.npz", images=blobs, labels=np.arange(80) % 4)
    result = evaluate(
        synthetic=str(tmp_path / "blobs.npz"),
        data=data,
        out=tmp_path / "ev",
        n_synthetic=80,
        max_members=20,
        cache_dir=str(tmp_path / "cache"),
        classifier_passes=400,
        classifiers=("lenet",),
        progress=False,
    )
    saved = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert saved["feature_space"]["name"] == "lenet+colour"
    assert result["real_floor"]["prdc"]["recall"] > 0.7
    assert result["models"][0]["fidelity"]["prdc"]["recall"] < 0.3
    assert "lenet+colour" in (tmp_path / "ev" / "report.html").read_text()
