"""RunRequest: built from privsynth.train's keywords or the CLI's flags alike, checked before any
data is read, and the run folder the Python API writes is the one the CLI writes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import privsynth
from privsynth.cli import build_parser, main
from privsynth.cli.train import train_request
from privsynth.data import DataSource
from privsynth.errors import ConfigError
from privsynth.request import RunRequest


def test_keywords_land_in_their_part():
    request = RunRequest.build(
        "digits", "dpgan", "runs/x", epsilon=2.5, seed=3, holdout=10, quick_eval=True
    )
    assert request.method == "dpgan"
    assert request.data.source == "digits" and request.data.holdout == 10
    assert request.privacy.epsilon == 2.5 and request.training.seed == 3
    assert request.output.out == Path("runs/x") and request.output.quick_eval
    defaults = RunRequest.build().output
    assert defaults.samples and not defaults.quick_eval  # the grid always, as the CLI's defaults
    moved = request.replace(out="elsewhere", data="other")
    assert moved.output.out == Path("elsewhere") and moved.data.source == "other"
    assert moved.privacy == request.privacy  # the rest is kept
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.method = "gan"


def test_unknown_keyword_is_one_line_naming_the_valid_ones(tmp_path, tiny_dataset):
    with pytest.raises(ConfigError) as caught:
        privsynth.train(tiny_dataset, "dpgan", tmp_path / "r", epsilonn=1.0)
    message = str(caught.value)
    assert "\n" not in message and "epsilonn" in message
    for valid in ("epsilon", "delta", "holdout", "seed", "quick_eval", "samples", "data"):
        assert valid in message
    assert not (tmp_path / "r").exists()


def test_check_refuses_before_any_data_is_read():
    bad = {
        "checkpoint_every": 0,
        "seed": -1,
        "split_seed": 1.5,
    }
    for key, value in bad.items():
        with pytest.raises(ConfigError, match=key.replace("_", "-")):
            RunRequest.build("no-such-folder", "dpgan", "out", **{key: value}).check()
    with pytest.raises(ConfigError, match="--epsilon"):  # a twin without DP refuses a target
        RunRequest.build("no-such-folder", "gan", "out", epsilon=1.0).check()
    with pytest.raises(ConfigError, match="--no-dp"):
        RunRequest.build("no-such-folder", "dpgan", "out", no_dp=True, budget=3.0).check()
    with pytest.raises(ConfigError, match="unknown classifier 'vgg'"):
        RunRequest.build("x", quick_eval=True, quick_eval_classifiers=("vgg",)).check()
    RunRequest.build("no-such-folder", "dpgan", "out", epsilon=1.0).check()


def test_cli_flags_build_the_request_privsynth_train_builds(tmp_path):
    """The CLI and the Python API agree on every field; the epsilon is the parsed float itself."""
    args = build_parser().parse_args(
        ["train", "--data", "d.npz", "--out", str(tmp_path / "r"), "--method", "dpgan"]
        + ["--epsilon", "2.5", "--seed", "4", "--set", "epochs=2", "--evaluate", "--no-progress"]
    )
    from_cli = train_request(args)
    from_api = RunRequest.build(
        DataSource("d.npz"),
        "dpgan",
        tmp_path / "r",
        epsilon=2.5,
        seed=4,
        config={"epochs": 2},
        progress=False,
        quick_eval=True,
    )
    assert from_cli == from_api
    assert type(from_cli.privacy.epsilon) is float and from_cli.privacy.epsilon == 2.5
    no_dp = train_request(build_parser().parse_args(["train", "--out", "o", "--no-dp"]))
    assert no_dp.privacy.epsilon is None and no_dp.privacy.no_dp and not no_dp.private


def test_python_api_writes_the_run_folder_the_cli_writes(tmp_path, tiny_npz, fast_gan, capsys):
    flags = [f"--set={k}={v}" for k, v in fast_gan.items()]
    cli_out, api_out = tmp_path / "cli", tmp_path / "api"
    code = main(
        ["train", "--method", "gan", "--data", str(tiny_npz), "--out", str(cli_out)]
        + ["--evaluate", "--no-progress", *flags]
    )
    assert code == 0
    source = DataSource(str(tiny_npz))
    run = privsynth.train(source, "gan", api_out, config=fast_gan, progress=False, quick_eval=True)
    written = {p.name for p in api_out.iterdir()}
    assert written == {p.name for p in cli_out.iterdir()}
    assert {"samples.png", "quick_eval.json", "README.md"} <= written
    ev = json.loads((api_out / "quick_eval.json").read_text())
    readme = (api_out / "README.md").read_text()
    assert f"**{ev['tstr_accuracy']:.1%}**" in readme and "`samples.png`" in readme
    assert run.card["request"] == json.loads((cli_out / "card.json").read_text())["request"]
