"""Shape rules a reviewer would otherwise check by hand: short functions."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LONGEST = 60  # lines of a function, decorators and docstring included
EXEMPT = ("bench/", "stores/migrations/versions/", ".venv/", ".stack/", "build/")


def python_files() -> list[Path]:
    return [p for p in ROOT.rglob("*.py") if not str(p.relative_to(ROOT)).startswith(EXEMPT)]


def test_no_function_is_over_sixty_lines():
    files = python_files()
    assert len(files) > 100  # the scan sees the tree
    long = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                if node.end_lineno - first + 1 > LONGEST:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - first + 1})")
    assert not long, "functions over 60 lines: " + ", ".join(long)
