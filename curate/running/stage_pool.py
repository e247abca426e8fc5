"""One pool of worker processes for all the stages of a local run with several workers.

datatrove's ``LocalPipelineExecutor.run`` starts a manager process and a pool of workers for each
stage and ends them with it: ~0.08 s of each stage's start on 2 cores (the pool's workers forked
and set up, the manager's server), four times a run. ``run_on_pool`` is that method (datatrove
0.10) on a pool and a manager the stages share: the same tasks, the same ranks, logs, completion
files and statistics. A worker may run tasks of several stages; datatrove sets each task's logging
up afresh, and every step keeps its state in the task.
"""

from __future__ import annotations

from functools import partial

from datatrove.utils.logging import logger
from datatrove.utils.stats import PipelineStats


class StagePool:
    """The workers and the manager of one run's stages, started at the first stage that needs them;
    ended by ``close`` (a context manager). ``without_pandas``: each worker's pyarrow takes pandas as
    absent (``curate.running.worker_server.keep_pandas_out_of_pyarrow``)."""

    def __init__(self, workers: int, without_pandas: bool = False):
        self.workers = workers
        self.without_pandas = without_pandas
        self._pool = None
        self._manager = None

    def get(self):
        if self._pool is None:
            import os

            import multiprocess
            from multiprocess.managers import SyncManager

            from curate.running.worker_server import end_with, ignore_interrupts

            # multiprocess.Manager() with an initializer: its server process ignores SIGINT itself; it and the
            # workers end with this process, a kill -9 of it included (``end_with``)
            self._manager = SyncManager(ctx=multiprocess.get_context())
            self._manager.start(end_with, (os.getpid(),))
            self._pool = multiprocess.get_context("forkserver").Pool(self.workers, initializer=ignore_interrupts,
                                                                     initargs=(os.getpid(),))
        return self._pool, self._manager

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()  # as datatrove's ``with Pool(...)`` does at each stage's end
            self._pool.join()
        if self._manager is not None:
            self._manager.shutdown()
        self._pool = self._manager = None

    def __enter__(self) -> StagePool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_on_pool(executor, stage_pool: StagePool) -> PipelineStats | None:
    """``LocalPipelineExecutor.run`` of ``executor`` (no ``depends``: stages run in order here) with the
    workers and manager of ``stage_pool``. ``executor.workers`` local ranks are handed out, so at most
    that many of its tasks run at once (and at most the pool's size)."""
    def on_pool(ranks_to_run: list[int], skipped: int) -> list[PipelineStats]:
        pool, manager = stage_pool.get()
        ranks_q = manager.Queue()
        for i in range(executor.workers):
            ranks_q.put(i)
        completed_counter = manager.Value("i", skipped)
        completed_lock = manager.Lock()
        return list(pool.imap_unordered(partial(_run_task, executor, stage_pool.without_pandas, ranks_q=ranks_q,
                                                completed=completed_counter, completed_lock=completed_lock),
                                        ranks_to_run))

    return _run_stage(executor, on_pool)


def run_in_process(executor) -> PipelineStats | None:
    """``LocalPipelineExecutor.run`` of a one-worker ``executor`` (no ``depends``): its tasks in turn in this
    process, as datatrove does, without the manager process datatrove starts for the ranks' queue (one
    rank, so an in-process queue serves). Why: that manager, forked per stage, waits for connections
    forever and stayed behind after a ``kill -9`` of the run."""
    import queue
    from copy import deepcopy

    assert executor.workers == 1, "run_in_process runs one worker's tasks"

    def in_turn(ranks_to_run: list[int], skipped: int) -> list[PipelineStats]:
        ranks_q = queue.Queue()
        ranks_q.put(0)
        pipeline, stats = executor.pipeline, []
        for rank in ranks_to_run:
            executor.pipeline = deepcopy(pipeline)
            stats.append(executor._launch_run_for_rank(rank, ranks_q))
        return stats

    return _run_stage(executor, in_turn)


def _run_stage(executor, run_ranks) -> PipelineStats | None:
    """What ``LocalPipelineExecutor.run`` does around its tasks (datatrove 0.10): nothing when every local
    rank completed, else the executor's JSON, the incomplete ranks to ``run_ranks(ranks, skipped)``, and
    their stats summed into ``stats.json``."""
    executor._launched = True
    local = range(executor.local_rank_offset, executor.local_rank_offset + executor.local_tasks)
    if all(map(executor.is_rank_completed, local)):
        logger.info(f"Not doing anything as all {executor.local_tasks} tasks have already been completed.")
        return None
    executor.save_executor_as_json()
    ranks_to_run = executor.get_incomplete_ranks(local)
    if (skipped := executor.local_tasks - len(ranks_to_run)) > 0:
        logger.info(f"Skipping {skipped} already completed tasks")
    stats = sum(run_ranks(ranks_to_run, skipped), start=PipelineStats())
    with executor.logging_dir.open("stats.json", "wt") as statsfile:
        stats.save_to_disk(statsfile)
    logger.success(stats.get_repr(f"All {executor.local_tasks} tasks"))
    return stats


def _run_task(executor, without_pandas: bool, rank: int, **kwargs):
    """A task in a worker: datatrove's ``_launch_run_for_rank``, pyarrow first kept from pandas where asked."""
    if without_pandas:
        from curate.running.worker_server import keep_pandas_out_of_pyarrow

        keep_pandas_out_of_pyarrow()
    return executor._launch_run_for_rank(rank, **kwargs)
