import numpy as np

from privsynth.evaluate.features import feature_model, features


def test_feature_extractor_is_cached_by_fingerprint(tmp_path, tiny_dataset):
    m1, info1 = feature_model(tiny_dataset, tmp_path, passes=600)
    m2, info2 = feature_model(tiny_dataset, tmp_path, passes=600)
    assert not info1["cached"] and info2["cached"]
    assert "reference_fingerprint" not in info2  # a hash of the images would be an oracle
    f1, f2 = features(m1, tiny_dataset.images), features(m2, tiny_dataset.images)
    assert f1.shape == (len(tiny_dataset), 128) and np.allclose(f1, f2)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".safetensors"]
