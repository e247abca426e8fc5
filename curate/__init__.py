"""jcurate: curate.

One patch to datatrove, applied on import because it must be in place before datatrove unpickles
our pipeline steps in each worker process: ``check_required_dependencies`` runs in every step's
``__new__`` (so again in every forkserver worker of every stage) and its distribution check reads
the metadata of every installed distribution for each name it checks (~0.15 s a name, over half a
second per worker). ``importlib.metadata.distribution(name)`` answers the same question by name.
"""

from functools import lru_cache as _lru_cache


def _patch_distribution_check() -> None:
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


_patch_distribution_check()
