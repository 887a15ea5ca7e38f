"""List the functions in src/ longer than a limit (80 lines by default), longest first.

    python scripts/long_functions.py [--max-lines 80] [PATH ...]

Exit status 1 when any function is over the limit, so CI or a hook can use it as a check.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def function_lengths(path: Path) -> list[tuple[str, int, int]]:
    """(qualified name, first line, length in lines) for every function and method in ``path``.

    The length runs from the ``def`` line (decorators excluded) to the last line of the body,
    docstring and comments inside included: what a reader scrolls through.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[str, int, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                found.append((name, child.lineno, child.end_lineno - child.lineno + 1))
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def long_functions(paths: list[Path], max_lines: int = 80) -> list[tuple[str, str, int, int]]:
    """(file, qualified name, first line, length) of each function over ``max_lines``."""
    files = sorted(f for p in paths for f in ([p] if p.is_file() else p.rglob("*.py")))
    out = []
    for f in files:
        for name, line, length in function_lengths(f):
            if length > max_lines:
                out.append((str(f), name, line, length))
    return sorted(out, key=lambda r: -r[3])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, default=[SRC])
    parser.add_argument("--max-lines", type=int, default=80)
    args = parser.parse_args(argv)
    rows = long_functions(args.paths, args.max_lines)
    for file, name, line, length in rows:
        shown = os.path.relpath(file)  # clickable from where it was run
        print(f"{length:5d}  {shown}:{line}  {name}")
    return 1 if rows else 0


if __name__ == "__main__":
    sys.exit(main())
