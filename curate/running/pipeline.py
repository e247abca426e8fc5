"""``jcurate run``: the curation pipeline as datatrove executor stages.

Stages (each a datatrove executor; ``depends`` chains them):

1. ``filter``: read every source -> read errors -> quality -> Japanese -> write the
   survivors (intermediate Parquet) -> their part shingles (for verifying near-duplicate
   candidates) -> MinHash signatures.
2. ``minhash-buckets``: LSH bucket matching (datatrove's stage, its merge done by one sort; one
   task per worker, each merging several buckets).
3. ``near-pairs``: one task per worker (at most one per band) reads its share of the bands, finds their
   near-duplicate candidate pairs and writes each to the verify task that owns it.
4. ``near-verify``: one task per worker verifies its share of the near-duplicate candidate
   pairs (the shingles the filter tasks wrote) and writes the verified pairs.
5. ``dedup-plan``: one task joins the verified pairs into duplicate groups, decides their
   survivors, and lists each filtered shard's duplicates.
6. ``dedup-decont``: re-read the filtered shards: the listed duplicates are copied to
   ``OUT/dropped/exact_dedup`` and ``OUT/dropped/near_dedup`` in bulk (Arrow), the rest ->
   decontamination -> the shipped scorer's score -> write the kept records.

Every filter has an exclusion writer, and the last stage's reader writes the duplicates, so each dropped
record lands in ``OUT/dropped/<stage>/`` with its reason and value. Workers never touch DuckDB; the
report and the store are built from the Parquet shards afterwards.

Resuming: ``OUT/work/run.json`` holds a fingerprint of the run's inputs (sources and their
files' sizes and times, the configuration, executor, workers and the pipeline's code), the id the run got
when it started (``run_folder_id``: kept on resume; the store records it, so a folder is stored once) and
whether the run finished (``mark_finished``, after the store is written). A run started again on the same
``OUT`` with the same fingerprint after it was killed keeps its outputs and skips the tasks
DataTrove marked completed (``logs/<stage>/completions/``); a task that was cut off is run
again from its start and overwrites its partial files. Any other case starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.errors import JcurateError
from curate.config import PipelineConfig
from curate.decont.decontaminate import InstructionDecontFilter, build_decont_index
from curate.dedup.minhash import OnePermutationMinhashSignature, SortedMinhashBuckets
from curate.dedup.near_duplicates import minhash_config
from curate.dedup.part_shingles import PartShingleWriter
from curate.dedup.plan import DedupPlan, NearPairSharder, NearPairVerifier, PlanTableWriter, verify_threads
from curate.filters.record_filters import JapaneseLanguageFilter, JapaneseQualityFilter, ReadErrorFilter
from curate.reading.manifest import Source
from curate.reading.readers import SourceReader, check_field_mappings, check_readable, find_repeated_ids
from curate.running.outputs import RecordWriter, dropped_writer, intermediate_reader
from curate.running.progress import ProgressCounter, count_input_rows, machine_busy_seconds, parquet_rows
from curate.running.stage_pool import StagePool, run_in_process, run_on_pool
from curate.running.worker_server import drain_worker_output, start_worker_server
from curate.scoring.shipped_scorer import ShippedScoreStep, model_folder
from curate.text.tokenizers import make_tokenizer
from store.ids import new_id

STAGES = ("read", "quality", "language", "exact_dedup", "near_dedup", "decontamination")
# the records' order that task 0 of the minhash-buckets stage builds after its buckets costs about as much as
# merging four buckets (1M records, two tasks of ten buckets: 3.9 s of buckets, 1.8 s of order in task 0), so
# task 0 merges four buckets fewer than an even share
PLAN_TABLE_BUCKETS = 4
# the stages whose drops the filter stage writes (``OUT/dropped/<stage>``): the later stages only split the rest
FILTER_STAGE_DROPS = STAGES[:3]
EXECUTORS = ("local", "ray", "slurm")


@dataclass
class ExecutorOptions:
    kind: str = "local"
    workers: int = 1
    verbose: bool = False  # let datatrove's per-task logs through to the terminal
    slurm: dict = field(default_factory=dict)  # partition, time, cpus_per_task, mem_per_cpu_gb, ...
    fresh: bool = False  # start afresh even where an interrupted run of the same inputs could resume


RUN_STATE = "work/run.json"
LAST_STAGE = "dedup-decont"  # build_stages' last: its completions say the stages all ran


def run_fingerprint(sources: list[Source], config: PipelineConfig, options: ExecutorOptions) -> str:
    """What must be equal for a killed run's outputs to be reused: every source (its files with
    size and modification time), the configuration, the executor, the task counts and the
    pipeline's own code (an upgrade in between must not mix old and new decisions)."""
    files = [[f, os.stat(f).st_size, os.stat(f).st_mtime_ns] for s in sources for f in s.files]
    code = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(Path(__file__).parent.glob("*.py")))).hexdigest()
    described = {"sources": [{**asdict(s), "files": None} for s in sources], "files": files,
                 "config": config.to_dict(), "executor": options.kind, "workers": options.workers, "code": code}
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()[:24]


def run_state(out: Path) -> dict | None:
    """``OUT/work/run.json``'s contents, or None where there is no readable one."""
    try:
        return json.loads((out / RUN_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def unfinished_fingerprint(out: Path) -> str | None:
    """The fingerprint of the unfinished run ``out`` holds, or None (no run, or a finished one)."""
    state = run_state(out)
    return None if state is None or state.get("finished") else state.get("fingerprint")


def can_resume(out: Path, fingerprint: str) -> bool:
    """True where ``out`` holds an unfinished run of the same inputs."""
    return unfinished_fingerprint(out) == fingerprint


def run_folder_id(out: Path) -> str | None:
    """The id the run in ``out`` was given when it started (a resumed run keeps it): the store records it
    with the run, so the same folder is never stored twice. None for a folder from before these ids."""
    state = run_state(out)
    return None if state is None else state.get("run_folder_id")


def mark_finished(out: Path) -> None:
    """After the store holds the run: a later run on the same ``OUT`` starts afresh."""
    path = out / RUN_STATE
    if path.is_file():
        state = json.loads(path.read_text(encoding="utf-8"))
        path.write_text(json.dumps({**state, "finished": True}), encoding="utf-8")


def unfinished_run_problem(out: Path) -> str | None:
    """Why ``out`` holds no finished run, or None where it holds one: a run finished once the store
    holds it (``mark_finished``) or, on Slurm, once the last stage's every task has completed."""
    state = run_state(out)
    if state is None:
        return f"{out} is not a jcurate run folder (no readable {RUN_STATE})"
    if state.get("finished"):
        return None
    last = out / "work/logs" / LAST_STAGE
    try:
        tasks = json.loads((last / "executor.json").read_text(encoding="utf-8"))["world_size"]
    except (OSError, ValueError, KeyError):
        tasks = None
    done = completed_tasks(last)
    if tasks is not None and done >= tasks:
        return None
    stage = f"its last stage {LAST_STAGE} has {done} of {tasks} task(s) completed" if tasks else \
        f"its last stage {LAST_STAGE} never started"
    return f"the run in {out} did not finish ({stage}); the same `jcurate run` command resumes it"


def repeated_id_lines(sources: list[Source], repeated_ids: dict) -> list[str]:
    """One line per source with rows whose id repeats an earlier row's, naming the first of them."""
    lines = []
    for source in sources:
        if files := repeated_ids.get(source.id):
            n = sum(len(rows) for rows in files.values())
            file, rows = next(iter(files.items()))
            lines.append(f"source '{source.id}': {n} row(s) repeat an earlier row's id, dropped at stage read "
                         f"(duplicate_id; is id_field '{source.id_field}' the records' id?); e.g. {file}: "
                         f"{rows[min(rows)]}")
    return lines


def completed_tasks(logging_dir: Path) -> int:
    folder = logging_dir / "completions"
    return sum(1 for _ in folder.iterdir()) if folder.is_dir() else 0


def build_stages(sources: list[Source], config: PipelineConfig, out: Path, workers: int,
                 repeated_ids: dict | None = None) -> list[tuple[str, list, int]]:
    """The pipeline as (name, steps, tasks) stages, for any executor; ``repeated_ids``: the rows whose id
    an earlier row holds (``find_repeated_ids``), dropped by the reader."""
    work = out / "work"
    near = config.near_dedup if config.near_dedup.enabled else None
    filter_stage = [
        SourceReader(sources, repeated_ids),
        ProgressCounter(str(work / "progress/filter")),
        ReadErrorFilter(exclusion_writer=dropped_writer(str(out), "read")),
        JapaneseQualityFilter(config.quality, exclusion_writer=dropped_writer(str(out), "quality")),
        JapaneseLanguageFilter(config.language, exclusion_writer=dropped_writer(str(out), "language")),
        # the filtered records, read back by the plan and the last stage only: LZ4 reads in half the time of
        # Snappy (0.04 vs 0.08 s per 30k records), the same size; kept and dropped records stay Snappy
        RecordWriter(str(work / "filtered"), compression="lz4"),
    ]
    if near:
        filter_stage.append(PartShingleWriter(str(work / "part_shingles"), near))
        filter_stage.append(
            OnePermutationMinhashSignature(str(work / "minhash/sigs"), config=minhash_config(near),
                                           language=make_tokenizer(near.tokens))
        )
    stages = [("filter", filter_stage, workers)]
    if near:
        stages.append((
            "minhash-buckets",
            [SortedMinhashBuckets(str(work / "minhash/sigs"), str(work / "minhash/buckets"), config=minhash_config(near),
                                  task_zero_extra=PLAN_TABLE_BUCKETS),
             PlanTableWriter(str(work / "filtered"), str(work / "plan_table"), exact=config.exact_dedup.enabled)],
            min(workers, near.num_buckets),  # a task per bucket cost more in start-up than in work
        ))
        # the candidate pairs found once, a share of the bands per task, and written to the verify task that
        # owns each: every verify task reading and sorting every band was W times the work with W tasks
        pair_tasks = min(workers, near.num_buckets)
        stages.append((
            "near-pairs",
            [NearPairSharder(str(work / "minhash/buckets"), str(work / "near_pairs"), str(work / "plan_table"),
                             verify_tasks=workers)],
            pair_tasks,
        ))
        # the candidate pairs verified in shares, one per worker: the pairs are what grows with the input, and
        # verifying them was most of the single plan task's time and memory (its shingles). Fewer tasks than
        # cores: each verifies on the idle cores' threads too (one task on 2 cores: 1.3x faster at 1M records)
        stages.append((
            "near-verify",
            [NearPairVerifier(str(work / "filtered"), str(work / "near_pairs"), pair_tasks, str(work / "near_edges"),
                              exact=config.exact_dedup.enabled, near=near,
                              shingles_folder=str(work / "part_shingles"), table_folder=str(work / "plan_table"),
                              threads=max(1, verify_threads() // workers))],
            workers,
        ))
    plan = str(work / "dedup_plan.parquet")
    stages.append((
        "dedup-plan",
        [DedupPlan(str(work / "filtered"), plan, exact=config.exact_dedup.enabled,
                   edges_folder=str(work / "near_edges") if near else None, verify_tasks=workers,
                   duplicates_folder=str(work / "duplicates"),
                   table_folder=str(work / "plan_table") if near else None)],
        1,
    ))
    # the plan's duplicates go to dropped/exact_dedup and dropped/near_dedup as rows: only the rest are documents
    final = [intermediate_reader(str(work / "filtered"), duplicates_folder=str(work / "duplicates"),
                                 dropped_folder=str(out / "dropped")),
             ProgressCounter(str(work / "progress/dedup-decont"))]
    if config.decontamination.enabled:
        final.append(InstructionDecontFilter.from_config(str(work / "decont_index"), config.decontamination,
                                                         exclusion_writer=dropped_writer(str(out), "decontamination")))
    if config.scoring.shipped:
        if not (model_folder(config.scoring.shipped_model) / "model.json").is_file():
            raise JcurateError(f"config key 'scoring.shipped_model': no model {config.scoring.shipped_model!r} "
                               f"(a name under curate/scoring/models/ or a folder with a model.json)")
        final.append(ShippedScoreStep(config.scoring.shipped_model))
    final.append(RecordWriter(str(out / "kept")))
    stages.append((LAST_STAGE, final, workers))
    return stages


def make_executor(kind: str, steps: list, tasks: int, workers: int, logging_dir: Path, depends, slurm: dict,
                  skip_completed: bool = False):
    if kind == "local":
        from datatrove.executor import LocalPipelineExecutor

        # with one worker datatrove runs the stage in this process; with several, run_stages runs every stage
        # on the run's shared pool (curate.running.stage_pool), a single task (the dedup plan) included: in a worker
        # forked with the pipeline's modules loaded, so this process never imports pandas and scipy (0.6 s
        # on a core the filter workers need) and its memory stays small
        return LocalPipelineExecutor(steps, tasks=tasks, workers=min(workers, tasks), logging_dir=str(logging_dir),
                                     depends=depends, skip_completed=skip_completed)
    if kind == "ray":
        try:
            from datatrove.executor.ray import RayPipelineExecutor
        except ImportError as e:  # pragma: no cover - depends on the extra
            raise JcurateError(f"--executor ray needs Ray: install the extra, `uv sync --extra ray` ({e})") from None
        return RayPipelineExecutor(steps, tasks=tasks, workers=min(workers, tasks), logging_dir=str(logging_dir),
                                   depends=depends, skip_completed=skip_completed)
    if kind == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        missing = [k for k in ("partition", "time") if k not in slurm]
        if missing:
            raise JcurateError(f"--executor slurm needs config key(s) slurm.{', slurm.'.join(missing)}")
        return SlurmPipelineExecutor(steps, tasks=tasks, workers=workers, logging_dir=str(logging_dir),
                                     depends=depends, skip_completed=skip_completed,
                                     job_name=f"jcurate-{logging_dir.name}",
                                     **slurm)
    raise JcurateError(f"--executor must be one of {', '.join(EXECUTORS)}, got {kind!r}")


PROGRESS_MARKS = ("Reading input file", "tasks completed", "reading source")


def _heartbeat(path: Path, offset: int, terminal_fd: int, label: str, stop: threading.Event, every: float,
               progress: Path | None = None, total: int | None = None) -> None:
    """While a stage runs: with ``progress`` (the tasks' record counts), a bar redrawn in place on a
    terminal or a line every ``every`` seconds otherwise; without, the latest progress line the
    stage wrote to its log, when it changes."""
    from curate.running.progress import progress_line, records_done

    start, last = time.monotonic(), None
    terminal = os.isatty(terminal_fd)
    drawn = False
    while not stop.wait(0.5 if terminal and progress else every):
        elapsed = time.monotonic() - start
        if progress is not None:
            line = progress_line(f"    {label}", records_done(progress), total, elapsed, bar=terminal)
            if terminal:
                os.write(terminal_fd, f"\r{line}\x1b[K".encode())
                drawn = True
            else:
                os.write(terminal_fd, f"{line}\n".encode())
            continue
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                lines = f.read().decode("utf-8", errors="replace").splitlines()
        except OSError:
            continue
        found = next((ln for ln in reversed(lines) if any(m in ln for m in PROGRESS_MARKS)), None)
        if found and found != last:
            last = found
            message = found.split(" - ", 1)[-1].strip()
            os.write(terminal_fd, f"    {label} {elapsed:.0f}s: {message}\n".encode())
    if drawn:
        line = progress_line(f"    {label}", records_done(progress), total, time.monotonic() - start)
        os.write(terminal_fd, f"\r{line}\x1b[K\n".encode())


@contextmanager
def stage_output_to(path: Path, label: str, enabled: bool = True, every: float = 10.0, progress: Path | None = None,
                    total: int | None = None):
    """Sends file descriptor 2 (datatrove's per-task logs and stats) to ``path``, and shows the
    latest progress line the stage writes there every ``every`` seconds.

    One file for all stages: forkserver workers keep the fd 2 their server started with, so
    per-stage files would mix stages up.
    """
    if not enabled:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"\n===== jcurate stage: {label} =====\n")
    offset = path.stat().st_size
    sys.stderr.flush()
    saved = os.dup(2)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(path, offset, saved, label, stop, every, progress, total),
                            daemon=True)
    python_stderr = sys.stderr
    try:
        with open(path, "ab") as f:
            os.dup2(f.fileno(), 2)
            # in-process tasks log to sys.stderr, which need not be fd 2 (under pytest it is not)
            sys.stderr = open(path, "a", buffering=1, encoding="utf-8")
            beat.start()
            yield
    finally:
        stop.set()
        if beat.is_alive():
            beat.join()
        if sys.stderr is not python_stderr:
            sys.stderr.close()
            sys.stderr = python_stderr
        sys.stderr.flush()
        drain_worker_output()  # the stage's last worker lines to its log, not to the terminal
        os.dup2(saved, 2)
        os.close(saved)
        # datatrove re-adds its default handler on the file just closed: point it back here
        from loguru import logger

        logger.remove()
        logger.add(sys.stderr, level="WARNING")


def unplanned_rows(work: Path) -> int | None:
    """What the dedup-decont stage reads: the filtered records the dedup plan does not drop."""
    filtered = parquet_rows(work / "filtered")
    plan = work / "dedup_plan.parquet"
    if filtered is None or not plan.is_file():
        return filtered
    import pyarrow.parquet as pq

    return filtered - pq.ParquetFile(plan).metadata.num_rows


def run_stages(sources: list[Source], config: PipelineConfig, out: Path, options: ExecutorOptions,
               log=print, after_stage=None) -> dict[str, float]:
    """Runs (or, on Slurm, submits) every stage; returns wall seconds per stage. Resumes an
    interrupted run of the same inputs on the same ``out`` unless ``options.fresh``. ``after_stage``:
    called with each stage's name once it has ended (not on Slurm)."""
    check_readable(sources)
    check_field_mappings(sources)
    repeated_ids = find_repeated_ids(sources)
    for line in repeated_id_lines(sources, repeated_ids):
        log(line)
    fingerprint = run_fingerprint(sources, config, options)
    resume = not options.fresh and can_resume(out, fingerprint)
    folder_id = resume and run_folder_id(out)
    if not resume and not options.fresh and unfinished_fingerprint(out):
        log(f"{out} holds an interrupted run of other inputs (sources, config, executor or --workers differ): "
            f"starting afresh; its work is discarded")
    if not resume:
        for sub in ("kept", "dropped", "work"):
            shutil.rmtree(out / sub, ignore_errors=True)
    (out / "work").mkdir(parents=True, exist_ok=True)
    (out / RUN_STATE).write_text(json.dumps({"fingerprint": fingerprint, "finished": False,
                                             "run_folder_id": folder_id or new_id("folder")}), encoding="utf-8")
    if config.decontamination.enabled:
        n = build_decont_index(config.decontamination.eval_files, out / "work/decont_index", config.decontamination.n_grams)
        log(f"decontamination index: {n} n-grams from {len(config.decontamination.eval_files)} eval file(s)")
    stages = build_stages(sources, config, out, options.workers, repeated_ids)
    timings: dict[str, float] = {}
    previous = None
    executors = []
    for name, steps, tasks in stages:
        logging_dir = out / "work/logs" / name
        if resume and (done := completed_tasks(logging_dir)):
            log(f"resuming {out}: stage {name} has {done} of {tasks} task(s) completed by the interrupted run")
        executor = make_executor(options.kind, steps, tasks, options.workers, logging_dir, previous,
                                 options.slurm, skip_completed=resume)
        executors.append((name, executor))
        previous = executor
    if options.kind == "slurm":
        previous.run()  # submits the whole chain
        return timings
    if options.kind == "local" and options.workers > 1:
        start_worker_server()
    if options.kind == "ray":
        import ray

        if not ray.is_initialized():  # a local instance unless RAY_ADDRESS points at a cluster
            ray.init(num_cpus=None if os.environ.get("RAY_ADDRESS") else options.workers,
                     include_dashboard=False, log_to_driver=False)
    stage_log = out / "work/logs/datatrove.log"
    # the stages of a local run with several workers share one pool of them (curate.running.stage_pool)
    # datasets (hf-disk sources) hands pandas objects to pyarrow: its workers keep pandas in pyarrow
    without_pandas = not any(s.format == "hf-disk" for s in sources)
    stage_pool = StagePool(options.workers, without_pandas) if options.kind == "local" and options.workers > 1 else None
    cpu_seconds: dict[str, float] = {}
    try:
        _run_in_order(executors, stage_pool, sources, out, options, stage_log, timings, cpu_seconds, log, after_stage)
    finally:
        if stage_pool is not None:
            stage_pool.close()
    (out / "work/timings.json").write_text(json.dumps(timings))
    # the whole machine's busy CPU seconds per stage (Linux; other processes count too): cores busy = cpu / wall
    (out / "work/cpu_seconds.json").write_text(json.dumps(cpu_seconds))
    return timings


def _run_in_order(executors, stage_pool: StagePool | None, sources: list[Source], out: Path, options: ExecutorOptions,
                  stage_log: Path, timings: dict[str, float], cpu_seconds: dict[str, float], log,
                  after_stage=None) -> None:
    for i, (name, executor) in enumerate(executors, start=1):
        log(f"[{i}/{len(executors)}] {name} ..." + ("" if options.verbose else f" (datatrove's log: {stage_log})"))
        start, busy = time.perf_counter(), machine_busy_seconds()
        executor.depends = None  # run in order here; depends only matters for Slurm submission
        try:
            progress, total = None, None
            if name in ("filter", "dedup-decont"):  # the stages that take the time, record by record
                progress = out / "work/progress" / name
                total = count_input_rows(sources) if name == "filter" else unplanned_rows(out / "work")
            with stage_output_to(stage_log, name, enabled=not options.verbose, progress=progress, total=total):
                if stage_pool is not None:
                    run_on_pool(executor, stage_pool)
                elif options.kind == "local" and executor.workers == 1:
                    run_in_process(executor)
                else:
                    executor.run()
        except Exception:
            log(f"stage {name} failed: see {stage_log}")
            raise
        timings[name] = round(time.perf_counter() - start, 3)
        cores = ""
        if busy is not None and (busy_after := machine_busy_seconds()) is not None:
            cpu_seconds[name] = round(busy_after - busy, 2)
            cores = f" (the machine kept {cpu_seconds[name] / max(timings[name], 1e-9):.1f} cores busy)"
        log(f"[{i}/{len(executors)}] {name} done in {timings[name]:.1f}s{cores}")
        if after_stage is not None:
            after_stage(name)
        if name == "filter" and not any((out / "work/filtered").glob("*.parquet")):
            # nothing survived the filters: the dedup and decontamination stages have no input
            # (datatrove's readers stop on an empty folder); the drops are written, the run goes on
            log("every record was dropped before dedup: the remaining stages have nothing to do")
            break
