"""One pool of worker processes for all the stages of a run (``curate.stage_pool``)."""

from __future__ import annotations

import json
import os
import time
from functools import partial
from pathlib import Path

import pytest
from datatrove.executor import LocalPipelineExecutor

from curate.stage_pool import StagePool, run_on_pool


def record_pid(folder: str, data, rank: int = 0, world_size: int = 1):
    """A pipeline step (with ``folder`` bound): writes which process ran the task. (Not an environment
    variable: the workers are forked from a server that may have started before the test.)"""
    (Path(folder) / f"{os.getpid()}-{rank}-{time.monotonic_ns()}").write_text("", encoding="utf-8")
    yield from ()


def fail_rank_1(data, rank: int = 0, world_size: int = 1):
    if rank == 1:
        raise RuntimeError("task 1 fails")
    yield from ()


def test_stages_share_the_workers_and_keep_datatrove_s_records(tmp_path):
    step = partial(record_pid, str(tmp_path))
    with StagePool(2) as pool:
        for stage in ("a", "b", "c"):
            executor = LocalPipelineExecutor([step], tasks=2, workers=2, logging_dir=str(tmp_path / stage))
            stats = run_on_pool(executor, pool)
            assert stats is not None
            # the merged statistics (none for a plain function step) and a completion file per task
            assert json.loads((tmp_path / stage / "stats.json").read_text(encoding="utf-8")) == []
            assert sorted(p.name for p in (tmp_path / stage / "completions").iterdir()) == ["00000", "00001"]
        # done again: nothing to run (a resumed run skips completed stages)
        again = LocalPipelineExecutor([step], tasks=2, workers=2, logging_dir=str(tmp_path / "a"))
        assert run_on_pool(again, pool) is None
    runs = [p.name.split("-") for p in tmp_path.iterdir() if "-" in p.name]
    assert len(runs) == 6, "three stages of two tasks"
    assert len({pid for pid, _, _ in runs}) <= 2, "the same two workers ran every stage"


def test_a_failing_task_fails_the_stage(tmp_path):
    with StagePool(2) as pool:
        executor = LocalPipelineExecutor([fail_rank_1], tasks=2, workers=2, logging_dir=str(tmp_path / "x"))
        with pytest.raises(RuntimeError, match="task 1 fails"):
            run_on_pool(executor, pool)
    assert not (tmp_path / "x/completions/00001").exists()
