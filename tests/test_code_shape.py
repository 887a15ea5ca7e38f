"""Functions stay under 80 lines in the modules already split (scripts/long_functions.py lists
the rest of src/)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPLIT = [
    "src/privsynth/report/html.py",
    "src/privsynth/report/card_text.py",
    "src/privsynth/evaluate/pipeline.py",
    "src/privsynth/privacy/ledger",
]


def _script():
    spec = importlib.util.spec_from_file_location(
        "long_functions", ROOT / "scripts/long_functions.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_split_modules_have_no_function_over_80_lines():
    long = _script().long_functions([ROOT / p for p in SPLIT], max_lines=80)
    assert long == [], "split these functions: " + ", ".join(f"{f}:{n}" for f, n, _, _ in long)


def test_the_script_finds_a_long_method_by_its_qualified_name(tmp_path, capsys):
    body = "\n".join(f"        x{i} = {i}" for i in range(80))
    (tmp_path / "m.py").write_text(
        f"class A:\n    def long(self):\n{body}\n\n    def short(self):\n        pass\n"
    )
    script = _script()
    assert script.long_functions([tmp_path], max_lines=80) == [
        (str(tmp_path / "m.py"), "A.long", 2, 81)
    ]
    assert script.main([str(tmp_path), "--max-lines", "81"]) == 0
    assert script.main([str(tmp_path)]) == 1
    assert "A.long" in capsys.readouterr().out
