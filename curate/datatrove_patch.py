"""A patch to datatrove's dependency check, applied on import of ``curate`` (see ``curate/__init__.py``).

It must be in place before datatrove unpickles our pipeline steps in each worker process:
``check_required_dependencies`` runs in every step's ``__new__`` (so again in every forkserver worker
of every stage) and its distribution check (``datatrove.utils._import_utils._is_distribution_available``)
reads the metadata of every installed distribution for each name it checks (~0.15 s a name, over half
a second per worker). ``importlib.metadata.distribution(name)`` answers the same question by name.
``tests/pipeline/test_datatrove_patch.py`` fails if datatrove renames that private function or changes its
signature.
"""

from functools import lru_cache as _lru_cache


def patch_distribution_check() -> None:
    """Replaces datatrove's private ``_is_distribution_available`` with a lookup by name (cached)."""
    import importlib.metadata

    from datatrove.utils import _import_utils

    @_lru_cache
    def _is_distribution_available(distribution_name: str):
        try:
            importlib.metadata.distribution(distribution_name)
        except importlib.metadata.PackageNotFoundError:
            return None  # what datatrove's check returns when nothing matches
        return True

    _import_utils._is_distribution_available = _is_distribution_available
