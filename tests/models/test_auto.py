"""models/auto.py: one test per branch of the rule, the time-limit paths (fits, fewer steps, the
next method, refusal), and the rule agreeing with the validation rows it cites."""

from __future__ import annotations

import pytest

from privsynth.errors import ConfigError
from privsynth.models import auto
from privsynth.models.auto import NEEDS_INPUT, RULE, choose, estimate_seconds
from privsynth.models.defaults import recommended_config


def _auto_rule_script():
    """bench/auto_rule.py, the script that prints the validation table RULE cites."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "auto_rule.py"
    spec = importlib.util.spec_from_file_location("bench_auto_rule", path)
    rule_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rule_script)
    return rule_script


@pytest.mark.parametrize(
    ("shape", "n_hat", "epsilon", "key"),
    [
        ((8, 8), 1200, 10, ("grey", "small-n", "high-eps")),
        ((8, 8), 1200, 1, ("grey", "small-n", "low-eps")),
        ((28, 28), 7000, 10, ("grey", "large-n", "high-eps")),
        ((28, 28), 7000, 1, ("grey", "large-n", "low-eps")),
        # the branch follows N_hat, not the shape: small 28x28 data reads the small rows
        ((28, 28), 900, 2.9, ("grey", "small-n", "low-eps")),
        ((8, 8), 3000, 3.0, ("grey", "large-n", "high-eps")),
    ],
)
def test_each_grey_branch_picks_its_first_method(shape, n_hat, epsilon, key):
    choice = choose(shape, 1, n_hat, epsilon)
    methods, why = RULE[key]
    assert choice.method == methods[0] and choice.config_overrides == {}
    assert why in choice.reasons[0] and f"N_hat {n_hat:g}" in choice.reasons[0]


def test_colour_branch_whatever_the_size_and_epsilon():
    methods, why = RULE[("colour", "any", "any")]
    for n_hat, eps in ((500, 1), (50_000, 10)):
        choice = choose((32, 32), 3, n_hat, eps)
        assert choice.method == methods[0] and why in choice.reasons[0]


def test_before_the_size_release_the_choice_is_provisional():
    choice = choose((8, 8), 1, None, 10, time_limit_min=60)
    assert choice.method == auto.PROVISIONAL[0][0]
    assert "N_hat unknown" in choice.reasons[0] and "provisional" in choice.reasons[0]


@pytest.mark.parametrize("epsilon", [0, float("inf"), float("nan")])
def test_needs_a_finite_positive_epsilon(epsilon):
    with pytest.raises(ConfigError, match="finite epsilon"):
        choose((8, 8), 1, 1000, epsilon)


def _minutes(method, shape, n_hat, eps, knob):
    work = recommended_config(method, n_hat, eps)[knob]
    return estimate_seconds(method, shape[0] * shape[1], n_hat, work) / 60


def test_time_limit_that_fits_keeps_the_defaults():
    first = RULE[("grey", "large-n", "high-eps")][0][0]
    need = _minutes(first, (28, 28), 7000, 10, "steps")
    choice = choose((28, 28), 1, 7000, 10, time_limit_min=need * 1.01)
    assert choice.method == first and choice.config_overrides == {}
    assert "fits --time-limit" in choice.reasons[-1]


def test_time_limit_cuts_the_steps_to_fit():
    first = RULE[("grey", "large-n", "high-eps")][0][0]
    need = _minutes(first, (28, 28), 7000, 10, "steps")
    choice = choose((28, 28), 1, 7000, 10, time_limit_min=need / 2)
    steps = choice.config_overrides["steps"]
    assert choice.method == first and auto.MIN_WORK["steps"] <= steps
    assert estimate_seconds(first, 784, 7000, steps) <= 60 * need / 2


def test_time_limit_moves_to_a_cheaper_method(monkeypatch):
    """A DP-SGD first choice whose epochs cannot fit gives way to the cheapest method."""
    key = ("grey", "large-n", "high-eps")
    monkeypatch.setitem(RULE, key, (("dpvae",), "test"))
    floor = estimate_seconds("dpvae", 784, 7000, auto.MIN_WORK["epochs"]) / 60
    cheapest = estimate_seconds(auto.CHEAPEST, 784, 7000, auto.MIN_WORK["steps"]) / 60
    assert cheapest < floor
    choice = choose((28, 28), 1, 7000, 10, time_limit_min=(cheapest + floor) / 2)
    assert choice.method == auto.CHEAPEST
    assert any("dpvae needs about" in r for r in choice.reasons)


@pytest.mark.parametrize("n_hat", [None, 7000])
def test_time_limit_nothing_fits_is_one_line_even_before_the_size_release(n_hat):
    with pytest.raises(ConfigError) as e:
        choose((28, 28), 1, n_hat, 10, time_limit_min=0.01)
    message = str(e.value)
    assert "\n" not in message and "no method fits" in message and "raise --time-limit" in message


def test_cost_grows_with_the_image_and_with_n_for_dp_sgd():
    assert estimate_seconds("dpmerf", 784, 1000, 100) > estimate_seconds("dpmerf", 64, 1000, 100)
    assert estimate_seconds("dpmerf", 64, 1000, 100) == estimate_seconds("dpmerf", 64, 9000, 100)
    assert estimate_seconds("dpvae", 64, 2000, 10) == 2 * estimate_seconds("dpvae", 64, 1000, 10)


def test_rule_rows_agree_with_the_validation_rows_they_cite():
    """Each branch ranks the methods as their mean LeNet TSTR on its dataset and epsilon in
    bench/results/suite/validation/ does (read by bench/auto_rule.py, default configs only),
    best first: every protocol that scored some of them ranks those in the branch's order, and
    one protocol scored them all. Grey small / large sets cite digits / MNIST-10k at eps 1 and
    10; the one colour branch, whatever the epsilon, cites CIFAR-10-5k at both."""
    rule_script = _auto_rule_script()
    ranking = rule_script.ranking(rule_script.rows(rule_script.RESULTS))
    cited = {"small-n": "digits", "large-n": "mnist10k", "any": "cifar5k"}
    epsilons = {"low-eps": (1.0,), "high-eps": (10.0,), "any": (1.0, 10.0)}
    for (_kind, size, eps_class), (methods, _) in RULE.items():
        for eps in epsilons[eps_class]:
            # methods are ranked within one protocol; every protocol that scored the set agrees
            protocols = [key for key in ranking if key[1:] == (cited[size], eps)]
            assert protocols, (size, eps)
            complete = False
            for key in protocols:
                # methods that need an input auto cannot supply (dpmepf: a public feature
                # network) are scored but never chosen
                ranked = [m for m, _ in ranking[key] if m not in NEEDS_INPUT]
                assert [m for m in methods if m in ranked] == ranked, (key, ranked)
                complete |= ranked == list(methods)
            assert complete, (size, eps, "no protocol scored every method of the branch")


def test_rule_ranking_prefers_rows_at_the_full_default_then_rows_resampled_from_it():
    """A method's rows at its full default rank it; a row that trained at the default and only
    sampled another way (an older sampling default) stands in where the method has none; a row
    that trained another way never counts."""
    rule_script = _auto_rule_script()
    default = recommended_config("dpmerf", 1257, 1.0)
    assert default["contrast"] > 0  # a sampling-time field at the default, to resample without

    def row(method, config, tstr):
        place = {"protocol": "p", "dataset": "digits", "epsilon": 1.0, "n_train": 1257}
        return {**place, "channels": 1, "method": method, "config": config, "tstr": {"lenet": tstr}}

    resampled = {k: v for k, v in default.items() if k != "contrast"}
    found = [
        row("dpmerf", default, 0.9),
        row("dpmerf", resampled, 0.5),  # not averaged in: the method has full-default rows
        row("dpmerf", {**default, "stop_at_noise": False}, 0.1),  # trained another way
        row("dpkernel", {"steps": 2000, "contrast": 3.0}, 0.8),  # resampled only: stands in
        row("dpkernel", {"steps": 600}, 0.99),  # trained another way: never counts
    ]
    assert rule_script.ranking(found) == {
        ("p", "digits", 1.0): [("dpmerf", 0.9), ("dpkernel", 0.8)]
    }


def test_rule_reads_no_row_of_a_non_private_twin(tmp_path):
    """A no-DP row (epsilon "inf") is a ceiling beside the rule, never one of its choices:
    `auto` takes a finite epsilon, so bench/auto_rule.py's rows leave it out."""
    import json

    rule_script = _auto_rule_script()
    folder = tmp_path / "validation" / "digits"
    folder.mkdir(parents=True)
    for eps in (1.0, "inf"):
        row = {"score": "validation", "dirty": False, "protocol": "p", "epsilon": eps}
        (folder / f"row-{eps}.json").write_text(json.dumps(row))
    assert [r["epsilon"] for r in rule_script.rows(tmp_path)] == [1.0]
