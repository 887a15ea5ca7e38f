"""bench/suite_probe.py's variants: settings join with '+', and `confident=SHARE` keeps the
surest share of each class, dropping ambiguous draws first."""

from __future__ import annotations

import numpy as np
import pytest

from .test_bench_smoke import load


def test_a_variant_joins_post_processing_settings_and_a_kept_share():
    probe = load("suite_probe")
    post, settings, share = probe.parse_variant("despeckle+contrast=1.0+witness_floor=0.8")
    assert post is probe.despeckle and settings == {"contrast": 1.0, "witness_floor": 0.8}
    assert share == 1.0
    assert probe.parse_variant("confident=0.7")[1:] == ({}, 0.7)
    with pytest.raises(SystemExit, match="unknown variant part 'blur'"):
        probe.parse_variant("blur+contrast=1.0")


def test_confident_keeps_each_class_share_and_drops_the_ambiguous_draws_first():
    probe = load("suite_probe")
    rng = np.random.default_rng(0)
    n = 200  # per class: 160 clear draws (ink left or right) and 40 half-way blends
    left = np.zeros((1, 4, 4))
    left[..., :2] = 255
    right = left[..., ::-1]
    images, labels, blended = [], [], []
    for c, proto in enumerate((left, right)):
        for i in range(n):
            mix = 0.5 if i < 40 else 0.0
            other = right if c == 0 else left
            image = (1 - mix) * proto + mix * other + rng.normal(0, 20, proto.shape)
            images.append(np.clip(image, 0, 255))
            labels.append(c)
            blended.append(i < 40)
    images = np.stack(images).astype(np.uint8)
    labels, blended = np.array(labels), np.array(blended)
    kept, kept_labels = probe.keep_confident(images, labels, 0.8, seed=0)
    assert np.bincount(kept_labels).tolist() == [160, 160]
    # the kept draws are the clear ones: none of the 80 blends survives
    clear = {images[i].tobytes() for i in np.flatnonzero(~blended)}
    assert all(image.tobytes() in clear for image in kept)
