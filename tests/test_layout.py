"""The layering rule (no package imports one drawn above it) and the lint rules, checked on every test run."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# bottom to top, as drawn in the README's layout section; a package may import its own rank or below
LAYERS = ["core", "store", "licenses", "curate", "train", "eval", "jcurate"]
RANK = {name: i for i, name in enumerate(LAYERS)}


def imported_packages(path: Path) -> set[tuple[str, int]]:
    """(top-level project package, line) of every import in the file, function-level imports included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {(n.split(".")[0], node.lineno) for n in names if n.split(".")[0] in RANK}
    return found


def layering_violations(root: Path = ROOT) -> list[str]:
    bad = []
    for package in LAYERS:
        for path in sorted((root / package).rglob("*.py")):
            for target, line in sorted(imported_packages(path)):
                if RANK[target] > RANK[package]:
                    bad.append(f"{path.relative_to(root)}:{line}: {package} imports {target}, which sits above it")
    return bad


def test_no_package_imports_one_above_it():
    assert layering_violations() == []


def test_the_check_catches_an_upward_import(tmp_path):
    (tmp_path / "store").mkdir()
    (tmp_path / "store/bad.py").write_text("def f():\n    from curate.pipeline import STAGES\n", encoding="utf-8")
    for package in LAYERS:
        (tmp_path / package).mkdir(exist_ok=True)
    assert layering_violations(tmp_path) == ["store/bad.py:2: store imports curate, which sits above it"]


def test_ruff_is_clean():
    pytest.importorskip("ruff", reason="ruff is in the dev group: `uv sync` installs it")
    res = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", str(ROOT)],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
