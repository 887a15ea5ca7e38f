"""One source of truth for the federated run config."""

from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10 (flwr brings tomli)
    import tomli as tomllib

from privsynth.federated.runconfig import DEFAULTS, aggregation_weight, resolve

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_pyproject_app_config_is_the_defaults_table():
    """`flwr run .` reads pyproject; the apps read DEFAULTS: they must be the same table."""
    table = tomllib.loads(PYPROJECT.read_text())["tool"]["flwr"]["app"]["config"]
    assert table == DEFAULTS


def test_client_level_dp_forces_unit_weights_and_max_weight():
    assert resolve({})["max-weight"] == DEFAULTS["max-weight"]
    cfg = resolve({"client-noise": 1.5, "max-weight": 100000.0})
    assert cfg["max-weight"] == 1.0 == aggregation_weight(cfg, 300)
    assert aggregation_weight(resolve({}), 300) == 300
    assert resolve(cfg) == cfg  # idempotent


def test_federated_extra_brings_what_client_level_dp_needs_and_plain_install_skips_flower():
    """`pip install -e .` (no extras) must not pull Flower/TenSEAL; the `federated` extra must
    bring dp-accounting (Flower's [dp]), which Flower's RdpAccountant needs for client-level DP;
    the `test` extra (the README's test command) includes `federated`.
    scripts/check_plain_install.sh runs the CLI on both installs."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    extras = project["optional-dependencies"]
    plain = [d.replace(" ", "") for d in project["dependencies"]]
    assert not any(d.startswith(("flwr", "tenseal")) for d in plain)
    federated = [d.replace(" ", "") for d in extras["federated"]]
    assert any(d.startswith("flwr[dp]") for d in federated)
    assert any(d.startswith("tenseal") for d in federated)
    assert "privsynth[federated]" in extras["test"]


def test_missing_dp_accounting_is_a_one_line_error(tmp_path, tiny_fed, monkeypatch):
    import importlib.util

    import pytest

    from privsynth.errors import ConfigError
    from privsynth.federated import federate

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "dp_accounting" else real(name, *a),
    )
    with pytest.raises(ConfigError, match="pip install"):
        federate(
            out=tmp_path / "r", clients=2, rounds=1, mode="inprocess", client_noise=2.0, **tiny_fed
        )


def test_privacy_is_one_json_key_and_bad_values_are_one_line_errors():
    """The owners' privacy travels as one JSON `privacy` key (no per-field keys, no sentinels):
    what `flwr run --run-config` passes is what the owners train under."""
    import pytest

    from privsynth.errors import ConfigError
    from privsynth.federated.runconfig import privacy_run_config, privacy_spec
    from privsynth.privacy.accounting import PrivacySpec

    assert not {"epsilon", "delta", "clip", "accountant", "noise-multiplier"} & set(DEFAULTS)
    assert privacy_spec(resolve({})) == PrivacySpec()
    assert privacy_spec(resolve({"privacy": "null"})) is None
    spec = PrivacySpec(epsilon=None, noise_multiplier=1.5, max_grad_norm=0.5, accountant="rdp")
    assert privacy_spec(resolve(privacy_run_config(spec))) == spec
    assert privacy_spec({"privacy": '{"epsilon": 5.0}'}) == PrivacySpec(epsilon=5.0)
    for bad, match in [
        ("epsilon=5", "not JSON"),
        ("5.0", "JSON object or null"),
        ('{"eps": 5.0}', r"unknown keys \['eps'\]"),
        ('{"epsilon": -1}', "epsilon must be"),
    ]:
        with pytest.raises(ConfigError, match=match):
            privacy_spec({"privacy": bad})


def test_missing_tls_file_names_the_flag_that_takes_it(tmp_path):
    """The refusal names `--tls CA CERT KEY`, the flag `privsynth federate` has, before any
    Flower process starts."""
    import pytest

    from privsynth.errors import ConfigError
    from privsynth.federated.launch import local_deployment

    tls = tuple(str(tmp_path / name) for name in ("ca.pem", "cert.pem", "key.pem"))
    with pytest.raises(ConfigError, match=r"--tls CA CERT KEY"):
        with local_deployment([], tmp_path, tls=tls):
            pass
    assert not list(tmp_path.rglob("*.log"))  # no SuperLink or SuperNode was started
