"""`privsynth train --warmup central` and `--public-data` end to end through the CLI."""

from __future__ import annotations

import json

import numpy as np

from privsynth.cli import main
from tests.conftest import make_tiny_dataset

VAE = [
    "--method",
    "dpvae",
    "--set",
    "epochs=2",
    "--set",
    "batch_size=32",
    "--set",
    "width=8",
    "--set",
    "z_dim=4",
    "--no-progress",
]


def test_train_warmup_central_shows_the_release_on_the_card(tmp_path, tiny_npz, capsys):
    out = tmp_path / "r"
    code = main(
        [
            "train",
            "--method",
            "dpgan",
            "--data",
            str(tiny_npz),
            "--out",
            str(out),
            "--epsilon",
            "3",
            "--accountant",
            "rdp",
            "--warmup",
            "central",
            "--warmup-share",
            "0.2",
            "--warmup-epochs",
            "1",
            "--warmup-set",
            "images=96",
            *VAE,
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "with the warm-up release" in printed and "central images: Gaussian release" in printed
    assert "20% share" in printed
    card = json.loads((out / "card.json").read_text())
    central = card["privacy"]["warmup"]["central"]
    assert central["share"] == 0.2 and card["privacy"]["epsilon"] <= 3 + 1e-9
    assert card["request"]["warmup"]["config"]["images"] == 96
    assert (out / "warmup.png").exists()


def test_train_public_data_from_a_file(tmp_path, tiny_npz, capsys):
    public = make_tiny_dataset(n=96, seed=3)
    path = tmp_path / "public.npz"
    np.savez(path, images=public.images, labels=public.labels)
    out = tmp_path / "r"
    code = main(
        [
            "train",
            "--method",
            "dpgan",
            "--data",
            str(tiny_npz),
            "--out",
            str(out),
            "--noise-multiplier",
            "1.5",
            "--accountant",
            "rdp",
            "--public-data",
            str(path),
            "--warmup-epochs",
            "1",
            *VAE,
        ]
    )
    assert code == 0
    assert "declared public: no budget spent" in capsys.readouterr().out
    card = json.loads((out / "card.json").read_text())
    assert card["privacy"]["warmup"]["public_data"]["source"] == str(path.resolve())
    # the size release, then DP-SGD: no entry for the public phase
    assert len(card["privacy"]["dp_sgd"]["history"]) == 2


def test_bad_warmup_flags_exit_2_with_one_line(tmp_path, tiny_npz, capsys):
    code = main(
        [
            "train",
            "--method",
            "dpgan",
            "--data",
            str(tiny_npz),
            "--out",
            str(tmp_path / "r"),
            "--warmup",
            "central",
            "--warmup-set",
            "size",
            *VAE,
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--warmup-set expects KEY=VALUE" in err[0]
    code = main(
        [
            "train",
            "--data",
            str(tiny_npz),
            "--out",
            str(tmp_path / "r"),
            "--method",
            "dpmerf",
            "--warmup",
            "central",
        ]
    )
    assert code == 2 and "DP-SGD method" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_train_warmup_merf_through_the_cli_then_sample(tmp_path, tiny_npz, capsys, monkeypatch):
    from privsynth.models import warmup_merf

    real = warmup_merf.recommended_config
    monkeypatch.setattr(  # a short MERF generator: its recommended 2 000 steps are not the point
        warmup_merf,
        "recommended_config",
        lambda m, n, e=None, channels=1: {
            **real(m, n, e, channels),
            "steps": 60,
            "n_features": 200,
            "g_width": 8,
        },
    )
    out = tmp_path / "r"
    args = ["--data", str(tiny_npz), "--out", str(out), "--epsilon", "3", "--accountant", "rdp"]
    warm = ["--warmup", "merf", "--warmup-epochs", "1", "--warmup-set", "images=96"]
    assert main(["train", *args, *warm, *VAE]) == 0
    assert "DP-MERF release: Gaussian" in capsys.readouterr().out
    card = json.loads((out / "card.json").read_text())
    assert card["privacy"]["warmup"]["phases"] == ["merf"]
    assert card["privacy"]["epsilon"] <= 3 + 1e-9 and (out / "warmup.png").exists()
    assert main(["sample", str(out), "-n", "12", "--out", str(tmp_path / "s.npz"), "-q"]) == 0
    assert np.load(tmp_path / "s.npz")["images"].shape[0] == 12
