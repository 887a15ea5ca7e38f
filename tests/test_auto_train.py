"""``--method auto`` through `privsynth.train` and the CLI: the choice reads N_hat (never N), lands
on the card and the model card, survives a resume, and a time limit nothing fits is one line."""

from __future__ import annotations

import json

import pytest

import privsynth
from privsynth.cli import main
from privsynth.errors import ConfigError
from privsynth.orchestrate import trainer, trainer_auto

FAST_MERF = {"steps": 20, "n_features": 64}


def test_train_without_method_runs_auto_and_records_why(tmp_path, tiny_dataset, monkeypatch):
    seen = []
    real = trainer_auto.choose

    def spy(shape, channels, n_hat, epsilon, time_limit_min=None, device="cpu"):
        seen.append(n_hat)
        return real(shape, channels, n_hat, epsilon, time_limit_min, device)

    monkeypatch.setattr(trainer_auto, "choose", spy)
    run = privsynth.train(tiny_dataset, out=tmp_path / "r", config=FAST_MERF, progress=False)
    card = run.card
    n_hat = card["privacy"]["size_release"]["dp_count"]
    # provisional (no size yet), then final from the released N_hat; never the exact 96
    assert seen == [None, n_hat]
    choice = card["method_choice"]
    assert choice["requested"] == "auto" and choice["method"] == card["method"] == "dpmerf"
    assert card["request"]["method"] == "dpmerf"
    assert choice["reasons"] and f"N_hat {n_hat:g}" in choice["reasons"][0]
    readme = (tmp_path / "r" / "README.md").read_text()
    assert "Chosen by `--method auto` from public facts only" in readme
    assert choice["reasons"][0] in readme


def test_auto_settings_reach_the_method_and_user_flags_win(tmp_path, tiny_dataset, monkeypatch):
    from privsynth.models.auto import Choice

    monkeypatch.setattr(
        trainer_auto, "choose", lambda *a, **k: Choice("dpmerf", {"steps": 7, "z_dim": 4}, ["x"])
    )
    run = privsynth.train(
        tiny_dataset, out=tmp_path / "r", config={"z_dim": 6, "n_features": 64}, progress=False
    )
    assert run.card["config"]["steps"] == 7  # auto's setting
    assert run.card["config"]["z_dim"] == 6  # the user's flag over it


def test_resume_keeps_the_recorded_choice(tmp_path, tiny_dataset, monkeypatch, exact_size):
    real, calls = trainer.save_train_state, []

    def killed_at_second_checkpoint(path, state):
        calls.append(state["step"])
        if len(calls) > 1:
            raise KeyboardInterrupt
        real(path, state)

    monkeypatch.setattr(trainer, "save_train_state", killed_at_second_checkpoint)
    out = tmp_path / "r"
    kw = dict(config={**FAST_MERF, "steps": 40}, progress=False, checkpoint_every=10)
    with pytest.raises(KeyboardInterrupt):
        privsynth.train(tiny_dataset, out=out, **kw)
    first = json.loads((out / "card.json").read_text())["method_choice"]
    monkeypatch.undo()

    def must_not_decide(*a, **k):
        raise AssertionError("a resumed run decided again")

    monkeypatch.setattr(trainer_auto, "choose", must_not_decide)
    run = privsynth.train(tiny_dataset, out=out, **kw)
    assert run.card["status"] == "complete"
    assert run.card["method_choice"] == first and run.card["method"] == first["method"]


@pytest.mark.parametrize(
    "flags",
    [{"no_dp": True}, {"noise_multiplier": 1.0}, {"time_limit": 0}],
)
def test_auto_refuses_what_it_cannot_choose_by(tmp_path, tiny_dataset, flags):
    with pytest.raises(ConfigError, match="auto|time-limit"):
        privsynth.train(tiny_dataset, out=tmp_path / "r", progress=False, **flags)
    assert not (tmp_path / "r").exists()


def test_time_limit_only_with_auto(tmp_path, tiny_dataset):
    with pytest.raises(ConfigError, match="--time-limit is read by --method auto only"):
        privsynth.train(tiny_dataset, "dpmerf", tmp_path / "r", time_limit=5, progress=False)


def test_cli_train_defaults_to_auto(tmp_path, tiny_npz, capsys):
    out = tmp_path / "r"
    args = ["train", "--data", str(tiny_npz), "--out", str(out), "--no-progress"]
    assert main([*args, "--set", "steps=20", "--set", "n_features=64"]) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["method_choice"]["requested"] == "auto" and card["method"] == "dpmerf"
    assert "method      dpmerf  (chosen by --method auto)" in capsys.readouterr().out


def test_cli_time_limit_nothing_fits_is_one_line(tmp_path, tiny_npz, capsys):
    out = tmp_path / "r"
    args = ["train", "--data", str(tiny_npz), "--out", str(out), "--no-progress"]
    assert main([*args, "--time-limit", "0.0001"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--time-limit 0.0001 min: no method fits" in err and "raise --time-limit" in err
    assert not out.exists()  # refused before the size release: nothing spent
    from privsynth.privacy import Ledger

    assert Ledger().datasets() == []


@pytest.mark.parametrize(
    "argv", [["sweep", "--methods", "auto", "--epsilons", "10"], ["federate", "--method", "auto"]]
)
def test_sweep_and_federate_take_explicit_methods_only(tmp_path, capsys, argv):
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown method 'auto'" in err
    assert not (tmp_path / "o").exists()
