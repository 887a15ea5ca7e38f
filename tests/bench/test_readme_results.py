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
