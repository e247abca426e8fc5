"""One pool of worker processes for all the stages of a run (``curate.running.stage_pool``)."""

from __future__ import annotations

import json
import os
import time
from functools import partial
from pathlib import Path

import pytest
from datatrove.executor import LocalPipelineExecutor

from curate.running.stage_pool import StagePool, run_on_pool


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


def write_records_note_pandas(folder: str, data, rank: int = 0, world_size: int = 1):
    """A pipeline step (``folder`` bound): writes three records with the run's writer, reads their rows
    back by position, and notes whether pandas is imported in this worker."""
    import sys
    from collections import deque

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curate.records import make_document
    from curate.running.outputs import RecordWriter, numpy_of

    docs = [make_document(record_id=f"s:{rank}-{i}", source_id="s", instruction="質問です", output="答えです。",
                          extra={"row": i, "source_order": 0}) for i in range(3)]
    deque(RecordWriter(f"{folder}/shards").run(iter(docs), rank=rank, world_size=world_size), maxlen=0)
    with pq.ParquetFile(f"{folder}/shards/{rank:05d}.parquet") as f:
        table = f.read()
    # an array of positions, as the dedup plan and the last stage's reader make (pyarrow's first look for pandas)
    rows = numpy_of(table.take(pa.array(np.arange(3))).column("row")).tolist()
    (Path(folder) / f"pandas-{rank}").write_text(json.dumps(["pandas" in sys.modules, rows]), encoding="utf-8")
    yield from ()


@pytest.mark.parametrize("without_pandas", [True, False])
def test_workers_write_and_read_records_without_importing_pandas(tmp_path, without_pandas):
    """The workers' server does not preload pandas; a pool ``without_pandas`` keeps pyarrow from importing
    it (the writers build arrays from buffers), an ordinary one lets pyarrow import it at its first array
    of positions."""
    step = partial(write_records_note_pandas, str(tmp_path))
    with StagePool(2, without_pandas=without_pandas) as pool:
        run_on_pool(LocalPipelineExecutor([step], tasks=2, workers=2, logging_dir=str(tmp_path / "logs")), pool)
    for rank in (0, 1):
        imported, rows = json.loads((tmp_path / f"pandas-{rank}").read_text(encoding="utf-8"))
        assert rows == [0, 1, 2] and imported is (not without_pandas)
