"""The forkserver that datatrove's local executor starts its workers from, started early.

Kept apart from ``curate.pipeline`` (1.5 s of imports) so that the command line can start it
first: the server then imports the pipeline's modules on the other core while the main process
imports its own, instead of after it.
"""

from __future__ import annotations

# what every worker of every stage imports (datatrove, pyarrow, numpy, fugashi, our steps; scipy.sparse for the
# shipped scorer, which imports it lazily; pandas, which pyarrow imports at a worker's first ``pa.array`` of a
# Python list, 0.3-0.5 s; scipy's graph components for the dedup plan): ~1.5 s a process
WORKER_MODULES = ["__main__", "curate.pipeline", "scipy.sparse", "pandas", "scipy.sparse.csgraph"]


def start_worker_server() -> None:
    """Starts (once per process) the forkserver with the pipeline's modules preloaded, so that each
    worker of each stage starts forked with them instead of importing them again: a stage's pool
    started in ~1.5 s, longer than a small stage's work. Only modules are loaded: models and taggers
    are created lazily, in the workers. Returns at once: the server imports in the background, and
    a pool waits for it. Later calls change nothing while the server runs."""
    import multiprocess
    from multiprocess import forkserver

    multiprocess.get_context("forkserver").set_forkserver_preload(WORKER_MODULES)
    forkserver.ensure_running()
