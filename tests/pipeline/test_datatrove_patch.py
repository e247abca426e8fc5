"""The datatrove patch (``curate.datatrove_patch``) replaces a private function: fail loudly when datatrove
renames it, changes its signature, or stops calling it by its module-level name."""

from __future__ import annotations

import ast
import importlib.metadata
from pathlib import Path

import curate  # noqa: F401  (applies the patch)


def datatrove_source() -> tuple[str, ast.Module]:
    from datatrove.utils import _import_utils

    source = Path(_import_utils.__file__).read_text(encoding="utf-8")
    return source, ast.parse(source)


def function(tree: ast.Module, name: str) -> ast.FunctionDef | None:
    return next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name), None)


def test_the_replaced_function_still_exists_with_the_same_signature():
    _, tree = datatrove_source()
    original = function(tree, "_is_distribution_available")
    assert original is not None, "datatrove renamed or removed _is_distribution_available: see curate/datatrove_patch.py"
    assert [a.arg for a in original.args.args] == ["distribution_name"]
    # the dependency check calls it by its module-level name, so replacing the attribute takes effect
    check = function(tree, "check_required_dependencies")
    calls = {n.func.id for n in ast.walk(check) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert "_is_distribution_available" in calls


def test_the_patch_is_applied_and_answers_as_datatrove_does():
    from datatrove.utils import _import_utils

    source, tree = datatrove_source()
    original = function(tree, "_is_distribution_available")
    original.decorator_list = []  # datatrove's own body, without its lru_cache
    namespace = {"importlib": importlib}
    exec(compile(ast.Module([original], []), "datatrove_original", "exec"), namespace)
    assert _import_utils._is_distribution_available.__module__ == "curate.datatrove_patch"
    for name in ("numpy", "pyarrow", "no-such-distribution-xyz"):
        assert _import_utils._is_distribution_available(name) == namespace["_is_distribution_available"](name)
