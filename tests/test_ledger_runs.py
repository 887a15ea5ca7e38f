"""The ledger as runs see it: one budget per set of people, wherever the runs write; budgets set
only by `privsynth ledger set-budget`; the reservation precedes the first private step; audits
book on the source dataset; the composition rule is stated."""

from __future__ import annotations

import json

import numpy as np
import pytest

import privsynth
from privsynth.cli import main
from privsynth.data import load_dataset
from privsynth.errors import BudgetError
from privsynth.privacy import Ledger

SIGMA = dict(noise_multiplier=1.0, accountant="rdp")  # fixed sigma: no calibration search
TINY = [
    "--set=epochs=2",
    "--set=batch_size=32",
    "--set=n_d=2",
    "--set=width=8",
    "--set=g_width=8",
    "--set=z_dim=8",
]


def test_one_budget_per_dataset_across_out_folders_and_image_sizes(
    tmp_path, tiny_dataset, capsys, image_folder_writer
):
    """Two runs on the same image folder, in two folders, one of them resized: one dataset in
    the ledger, one budget, and the second run is refused."""
    folder = image_folder_writer(
        tmp_path / "scans", tiny_dataset.images, tiny_dataset.labels, tiny_dataset.class_names
    )
    assert main(["ledger", "set-budget", "--data", str(folder), "7", "--reason", "DPO"]) == 0
    assert "budget none -> 7" in capsys.readouterr().out  # about 4.7 per run fits once
    base = [
        "train",
        "--method",
        "dpgan",
        "--data",
        str(folder),
        "--no-progress",
        "--noise-multiplier",
        "1.0",
        "--accountant",
        "rdp",
        *TINY,
    ]
    assert main([*base, "--out", str(tmp_path / "a" / "run")]) == 0
    first = privsynth.Run.load(tmp_path / "a" / "run")
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "b" / "run"), "--image-size", "16"]) == 2
    err = capsys.readouterr().err
    assert f"spent epsilon {first.epsilon:.4g} of the dataset's budget in the ledger, 7" in err
    (ds,) = Ledger().datasets()
    assert ds["fingerprint"] == first.card["data"]["dataset_key"]
    assert ds["fingerprint"] == Ledger().key(load_dataset(folder, image_size=16).content)


@pytest.mark.parametrize("kind", ["npz", "idx", "digits"])
def test_content_ignores_preprocessing(tmp_path, tiny_dataset, kind, idx_writer):
    write_idx = idx_writer
    if kind == "npz":
        spec = tmp_path / "tiny.npz"
        np.savez(spec, images=tiny_dataset.images[:, 0], labels=tiny_dataset.labels)
    elif kind == "idx":
        write_idx(tmp_path / "train-images-idx3-ubyte.gz", tiny_dataset.images[:, 0])
        write_idx(tmp_path / "train-labels-idx1-ubyte.gz", tiny_dataset.labels.astype(np.uint8))
        spec = tmp_path
    else:
        spec = "digits"
    # IDX and an .npz without class_names need the class list declared (a public input).
    opts = {} if kind == "digits" else {"classes": tiny_dataset.num_classes}
    plain, resized = load_dataset(spec, **opts), load_dataset(spec, image_size=16, **opts)
    assert plain.content == resized.content
    assert plain.fingerprint != resized.fingerprint
    if kind == "npz":  # one changed record is another dataset
        changed = tiny_dataset.images[:, 0].copy()
        changed[0, 0, 0] += 1
        np.savez(spec, images=changed, labels=tiny_dataset.labels)
        assert load_dataset(spec, **opts).content != plain.content


def test_set_budget_is_explicit_and_logged_and_run_budgets_never_write(tmp_path, tiny_npz, capsys):
    base = [
        "train",
        "--method",
        "dpgan",
        "--data",
        str(tiny_npz),
        "--no-progress",
        "--noise-multiplier",
        "1.0",
        "--accountant",
        "rdp",
        *TINY,
    ]
    assert main([*base, "--out", str(tmp_path / "a"), "--budget", "2"]) == 2  # refused ...
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "a"), "--budget", "20"]) == 0  # ... and passed
    assert Ledger().datasets()[0]["budget"] is None  # neither became the dataset's budget
    fp = Ledger().key(load_dataset(tiny_npz).content)
    assert main(["ledger", "set-budget", fp[:10], "5", "--reason", "policy"]) == 0
    assert main(["ledger", "set-budget", fp[:10], "50"]) == 2  # --reason is required
    capsys.readouterr()
    # --budget 20 cannot lift the dataset's 5.
    assert main([*base, "--out", str(tmp_path / "b"), "--budget", "20"]) == 2
    assert "the dataset's budget in the ledger, 5" in capsys.readouterr().err
    assert main(["ledger"]) == 0
    out = capsys.readouterr().out
    assert "budget none -> 5 by" in out and ": policy" in out


def test_reservation_is_in_the_ledger_before_the_first_private_step(
    tmp_path, tiny_dataset, fast_gan, monkeypatch
):
    from privsynth.privacy import dpsgd

    seen = {}

    def stop(*args, **kwargs):  # the moment DP-SGD would start drawing batches
        (ds,) = Ledger().datasets()
        (run,) = ds["runs"].values()
        seen["segments"] = run["segments"]
        raise RuntimeError("stop before the first step")

    monkeypatch.setattr(dpsgd, "make_private", stop)
    with pytest.raises(RuntimeError, match="stop before"):
        privsynth.train(
            tiny_dataset, "dpgan", tmp_path / "r", config=fast_gan, progress=False, **SIGMA
        )
    (seg,) = seen["segments"]
    card = json.loads((tmp_path / "r" / "card.json").read_text())
    assert seg["status"] == "running"
    assert seg["reserved_epsilon"] == pytest.approx(
        card["privacy"]["dp_sgd_plan"]["planned_epsilon"]
    )
    assert seg["counted_epsilon"] == pytest.approx(seg["reserved_epsilon"])
    # The failed process settled its segment to what it had booked: no step went unbooked.
    ((failed,),) = [r["segments"] for r in Ledger().datasets()[0]["runs"].values()]
    assert failed["status"] == "failed" and failed["counted_epsilon"] > 0
    assert "RuntimeError" in failed["note"]


def test_audit_books_on_the_source_dataset(tmp_path, tiny_npz, fast_gan):
    from privsynth.evaluate.audit import audit

    audit(
        str(tiny_npz),
        "dpgan",
        tmp_path / "audit",
        canaries=10,
        config=fast_gan,
        progress=False,
        **SIGMA,
    )
    (ds,) = Ledger().datasets()
    assert ds["fingerprint"] == Ledger().key(load_dataset(tiny_npz).content)


def test_ledger_shows_the_tighter_composition_labelled(tmp_path, tiny_dataset, fast_gan, capsys):
    for name in ("a", "b"):
        privsynth.train(
            tiny_dataset, "dpgan", tmp_path / name, config=fast_gan, progress=False, **SIGMA
        )
    assert main(["ledger", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    (ds,) = shown["datasets"]
    assert shown["composition"].startswith("basic composition")
    assert ds["tighter"]["epsilon"] < ds["epsilon_spent"]
    assert ds["tighter"]["delta"] == pytest.approx(ds["delta_spent"])
    assert main(["ledger"]) == 0
    text = capsys.readouterr().out
    assert "tighter: epsilon" in text and "NOT what budgets are checked against" in text


@pytest.mark.postgres
def test_runs_share_a_budget_through_postgres(tmp_path, tiny_dataset, fast_gan, postgres_url):
    url = postgres_url
    Ledger(url).set_budget(tiny_dataset.content, 7.0, reason="team budget")
    run = privsynth.train(
        tiny_dataset, "dpgan", tmp_path / "a", ledger=url, config=fast_gan, progress=False, **SIGMA
    )
    with pytest.raises(BudgetError, match="postgresql://"):
        privsynth.train(
            tiny_dataset,
            "dpgan",
            tmp_path / "b",
            ledger=url,
            config=fast_gan,
            progress=False,
            **SIGMA,
        )
    assert Ledger(url).spent(tiny_dataset.content).epsilon == pytest.approx(run.epsilon)
    assert run.card["privacy"]["ledger"]["location"].startswith("postgresql://")


def test_force_over_a_budget_warns_and_is_marked_on_card_and_ledger(
    tmp_path, tiny_npz, tiny_dataset, fast_gan, capsys
):
    """--force is never silent: a warning line on stderr, ``forced: true`` on the card and
    ``forced`` on the run's line of `privsynth ledger` (also when it lets delta >= 1/n through)."""
    assert main(["ledger", "set-budget", "--data", str(tiny_npz), "1", "--reason", "DPO"]) == 0
    out = tmp_path / "forced"
    train = ["train", "--method", "dpgan", "--data", str(tiny_npz), "--out", str(out)]
    flags = ["--no-progress", "--noise-multiplier", "1.0", "--accountant", "rdp", *TINY]
    assert main([*train, *flags]) == 2  # over the budget of 1
    capsys.readouterr()
    assert main([*train, *flags, "--force"]) == 0
    err = capsys.readouterr().err
    (warning,) = [line for line in err.splitlines() if "--force" in line]
    assert warning.startswith("privsynth: warning: --force: ") and "budget" in warning
    run = privsynth.Run.load(out)
    assert run.card["privacy"]["forced"] is True
    assert main(["ledger"]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if run.card["run_id"] in x]
    assert "forced" in line and "[complete]" in line
    # Within budget (none on this dataset), --force lets only delta >= 1/n through: on the card.
    loose = privsynth.train(
        tiny_dataset,
        "dpgan",
        tmp_path / "d",
        delta=0.5,
        force=True,
        config=fast_gan,
        progress=False,
        **SIGMA,
    )
    assert loose.card["privacy"]["forced"] is True
    runs = {rid: r for ds in Ledger().datasets() for rid, r in ds["runs"].items()}
    assert runs[loose.card["run_id"]]["forced"]
