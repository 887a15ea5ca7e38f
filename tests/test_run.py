"""The run folder: safetensors + card.json reload, identical samples, errors that name the fix."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from safetensors import safe_open

from privsynth import Run
from privsynth.data import ImageDataset, load_dataset
from privsynth.errors import CheckpointError, ConfigError
from privsynth.run import CARD, SPLIT, WEIGHTS, same_data


@pytest.fixture
def run_copy(tmp_path, trained_run):
    """A private copy of the shared trained run, free to break."""
    return shutil.copytree(trained_run["out"], tmp_path / "run")


def test_reload_gives_identical_samples(trained_run):
    a, b = Run.load(trained_run["out"]), Run.load(trained_run["out"])
    xa, ya = a.sample(12, seed=5)
    xb, yb = b.sample(12, seed=5)
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(xa, a.sample(12, labels=ya, seed=6)[0])
    assert xa.dtype == np.uint8 and xa.shape == (12, 1, 8, 8)


def test_weights_are_safetensors_with_metadata(trained_run):
    run = Run.load(trained_run["out"])
    with safe_open(str(trained_run["out"] / WEIGHTS), framework="pt") as f:
        assert f.metadata()["method"] == "dpgan"
        assert f.metadata()["run_id"] == run.card["run_id"]
        assert set(f.keys()) == set(run.synthesizer.state_dict())


def test_card_holds_what_the_issue_lists(trained_run):
    card = json.loads((trained_run["out"] / CARD).read_text())
    pv, sgd, data = card["privacy"], card["privacy"]["dp_sgd"], card["data"]
    assert card["method"] == "dpgan" and card["status"] == "complete"
    assert isinstance(pv["epsilon"], float) and 0 < pv["delta"] < 1
    for key in ("accountant", "noise_multiplier", "sample_rate", "steps", "max_grad_norm"):
        assert sgd[key] is not None, key
    assert sgd["accountant"] == "rdp" and sgd["poisson_sampling"] is True
    assert same_data(data["check"], load_dataset(trained_run["data"]))
    assert not {"n_train", "n_holdout", "n_total"} & set(data)  # no exact count (add/remove-one)
    assert data["classes"] == ["0", "1", "2"] and data["split_seed"] == 0
    assert card["config"]["n_d"] == 2 and {"torch", "opacus"} <= set(card["versions"])


def test_sample_labels_by_id_or_name(trained_run):
    run = Run.load(trained_run["out"])
    _, labels = run.sample(4, labels="2")
    assert labels.tolist() == [2] * 4
    _, labels = run.sample(3, labels=[0, "1", 2])
    assert labels.tolist() == [0, 1, 2]
    with pytest.raises(ConfigError, match="not a class of this run"):
        run.sample(2, labels=[7, 0])
    with pytest.raises(ConfigError, match="give one label or n"):
        run.sample(3, labels=[0, 1])


def test_load_data_is_the_recorded_split(trained_run):
    run = Run.load(trained_run["out"])
    train, holdout = run.load_data()
    split = json.loads((trained_run["out"] / SPLIT).read_text())
    full = load_dataset(trained_run["data"])
    np.testing.assert_array_equal(train.images, full.images[split["train"]])
    np.testing.assert_array_equal(holdout.labels, full.labels[split["holdout"]])
    other = ImageDataset(full.images[::-1].copy(), full.labels[::-1].copy(), full.class_names)
    with pytest.raises(CheckpointError, match="pass the original --data"):
        run.load_data(other)


def test_corrupt_card(run_copy):
    (run_copy / CARD).write_text('{"format": "privsynth-run/1", "method": ')
    with pytest.raises(CheckpointError, match="corrupt.*retrain or restore"):
        Run.load(run_copy)


def test_unknown_card_format(run_copy):
    card = json.loads((run_copy / CARD).read_text())
    (run_copy / CARD).write_text(json.dumps({**card, "format": "other/9"}))
    with pytest.raises(CheckpointError, match="unknown format"):
        Run.load(run_copy)


def test_missing_weights(run_copy):
    (run_copy / WEIGHTS).unlink()
    with pytest.raises(CheckpointError, match="missing.*retrain"):
        Run.load(run_copy)


def test_corrupt_weights(run_copy):
    (run_copy / WEIGHTS).write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="retrain"):
        Run.load(run_copy)


def test_unfinished_run(run_copy):
    card = json.loads((run_copy / CARD).read_text())
    (run_copy / CARD).write_text(json.dumps({**card, "status": "running"}))
    with pytest.raises(CheckpointError, match="rerun the same `privsynth train` command"):
        Run.load(run_copy)


def test_not_a_run_folder(tmp_path):
    with pytest.raises(CheckpointError, match="not a run folder"):
        Run.load(tmp_path)


def test_card_missing_a_field(run_copy):
    card = json.loads((run_copy / CARD).read_text())
    del card["data"]
    (run_copy / CARD).write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="lacks 'data'.*retrain"):
        Run.load(run_copy)


def test_weights_from_another_model(run_copy):
    import torch
    from safetensors.torch import save_file

    save_file({"g_ema.fc.0.weight": torch.zeros(3, 3)}, str(run_copy / WEIGHTS))
    with pytest.raises(CheckpointError, match="does not fit the card's model.*different runs"):
        Run.load(run_copy)
