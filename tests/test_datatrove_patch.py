"""The datatrove patch (``curate.datatrove_patch``) replaces a private function: fail loudly when datatrove
renames it, changes its signature, or stops calling it by its module-level name."""

from __future__ import annotations

import importlib.util
import inspect

import curate  # noqa: F401  (applies the patch)


def original_module():
    """A fresh, unpatched copy of datatrove's ``_import_utils``, loaded from its file."""
    from datatrove.utils import _import_utils

    spec = importlib.util.spec_from_file_location("_import_utils_fresh", _import_utils.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_replaced_function_still_exists_with_the_same_signature():
    fresh = original_module()
    assert hasattr(fresh, "_is_distribution_available"), "datatrove renamed _is_distribution_available"
    original = inspect.unwrap(fresh._is_distribution_available)
    assert list(inspect.signature(original).parameters) == ["distribution_name"]
    # the dependency check looks the function up by its module-level name, so the patch takes effect
    assert "_is_distribution_available(" in inspect.getsource(fresh.check_required_dependencies)


def test_the_patch_is_applied_and_answers_as_datatrove_does():
    from datatrove.utils import _import_utils

    fresh = original_module()
    assert _import_utils._is_distribution_available.__module__ == "curate.datatrove_patch"
    for name in ("numpy", "pyarrow", "no-such-distribution-xyz"):
        assert _import_utils._is_distribution_available(name) == fresh._is_distribution_available(name)
