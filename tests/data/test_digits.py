from privsynth.data import load_dataset


def test_digits_embedded():
    data = load_dataset("digits")
    assert data.images.shape == (1797, 1, 8, 8)
    assert data.images.dtype.name == "uint8" and data.images.max() == 255
    assert data.num_classes == 10 and data.class_counts().sum() == 1797


def test_digits_resize_changes_fingerprint():
    small, big = load_dataset("digits"), load_dataset("digits", image_size=16)
    assert big.image_shape == (1, 16, 16)
    assert big.fingerprint != small.fingerprint
