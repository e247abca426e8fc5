"""The layering rule (no package imports one drawn above it) and the lint rules, checked on every test run."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

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
    (tmp_path / "store/bad.py").write_text("def f():\n    from curate.running.pipeline import STAGES\n", encoding="utf-8")
    for package in LAYERS:
        (tmp_path / package).mkdir(exist_ok=True)
    assert layering_violations(tmp_path) == ["store/bad.py:2: store imports curate, which sits above it"]


def test_ruff_is_clean():
    pytest.importorskip("ruff", reason="ruff is in the dev group: `uv sync` installs it")
    res = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", str(ROOT)],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr


# inside curate: the stages sit on its base and never import the run machinery or the hand-over above them
CURATE_LAYERS = {
    "base": ["config", "records", "columns", "batch_stats", "datatrove_patch", "text"],
    "stages": ["reading", "filters", "dedup", "decont", "scoring"],
    "top": ["running", "handover"],
}
CURATE_RANK = {part: rank for rank, parts in enumerate(CURATE_LAYERS.values()) for part in parts}


def curate_part(module: str) -> str | None:
    """``curate.dedup.plan`` -> ``dedup``; ``curate.config`` -> ``config``; ``curate`` -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "curate" else None


def curate_violations(root: Path = ROOT) -> list[str]:
    bad = []
    for path in sorted((root / "curate").rglob("*.py")):
        rel = path.relative_to(root / "curate")
        own = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        if own not in CURATE_RANK:
            continue  # curate/__init__.py
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + ([f"curate.{a.name}" for a in node.names] if node.module == "curate" else [])
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                target = curate_part(name)
                if target in CURATE_RANK and CURATE_RANK[target] > CURATE_RANK[own]:
                    bad.append(f"curate/{rel}:{node.lineno}: {own} imports curate.{target}, which sits above it")
    return bad


def test_curate_stages_do_not_import_the_run_machinery():
    assert curate_violations() == []


def test_every_curate_folder_is_placed_and_small():
    """Each subpackage has a place in the layering, and no folder of code, benchmarks or tests holds more than
    about 12 modules."""
    folders = [p for p in (ROOT / "curate").iterdir() if p.is_dir() and (p / "__init__.py").is_file()]
    assert {p.name for p in folders} <= set(CURATE_RANK)
    more = [p for top in ("benchmarks", "tests") for p in [ROOT / top, *(ROOT / top).iterdir()]
            if p.is_dir() and (p / "__init__.py").is_file()]
    for folder in [ROOT / name for name in LAYERS] + folders + more:
        modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
        assert len(modules) <= 12, f"{folder.relative_to(ROOT)} holds {len(modules)} modules"


def test_the_curate_check_catches_a_stage_importing_the_runner(tmp_path):
    (tmp_path / "curate/dedup").mkdir(parents=True)
    (tmp_path / "curate/dedup/bad.py").write_text("from curate.running.pipeline import STAGES\n", encoding="utf-8")
    assert curate_violations(tmp_path) == ["curate/dedup/bad.py:1: dedup imports curate.running, which sits above it"]


def test_no_import_circle_between_project_modules():
    """Module-level imports between the project's modules form no cycle (function-level imports, which
    run late, are left out: they cannot deadlock an import)."""
    graph: dict[str, set[str]] = {}
    for package in LAYERS:
        for path in (ROOT / package).rglob("*.py"):
            mod = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            deps = set()
            for node in ast.parse(path.read_text(encoding="utf-8")).body:  # module level only
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    deps.add(node.module)
                    deps |= {f"{node.module}.{a.name}" for a in node.names}
                elif isinstance(node, ast.Import):
                    deps |= {a.name for a in node.names}
            graph[mod] = deps
    graph = {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}
    seen, stack, cycles = set(), [], []

    def visit(m):
        if m in stack:
            cycles.append(stack[stack.index(m):] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for d in sorted(graph[m]):
            visit(d)
        stack.pop()

    for m in sorted(graph):
        visit(m)
    # a package's __init__ importing its own module is not a circle of two modules
    cycles = [c for c in cycles if not any(c[i].startswith(c[i + 1] + ".") or c[i + 1].startswith(c[i] + ".")
                                           for i in range(len(c) - 1))]
    assert cycles == []


def test_no_machine_path_in_code_or_docs():
    """No absolute path of one machine (this one's work folders) in the code or the docs."""
    listed = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=ROOT).stdout.split()
    machine = re.compile(r"(?<![\w./}])/(?:work|root|home/\w+|Users/\w+)/(?!user/)")  # not OUT/work/, ~/..
    bad = []
    for name in listed:
        path = ROOT / name
        if (name == "uv.lock" or name.startswith("data/") or name == "tests/app/test_layout.py" or not path.is_file()
                or path.suffix not in {".py", ".md", ".yaml", ".yml", ".toml", ".sql", ""}):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        bad += [f"{name}:{text.count(chr(10), 0, m.start()) + 1}: {m.group()}" for m in machine.finditer(text)]
    assert bad == []
