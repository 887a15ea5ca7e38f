"""Privacy flags say what runs: a flag a non-private run would ignore is an error naming the DP
twin; delta >= 1/n is refused unless forced; a small n is warned about; the card names the
mechanism that ran (DP-SGD or one Gaussian release)."""

from __future__ import annotations

import warnings

import pytest

import privsynth
from privsynth.cli import main
from privsynth.errors import ConfigError
from privsynth.privacy import Ledger
from privsynth.privacy.checks import PrivacyWarning, check_delta

TINY = [
    "--set",
    "epochs=2",
    "--set",
    "batch_size=32",
    "--set",
    "n_d=2",
    "--set",
    "width=8",
    "--set",
    "g_width=8",
    "--set",
    "z_dim=8",
]


@pytest.mark.parametrize(
    "method, flags, twin",
    [
        ("vae", ["--epsilon", "10"], "use --method dpvae (its DP twin)"),
        ("gan", ["--delta", "1e-6"], "use --method dpgan (its DP twin)"),
        ("diffusion", ["--budget", "5"], "use --method dpdiffusion (its DP twin)"),
        ("gan", ["--noise-multiplier", "1.0"], "use --method dpgan"),
        ("gan", ["--class-proportions", "laplace"], "use --method dpgan"),
    ],
)
def test_privacy_flag_on_a_non_private_method_names_the_twin(
    tmp_path, tiny_npz, capsys, method, flags, twin
):
    code = main(
        [
            "train",
            "--method",
            method,
            "--data",
            str(tiny_npz),
            "--out",
            str(tmp_path / "r"),
            "--no-progress",
            *flags,
            *TINY,
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert (
        f"--method {method} trains without differential privacy, so {flags[0]} would be ignored"
        in err
        and twin in err
    )
    assert not (tmp_path / "r").exists()


def test_no_dp_with_epsilon_is_refused_and_defaults_do_not_count(
    tmp_path, tiny_dataset, fast_gan, capsys
):
    with pytest.raises(
        ConfigError,
        match="--no-dp trains without differential privacy, so --epsilon would be ignored",
    ):
        privsynth.train(
            tiny_dataset,
            "dpgan",
            tmp_path / "r",
            no_dp=True,
            epsilon=10,
            config=fast_gan,
            progress=False,
        )
    # The CLI's own defaults (epsilon 10, clip 1, prv) are not flags the user gave.
    assert (
        main(
            [
                "train",
                "--method",
                "gan",
                "--data",
                "digits",
                "--holdout",
                "1700",
                "--out",
                str(tmp_path / "g"),
                "--no-progress",
                *TINY,
            ]
        )
        == 0
    )
    assert "∞ (no DP)" in capsys.readouterr().out
    assert Ledger().datasets() == []


def test_delta_at_or_above_one_over_n_is_refused_unless_forced(tmp_path, tiny_dataset, fast_gan):
    kw = dict(config=fast_gan, progress=False, noise_multiplier=1.0, accountant="rdp")
    with pytest.raises(
        ConfigError,
        match=r"--delta 0.5 is >= 1/n = 1/96 .*publishes a random "
        r"training image in the clear.*or pass --force",
    ):
        privsynth.train(tiny_dataset, "dpgan", tmp_path / "r", delta=0.5, **kw)
    assert not (tmp_path / "r").exists() and Ledger().datasets() == []
    with pytest.warns(PrivacyWarning, match="vacuous"):
        run = privsynth.train(tiny_dataset, "dpgan", tmp_path / "r", delta=0.5, force=True, **kw)
    assert any("vacuous" in w for w in run.card["privacy"]["warnings"])


def test_small_n_is_warned_large_n_is_not():
    with pytest.warns(PrivacyWarning, match="only 96 private images"):
        notes = check_delta(1 / 960, 96, given=False, force=False)
    assert notes and "weak" in notes[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_delta(1e-5, 10_000, given=False, force=False) == []
    with pytest.raises(ConfigError, match="delta 0.0001 is >= 1/n = 1/10000"):  # default too
        check_delta(1e-4, 10_000, given=False, force=False)


def test_card_names_the_mechanism_that_ran(tmp_path, tiny_dataset, fast_gan, capsys):
    merf = privsynth.train(
        tiny_dataset,
        "dpmerf",
        tmp_path / "m",
        noise_multiplier=2.0,
        accountant="rdp",
        progress=False,
        config={"n_features": 64, "steps": 5, "batch_size": 30, "g_width": 8, "z_dim": 8},
    )
    mech = merf.card["privacy"]["mechanism"]
    assert (
        mech["name"] == "gaussian"
        and "Gaussian mechanism (OpenDP), released once" in mech["description"]
    )
    assert main(["info", str(tmp_path / "m")]) == 0
    text = capsys.readouterr().out
    assert "Gaussian    epsilon" in text and "one release on all training images" in text
    assert "DP-SGD" not in text and "q 1" not in text
    gan = privsynth.train(
        tiny_dataset,
        "dpgan",
        tmp_path / "g",
        noise_multiplier=1.0,
        accountant="rdp",
        config=fast_gan,
        progress=False,
    )
    assert gan.card["privacy"]["mechanism"]["name"] == "dp-sgd"
