"""Flower and TenSEAL are the `federated` extra: central training runs without them, and every
federated entry point without them stops with one line naming the extra."""

import importlib
import sys

import pytest

from privsynth.errors import MissingExtra


@pytest.fixture
def without(monkeypatch):
    """Simulate uninstalled packages (a None entry in sys.modules makes their import fail) and a
    fresh privsynth.federated (restored afterwards)."""

    def hide(*names: str) -> None:
        for name in names:
            monkeypatch.setitem(sys.modules, name, None)
        for mod in [m for m in sys.modules if m.startswith("privsynth.federated")]:
            monkeypatch.delitem(sys.modules, mod)

    return hide


@pytest.mark.parametrize(
    "module",
    ["privsynth.federated", "privsynth.federated.server_app", "privsynth.federated.client_app"],
)
def test_importing_federated_without_flower_names_the_extra(without, module):
    without("flwr")
    with pytest.raises(MissingExtra) as err:
        importlib.import_module(module)
    message = str(err.value)
    assert "privsynth[federated]" in message and "flwr" in message and "\n" not in message
    assert isinstance(err.value, ImportError)  # `except ImportError` still catches it


def test_cli_federate_without_flower_is_one_line_and_exit_2(without, capsys, tmp_path):
    from privsynth.cli import main

    without("flwr")
    rc = main(["federate", "--data", "digits", "--inprocess", "--out", str(tmp_path / "f")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "pip install 'privsynth[federated]'" in err


def test_ckks_without_tenseal_names_the_extra(without, tmp_path):
    without("tenseal")
    from privsynth.federated.encrypted import make_keys

    with pytest.raises(MissingExtra, match=r"CKKS.*tenseal.*privsynth\[federated\]"):
        make_keys(tmp_path / "keys")


def test_central_training_needs_neither_flower_nor_tenseal(without, tmp_path):
    without("flwr", "tenseal")
    import privsynth

    run = privsynth.train(
        "digits",
        method="dpmerf",
        epsilon=10,
        out=tmp_path / "central",
        config={"n_features": 50, "steps": 3, "g_width": 8, "z_dim": 8},
        progress=False,
        ledger=tmp_path / "ledger.sqlite",
    )
    assert run.card["status"] == "complete"  # (any `import flwr` on the way would have failed)
