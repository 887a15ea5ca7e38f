"""The README's results table is generated from bench/results, never typed by hand."""

from __future__ import annotations

import runpy
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "readme_results.py"


def test_readme_results_table_matches_the_result_files():
    module = runpy.run_path(str(SCRIPT))
    assert module["main"](["--check"]) == 0, "run: python scripts/readme_results.py"


def test_every_cell_of_the_table_comes_from_a_result_file():
    module = runpy.run_path(str(SCRIPT))
    table = module["table"]()
    assert "Development-set figures" in table
    # the default method's eps-10 MNIST-10k cell, as the result file holds it
    assert "| MNIST-10k | dpmerf | " in table and "94.8 / 96.0" in table


def test_suite_table_sets_the_reference_code_next_to_ours_from_row_files():
    module = runpy.run_path(str(SCRIPT))
    table = module["suite_table"]()
    assert "| digits | dpmerf | 10 | 3 |" in table
    assert "| digits | dpmerf-reference | 10 | 3 |" in table


def test_readme_table_is_the_holdout_scored_once_with_frozen_defaults():
    module = runpy.run_path(str(SCRIPT))
    table = module["holdout_table"]()
    assert "| digits | dpmerf | 10 | 3 |" in table and "| v1 |" in table
    readme = (SCRIPT.parents[1] / "README.md").read_text()
    assert table in readme
    assert module["suite_table"]() not in readme  # validation rows live in docs/benchmarks.md


def test_zoo_rule_table_is_printed_from_the_rule_itself():
    from privsynth.models.auto import RULE

    module = runpy.run_path(str(SCRIPT))
    table = module["rule_table"]()
    for methods, why in RULE.values():
        assert f"| {' > '.join(methods)} | {why} |" in table
    assert table in (SCRIPT.parents[1] / "docs" / "zoo.md").read_text()


def test_suite_rows_off_the_default_are_labelled_with_their_settings():
    """A tuning trial (a config the method's default does not use) or a cell pretrained on
    public images never reads as the default method in the generated table."""
    label = runpy.run_path(str(SCRIPT))["_method_label"]
    row = {"method": "dpmerf", "dataset": "mnist10k", "n_train": 7000, "epsilon": 1.0}
    from privsynth.models.defaults import recommended_config

    assert label({**row, "config": recommended_config("dpmerf", 7000, 1.0)}) == "dpmerf"
    trial = {**recommended_config("dpmerf", 7000, 1.0), "n_features": 500}
    assert label({**row, "config": trial}) == "dpmerf (n_features=500)"
    # a colour row written before the colour default (reflect padding) is that default's trial
    colour = {**row, "method": "dpgan", "dataset": "cifar5k", "n_train": 3585}
    old = recommended_config("dpgan", 3585, 1.0)
    assert label({**colour, "config": old}) == "dpgan (g_padding=zeros)"
    new = recommended_config("dpgan", 3585, 1.0, channels=3)
    assert label({**colour, "channels": 3, "config": new}) == "dpgan"
    gan = {
        "method": "dpgan",
        "dataset": "mnist10k",
        "n_train": 7000,
        "epsilon": 10.0,
        "public_data": "/x/digits",
    }
    assert label({**gan, "config": recommended_config("dpgan", 7000, 10.0)}) == (
        "dpgan + public digits"
    )
    assert label({"method": "dpmerf-reference", "epsilon": 1.0, "config": {"n": 1}}) == (
        "dpmerf-reference"
    )
