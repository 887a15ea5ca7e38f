import privsynth


def test_train_and_sample_roundtrip(tmp_path, tiny_dataset, fast_gan):
    """The calibrated path end to end: epsilon target in, epsilon within 1% of it out."""
    run = privsynth.train(
        tiny_dataset, "dpgan", tmp_path / "run", epsilon=5, config=fast_gan, progress=False
    )
    assert run.card["status"] == "complete"
    assert 0.99 * 5 <= run.epsilon <= 5 * 1.0001
    images, labels = run.sample(12, labels=[0, 1, 2] * 4)
    assert images.shape == (12, 1, 8, 8) and images.dtype.name == "uint8"
    assert list(labels) == [0, 1, 2] * 4
