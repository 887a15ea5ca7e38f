import numpy as np
import pytest

from privsynth.errors import ConfigError
from privsynth.federated import encrypted


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return encrypted.make_keys(tmp_path_factory.mktemp("keys"))


def test_ckks_fedavg_matches_plaintext_fedavg(keys):
    rng = np.random.default_rng(0)
    updates = [rng.normal(0, 0.1, 70_000) for _ in range(3)]  # > one chunk
    loss = encrypted.precision_loss(updates, [120, 300, 57], *keys)
    assert loss["n_values"] == 70_000
    assert loss["max_abs_error"] < 1e-5


def test_server_context_cannot_decrypt(keys):
    secret_path, public_path = keys
    secret = encrypted.load_context(secret_path, need_secret=True)
    public = encrypted.load_context(public_path, need_secret=False)
    assert not public.is_private()
    chunks = encrypted.encrypt(secret, np.arange(5.0))
    summed = encrypted.add(public, [chunks, chunks])
    np.testing.assert_allclose(encrypted.decrypt(secret, summed)[:5], 2 * np.arange(5.0), atol=1e-5)
    with pytest.raises(ValueError, match="secret_key"):
        encrypted.decrypt(public, summed)
    with pytest.raises(ConfigError, match="secret key"):
        encrypted.load_context(secret_path, need_secret=False)
    with pytest.raises(ConfigError, match="no secret key"):
        encrypted.load_context(public_path, need_secret=True)


def test_pack_roundtrip():
    chunks = [b"abc", b"", b"defgh"]
    assert encrypted.unpack(*encrypted.pack(chunks)) == chunks
