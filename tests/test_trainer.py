"""privsynth.train: budgets, non-private baselines, class-proportion spend, failed starts.

(Resume after a kill and the ledger's one-entry-per-run rule: tests/test_resume.py.)
"""

from __future__ import annotations

import json
import math

import pytest

import privsynth
from privsynth.errors import BudgetError, CheckpointError, ConfigError, PrivacyError
from privsynth.privacy import Ledger, epsilon_from_history
from privsynth.run import same_data

SIGMA = 1.0  # a fixed sigma skips Opacus' calibration search (tested in tests/privacy)


def ledger_runs(location=None):
    """{run_id: run} of every dataset in the ledger (the test's own unless ``location``)."""
    return {rid: r for ds in Ledger(location).datasets() for rid, r in ds["runs"].items()}


def _earlier_spend(fingerprint: str, epsilon: float = 8.0, location=None) -> None:
    led = Ledger(location)
    seg = led.reserve(fingerprint, "tiny", run_id="earlier", epsilon=epsilon, delta=1e-3)
    led.settle(seg, "complete", epsilon=epsilon, delta=1e-3)


def test_budget_refuses_then_force(tmp_path, tiny_dataset, fast_gan):
    kw = dict(config=fast_gan, progress=False, noise_multiplier=SIGMA, accountant="rdp")
    _earlier_spend(tiny_dataset.source_fingerprint)
    # A fixed sigma: the exact epsilon of its plan (about 6.8 here) is what the budget checks.
    with pytest.raises(BudgetError, match="spent epsilon 8 of this run's --budget, 10.*--force"):
        privsynth.train(tiny_dataset, "dpgan", tmp_path / "b", budget=10, **kw)
    assert not (tmp_path / "b").exists()  # refused before anything was written
    assert list(ledger_runs()) == ["earlier"]
    forced = privsynth.train(tiny_dataset, "dpgan", tmp_path / "b", budget=10, force=True, **kw)
    (ds,) = Ledger().datasets()
    assert ds["budget"] is None  # --budget checks; it never becomes the dataset's budget
    assert ds["epsilon_spent"] == pytest.approx(8.0 + forced.epsilon)
    assert ds["runs"][forced.card["run_id"]]["segments"][0]["forced"] == 1
    assert forced.card["privacy"]["ledger"]["dataset_epsilon_spent"] == pytest.approx(
        8.0 + forced.epsilon
    )
    assert "basic composition" in forced.card["privacy"]["ledger"]["composition"]


def test_budget_with_epsilon_target_refused_before_training(tmp_path, tiny_dataset, fast_gan):
    ledger = tmp_path / "elsewhere.sqlite"
    _earlier_spend(tiny_dataset.source_fingerprint, location=ledger)
    Ledger(ledger).set_budget(tiny_dataset.source_fingerprint, 10.0, reason="test")
    with pytest.raises(BudgetError, match="spent epsilon 8 of the dataset's budget"):
        privsynth.train(
            tiny_dataset,
            "dpgan",
            tmp_path / "r",
            epsilon=5,
            ledger=ledger,
            config=fast_gan,
            progress=False,
        )
    assert not (tmp_path / "r").exists()
    assert list(ledger_runs(ledger)) == ["earlier"]


@pytest.mark.parametrize("method, no_dp", [("gan", False), ("dpgan", True)])
def test_non_private_baseline(tmp_path, tiny_dataset, fast_gan, method, no_dp):
    run = privsynth.train(
        tiny_dataset, method, tmp_path / "r", no_dp=no_dp, config=fast_gan, progress=False
    )
    assert run.card["privacy"]["epsilon"] is None and math.isinf(run.epsilon)
    assert run.card["private"] is False
    assert "without differential privacy" in run.card["privacy"]["guarantee"]
    assert run.card["privacy"]["class_proportions"]["mechanism"] == "uniform"
    assert Ledger().datasets() == []  # a non-private run books nothing


@pytest.mark.parametrize(
    "mechanism, target", [("laplace", {"epsilon": 4.0}), ("gaussian", {"noise_multiplier": SIGMA})]
)
def test_class_proportions_count_in_card_and_ledger(
    tmp_path, tiny_dataset, fast_gan, mechanism, target
):
    run = privsynth.train(
        tiny_dataset,
        "dpgan",
        tmp_path / "r",
        config=fast_gan,
        progress=False,
        class_proportions=mechanism,
        counts_epsilon=0.5,
        accountant="rdp",
        **target,
    )
    pv = run.card["privacy"]
    counts, sgd = pv["class_proportions"], pv["dp_sgd"]
    assert counts["mechanism"] == mechanism and counts["epsilon"] == 0.5
    assert (counts["delta"] > 0) == (mechanism == "gaussian")
    assert run.class_proportions().sum() == pytest.approx(1.0)
    recomputed = epsilon_from_history(sgd["history"], sgd["delta"], "rdp")
    assert sgd["epsilon"] == pytest.approx(recomputed)
    assert pv["epsilon"] == pytest.approx(sgd["epsilon"] + 0.5)
    if "epsilon" in target:  # the target is the total: DP-SGD gets what the counts leave
        assert sgd["target_epsilon"] == pytest.approx(3.5)
        assert 0.99 * 4 <= pv["epsilon"] <= 4 * (1 + 1e-9)
    assert sgd["delta"] + counts["delta"] == pytest.approx(pv["delta"])
    (entry,) = ledger_runs().values()
    assert entry["epsilon"] == pytest.approx(pv["epsilon"])
    assert entry["delta"] == pytest.approx(pv["delta"])


def test_counts_epsilon_must_leave_room(tmp_path, tiny_dataset, fast_gan):
    with pytest.raises(ConfigError, match="smaller --counts-epsilon"):
        privsynth.train(
            tiny_dataset,
            "dpgan",
            tmp_path / "r",
            epsilon=1,
            counts_epsilon=1,
            class_proportions="laplace",
            config=fast_gan,
            progress=False,
        )
    assert not (tmp_path / "r").exists()


def test_failed_start_leaves_no_run_folder(tmp_path, tiny_dataset, fast_gan):
    with pytest.raises(ConfigError, match="lower --batch-size"):
        privsynth.train(
            tiny_dataset,
            "dpgan",
            tmp_path / "r",
            noise_multiplier=SIGMA,
            config={**fast_gan, "batch_size": 500},
            progress=False,
        )
    with pytest.raises(PrivacyError, match="raise --epsilon"):
        privsynth.train(
            tiny_dataset,
            "dpgan",
            tmp_path / "r",
            epsilon=1e-6,
            accountant="rdp",
            config=fast_gan,
            progress=False,
        )
    assert not (tmp_path / "r").exists()
    assert ledger_runs() == {}  # refused before any private step: no spend booked


def test_unknown_method_and_option(tmp_path, tiny_dataset, fast_gan):
    with pytest.raises(ConfigError, match="choose one of"):
        privsynth.train(tiny_dataset, "vaeX", tmp_path / "r", config=fast_gan, progress=False)
    with pytest.raises(ConfigError, match="unknown option"):
        privsynth.train(tiny_dataset, "dpgan", tmp_path / "r", config={"n_dd": 3}, progress=False)
    assert not (tmp_path / "r").exists()


def test_finished_run_is_not_overwritten(tmp_path, tiny_dataset, fast_gan):
    kw = dict(config=fast_gan, progress=False, no_dp=True)
    privsynth.train(tiny_dataset, "dpgan", tmp_path / "r", **kw)
    with pytest.raises(CheckpointError, match="--overwrite"):
        privsynth.train(tiny_dataset, "dpgan", tmp_path / "r", **kw)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="choose an empty --out"):
        privsynth.train(tiny_dataset, "dpgan", tmp_path / "other", **kw)


def test_holdout_is_never_trained_on(tmp_path, tiny_dataset, fast_gan, monkeypatch):
    from privsynth.models.gan import GANSynthesizer

    seen = {}
    real_fit = GANSynthesizer.fit

    def spy(self, data, ctx):
        seen["data"] = data
        return real_fit(self, data, ctx)

    monkeypatch.setattr(GANSynthesizer, "fit", spy)
    run = privsynth.train(
        tiny_dataset,
        "dpgan",
        tmp_path / "r",
        noise_multiplier=SIGMA,
        config=fast_gan,
        progress=False,
        holdout=0.25,
        split_seed=3,
    )
    split = json.loads((tmp_path / "r" / "split.json").read_text())
    assert split["seed"] == 3 and len(split["holdout"]) == 30
    assert sorted(split["train"] + split["holdout"]) == list(range(len(tiny_dataset)))
    trained = seen["data"]
    # Every row is unique (random background), so compare rows as bytes.
    rows = {tiny_dataset.images[i].tobytes(): i for i in range(len(tiny_dataset))}
    used = sorted(rows[img.tobytes()] for img in trained.images)
    assert used == split["train"]
    assert same_data(run.card["data"]["check"], tiny_dataset, trained)
    assert "n_train" not in run.card["data"] and "n_private" not in run.card["privacy"]["dp_sgd"]
    # Delta defaults to 1 / (10 N_hat), N_hat the size release's noisy training (not total)
    # count; never 1 / (10 N) from the exact N.
    n_hat = run.card["privacy"]["size_release"]["dp_count"]
    assert run.delta == pytest.approx(1 / (10 * n_hat))


def test_train_takes_its_defaults_from_the_one_defaults_table(tmp_path, tiny_dataset, monkeypatch):
    """`privsynth train` and `sweep` read the same size-based defaults; flags override them."""
    from privsynth.models import defaults

    monkeypatch.setitem(
        defaults._DEFAULTS,
        "dpmerf",
        {"small": {"steps": 7, "n_features": 16}, "large": {"steps": 9}},
    )
    run = privsynth.train(
        tiny_dataset,
        "dpmerf",
        tmp_path / "a",
        epsilon=5,
        progress=False,
        config={"batch_size": 20, "g_width": 8},
    )
    assert run.card["config"]["steps"] == 7 and run.card["config"]["n_features"] == 16
    run = privsynth.train(
        tiny_dataset,
        "dpmerf",
        tmp_path / "b",
        epsilon=5,
        progress=False,
        config={"batch_size": 20, "g_width": 8, "steps": 3},
    )
    assert run.card["config"]["steps"] == 3 and run.card["config"]["n_features"] == 16


def test_defaults_can_follow_the_target_epsilon(tmp_path, tiny_dataset, monkeypatch):
    """A rule by epsilon (public) refines the size-based defaults of a private run only."""
    from privsynth.models import defaults

    assert defaults.recommended_config("dpgan", 8000, 1.0)["epochs"] == 10
    assert defaults.recommended_config("dpgan", 8000, 2.0)["epochs"] == 15
    assert defaults.recommended_config("dpgan", 8000, 5.0)["epochs"] == 25
    assert defaults.recommended_config("dpgan", 8000, 10.0)["epochs"] == 30
    assert defaults.recommended_config("dpgan", 8000)["epochs"] == 30
    assert defaults.recommended_config("dpgan", 8000, float("inf"))["epochs"] == 30
    assert defaults.recommended_config("gan", 8000, 1.0)["epochs"] == 30  # the twin: no rule
    # five EMA snapshots from eps 7.5 on large data only (docs/gan.md "fifth round")
    assert defaults.recommended_config("dpgan", 8000, 10.0)["snapshots"] == 5
    for method, n, eps in [
        ("dpgan", 8000, 5.0),
        ("dpgan", 8000, None),
        ("gan", 8000, 10.0),
        ("dpgan", 8000, float("inf")),
        ("dpgan", 1000, 10.0),
    ]:
        assert "snapshots" not in defaults.recommended_config(method, n, eps)
    assert defaults.recommended_config("dpvae", 8000, 2.0)["epochs"] == 10
    assert defaults.recommended_config("dpvae", 8000, 10.0)["epochs"] == 40
    assert defaults.recommended_config("vae", 8000, 2.0)["epochs"] == 40
    # one-shot generators on large data run their step ceiling (early stop cut DP runs short)
    for method in ("dpmerf", "dpkernel"):
        row = defaults.recommended_config(method, 8000, 10.0)
        assert row["patience"] == row["steps"] == 4000
    assert "patience" not in defaults.recommended_config("dpmerf", 1000, 10.0)
    # dpmerf's witness floor rises below eps 3, where a sixth of its draws are noise blobs
    for n in (1000, 8000):
        assert defaults.recommended_config("dpmerf", n, 1.0)["witness_floor"] == 0.4
        assert "witness_floor" not in defaults.recommended_config("dpmerf", n, 5.0)
    assert "witness_floor" not in defaults.recommended_config("dpmerf", 8000, float("inf"))
    # ...and on small data it stops at the release's noise floor (measured there only)
    assert defaults.recommended_config("dpmerf", 1000, 1.0)["stop_at_noise"] is True
    for n, eps in ((1000, 5.0), (8000, 1.0), (1000, float("inf"))):
        assert "stop_at_noise" not in defaults.recommended_config("dpmerf", n, eps)
    # ...and samples small grey sets through a contrast curve there (neutral at eps 10; colour
    # and large data not measured to gain: off)
    assert defaults.recommended_config("dpmerf", 1000, 1.0)["contrast"] == 1.0
    for n, eps, channels in ((1000, 10.0, 1), (8000, 1.0, 1), (1000, 1.0, 3), (1000, None, 1)):
        assert "contrast" not in defaults.recommended_config("dpmerf", n, eps, channels)
    monkeypatch.setitem(defaults._DEFAULTS, "dpmerf", {"small": {"steps": 7, "n_features": 16}})
    monkeypatch.setitem(defaults._BY_EPSILON, "dpmerf", {"small": [(2.0, {"steps": 5})]})
    kw = dict(progress=False, config={"batch_size": 20, "g_width": 8})

    def steps(name: str, epsilon: float) -> int:
        run = privsynth.train(tiny_dataset, "dpmerf", tmp_path / name, epsilon=epsilon, **kw)
        return run.card["config"]["steps"]

    assert steps("a", 1) == 5
    assert steps("b", 5) == 7


def test_colour_gan_data_gets_a_reflection_padded_generator_and_warm_up(tmp_path, fast_gan):
    """Zero padding drew a frame round dpgan's CIFAR images: a colour dpgan run pads by
    reflection, its MERF warm-up generator too; dpmerf (no frame, worse with reflection) and
    grey runs keep the zero padding their validation rows ran."""
    import numpy as np

    from privsynth.data import ImageDataset
    from privsynth.models.defaults import changed_settings, recommended_config
    from privsynth.models.warmup_merf import merf_method

    for method in ("dpgan", "gan"):
        assert recommended_config(method, 4000, 10.0, channels=3)["g_padding"] == "reflect"
        assert "g_padding" not in recommended_config(method, 4000, 10.0, channels=1)
    assert "g_padding" not in recommended_config("dpmerf", 4000, 10.0, channels=3)
    # a benchmark row written before the colour default reads as the trial it now is
    old_row = recommended_config("dpgan", 4000, 10.0)  # no g_padding key
    assert changed_settings("dpgan", 4000, 10.0, old_row, channels=3) == {"g_padding": "zeros"}
    assert changed_settings("dpgan", 4000, 10.0, old_row, channels=1) == {}

    def paddings(generator) -> set[str]:
        return {m.padding_mode for m in generator.modules() if hasattr(m, "padding_mode")}

    rng = np.random.default_rng(0)
    colour = ImageDataset(
        rng.integers(0, 255, (60, 3, 8, 8), dtype=np.uint8), np.arange(60) % 3, list("abc")
    )
    assert paddings(merf_method(colour, "reflect").generator) == {"reflect"}
    assert paddings(merf_method(colour).generator) == {"zeros"}
    for data, padding in ((colour, "reflect"), ("digits", "zeros")):
        run = privsynth.train(
            data, "dpgan", tmp_path / padding, no_dp=True, config=fast_gan, progress=False
        )
        assert run.card["config"]["g_padding"] == padding
        assert paddings(run.synthesizer.generator) == {padding}
