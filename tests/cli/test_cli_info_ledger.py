"""`privsynth info` (text and --json) and `privsynth ledger`."""

from __future__ import annotations

import json

from privsynth.cli import main
from privsynth.run import Run


def test_info_text(trained_run, capsys):
    assert main(["info", str(trained_run["out"])]) == 0
    text = capsys.readouterr().out
    run = Run.load(trained_run["out"])
    assert f"privsynth run {run.card['run_id']}  [complete]" in text
    assert f"({run.epsilon:.4g}, " in text and "one training image with its label" in text
    assert "rdp accountant" in text and "Poisson" in text
    assert "proportions released with laplace" in text and "not covered" in text
    # The label once (it used to read "not covered  Not covered: ...").
    assert text.lower().count("not covered") == 1
    # The data owner's sentence, and the dataset's total spend read from the ledger now.
    assert f"  in words    {run.card['privacy']['plain_language']}" in text
    assert f"  dataset     total spend epsilon {run.epsilon:.4g}" in text


def test_info_reads_the_ledger_total_now(tmp_path, trained_run, capsys):
    """A later run on the same data raises the total `info` shows for an earlier run."""
    import shutil

    from privsynth.privacy import Ledger

    run = shutil.copytree(trained_run["out"], tmp_path / "r")
    ledger = shutil.copy(trained_run["ledger"], tmp_path / "copied-ledger.sqlite")
    card = json.loads((run / "card.json").read_text())
    card["ledger"] = str(ledger)
    (run / "card.json").write_text(json.dumps(card))
    later = Ledger(ledger)
    segment = later.reserve(
        card["data"]["dataset_key"], "tiny", run_id="later", epsilon=2.5, delta=0
    )
    later.settle(segment, "complete", epsilon=2.5, delta=0.0)
    assert main(["info", str(run)]) == 0
    total = card["privacy"]["epsilon"] + 2.5
    assert f"total spend epsilon {total:.4g}" in capsys.readouterr().out


def test_info_json_is_the_card(trained_run, capsys):
    assert main(["info", str(trained_run["out"]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == Run.load(trained_run["out"]).card


def test_info_non_private(tmp_path, tiny_dataset, fast_gan, capsys):
    import privsynth

    privsynth.train(tiny_dataset, "gan", tmp_path / "g", config=fast_gan, progress=False)
    assert main(["info", str(tmp_path / "g")]) == 0
    assert "∞ (no DP)" in capsys.readouterr().out


def test_ledger_prints_the_spend_and_the_rule(trained_run, capsys):
    assert main(["ledger", "--ledger", str(trained_run["ledger"])]) == 0
    text = capsys.readouterr().out
    run = Run.load(trained_run["out"])
    assert f"privacy ledger {trained_run['ledger']}" in text
    assert "composition: basic composition across runs: the epsilons of all runs" in text
    assert f"epsilon spent {run.epsilon:.4g} of budget none" in text
    assert run.card["run_id"] in text and "[complete]" in text
    assert run.card["privacy"]["ledger"]["composition"] in text  # the card states the same rule


def test_ledger_missing_and_empty(tmp_path, capsys):
    assert main(["ledger", "--ledger", str(tmp_path / "old.json")]) == 2
    assert "pass a .sqlite path" in capsys.readouterr().err
    assert main(["ledger", "--ledger", str(tmp_path / "typo.sqlite")]) == 2
    assert "no ledger at" in capsys.readouterr().err
    assert not (tmp_path / "typo.sqlite").exists()
    assert main(["ledger"]) == 0  # the default ledger, before any run: says so, creates nothing
    assert "no spends booked yet" in capsys.readouterr().out


def test_info_unfinished_run_says_counts_not_yet_released(tmp_path, trained_run, capsys):
    import shutil

    run = shutil.copytree(trained_run["out"], tmp_path / "r")
    card = json.loads((run / "card.json").read_text())
    card["status"] = "running"
    card["privacy"]["class_proportions"]["values"] = None
    card["privacy"].pop("epsilon")
    (run / "card.json").write_text(json.dumps(card))
    assert main(["info", str(run)]) == 0
    text = capsys.readouterr().out
    assert "[running]" in text and "(training not finished)" in text
    assert "to be released after training with laplace" in text


def test_info_and_model_card_of_a_killed_dp_run_say_unfinished(
    tmp_path, tiny_dataset, fast_gan, monkeypatch, capsys
):
    import pytest

    import privsynth
    from privsynth.orchestrate import trainer

    real, calls = trainer.save_train_state, []

    def save(path, state):  # killed (Ctrl-C) at the second checkpoint
        calls.append(state["step"])
        if len(calls) > 1:
            raise KeyboardInterrupt
        real(path, state)

    monkeypatch.setattr(trainer, "save_train_state", save)
    out = tmp_path / "r"
    with pytest.raises(KeyboardInterrupt):
        privsynth.train(
            tiny_dataset,
            "dpgan",
            out,
            noise_multiplier=1.2,
            accountant="rdp",
            config=fast_gan,
            progress=False,
            checkpoint_every=2,
        )
    assert (out / "train_state.pt").exists() and not (out / "weights.safetensors").exists()
    card = json.loads((out / "card.json").read_text())
    planned = card["privacy"]["dp_sgd_plan"]["steps"]
    so_far = card["progress"]["epsilon_spent"]
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    readme = (out / "README.md").read_text()
    for text in (info, readme, card["privacy"]["plain_language"]):
        assert "no differential privacy" not in text
        assert f"unfinished DP run: 2 of {planned} steps" in text
        assert f"epsilon so far {so_far:.3g}" in text
    assert "no-differential-privacy" not in readme


def test_info_and_model_card_of_a_diverged_dp_run_say_diverged(
    tmp_path, tiny_dataset, fast_gan, capsys
):
    import pytest

    import privsynth
    from privsynth.errors import TrainingDiverged

    out = tmp_path / "r"
    with pytest.raises(TrainingDiverged):
        privsynth.train(
            tiny_dataset,
            "dpgan",
            out,
            noise_multiplier=1.0,
            accountant="rdp",
            config={**fast_gan, "lr_d": 1e30},
            progress=False,
            checkpoint_every=2,
        )
    card = json.loads((out / "card.json").read_text())
    assert card["status"] == "diverged"
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    readme = (out / "README.md").read_text()
    spent = card["diverged"]["epsilon_spent"]
    for text in (info, readme, card["privacy"]["plain_language"]):
        assert "no differential privacy" not in text
        assert f"diverged at step {card['diverged']['step']}" in text
        assert f"spent epsilon {spent:.3g}" in text
