"""A run killed with SIGKILL and started again with the same arguments skips the tasks it completed
and ends with the same store contents as a run that was never interrupted; Ctrl-C says so in one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from jcurate.cli import main as jcurate

ROOT = Path(__file__).resolve().parents[2]


def _rows(n: int, offset: int = 0) -> str:
    """The hand-written records, perturbed (benchmarks/speed/pipeline_throughput.py): distinct ones, near
    duplicates and, for the tail, exact duplicates."""
    import random

    from benchmarks.speed.pipeline_throughput import base_records, perturb

    rng, base = random.Random(offset), base_records()
    lines = [json.dumps(perturb(base[(i + offset) % len(base)], i + offset, rng), ensure_ascii=False) for i in range(n)]
    lines += lines[:20]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume-inputs")
    (folder / "big.jsonl").write_text(_rows(6000), encoding="utf-8")
    (folder / "small.jsonl").write_text(_rows(10, offset=500), encoding="utf-8")
    (folder / "sources.yaml").write_text(
        "sources:\n"
        "  - {id: big, path: big.jsonl, format: jsonl, license: CC-BY-4.0, fields: {instruction: instruction, output: output}}\n"
        "  - {id: small, path: small.jsonl, format: jsonl, license: CC-BY-4.0, "
        "fields: {instruction: instruction, output: output}}\n", encoding="utf-8")
    return folder


def _args(inputs: Path, out: Path, db: Path) -> list[str]:
    return ["run", "--sources", str(inputs / "sources.yaml"), "--out", str(out), "--db", str(db), "--workers", "2"]


def _contents(db: Path) -> dict:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {
            "fate": con.execute("SELECT record_id, kept, dropped_at, reason, value FROM record_fate "
                                "WHERE run_id = (SELECT run_id FROM latest_run) ORDER BY record_id").fetchall(),
            "records": con.execute("SELECT record_id, content_hash, text FROM records ORDER BY record_id").fetchall(),
            "clusters": con.execute("SELECT record_id, stage, is_survivor FROM dup_clusters ORDER BY record_id, stage"
                                    ).fetchall(),
            "scores": con.execute("SELECT record_id, scorer, round(score, 6) FROM scores ORDER BY ALL").fetchall(),
            "runs": con.execute("SELECT count(*) FROM runs").fetchone()[0],
        }
    finally:
        con.close()


def _folder_ids(db) -> list[str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return [r[0] for r in con.execute("SELECT run_folder_id FROM runs ORDER BY started_at").fetchall()]
    finally:
        con.close()


def test_a_killed_run_resumes_and_ends_as_an_uninterrupted_one(inputs, tmp_path, capsys):
    out, db = tmp_path / "out", tmp_path / "store.duckdb"
    proc = subprocess.Popen([sys.executable, "-m", "jcurate.cli", *_args(inputs, out, db)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    completions = out / "work/logs/filter/completions"
    deadline = time.monotonic() + 300
    # the small file's task (rank 1) finishes first; the big file's task (rank 0) is still reading
    while not (completions / "00001").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not (completions / "00000").exists(), "the big task finished before the kill: make the input bigger"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not db.exists() or _contents(db)["runs"] == 0, "nothing reached the store"
    folder_id = json.loads((out / "work/run.json").read_text(encoding="utf-8"))["run_folder_id"]

    capsys.readouterr()
    assert jcurate(_args(inputs, out, db)) == 0
    log = capsys.readouterr().err
    assert "resuming" in log and "stage filter has 1 of 2 task(s) completed by the interrupted run" in log
    assert _folder_ids(db) == [folder_id], "the resumed run is the killed one: the store holds its folder's id"

    fresh_out, fresh_db = tmp_path / "fresh-out", tmp_path / "fresh.duckdb"
    assert jcurate(_args(inputs, fresh_out, fresh_db)) == 0
    resumed, uninterrupted = _contents(db), _contents(fresh_db)
    assert len(resumed["fate"]) == 6020 + 20
    assert sum(kept for _, kept, *_ in resumed["fate"]) > 100
    assert resumed == uninterrupted

    # a finished run is not resumed: the same arguments again start afresh
    capsys.readouterr()
    assert jcurate(_args(inputs, out, db)) == 0
    assert "resuming" not in capsys.readouterr().err
    assert len(set(_folder_ids(db))) == 2, "a run started afresh is another run: the store takes it"


def _live_in_group(pgid: int) -> list[str]:
    """The processes of process group ``pgid`` that are not zombies: 'pid command' each (Linux /proc)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:100]
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) ": state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            live.append(f"{stat.parent.name} {cmd}")
    return live


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from Linux's /proc")
@pytest.mark.parametrize("workers", [1, 2])
def test_a_kill_9_of_the_run_leaves_no_process_behind(inputs, tmp_path, workers):
    """kill -9 of the main process alone (an OOM killer, a lost terminal): its workers, their forkserver, the
    manager process and the resource tracker end too, instead of working on or waiting forever."""
    out, db = tmp_path / "out", tmp_path / "store.duckdb"
    args = _args(inputs, out, db)
    args[args.index("--workers") + 1] = str(workers)
    proc = subprocess.Popen([sys.executable, "-m", "jcurate.cli", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        progress = out / "work/progress/filter"
        while not progress.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before the kill"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 20
        while (left := _live_in_group(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert left == [], f"left behind after kill -9 of the run: {left}"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


INTERRUPTED = "jcurate: interrupted; run the same command again to resume from the finished tasks"


def default_sigint() -> None:
    """In the child before exec: SIGINT back to its default. A test runner started in the background by a
    non-interactive shell (`cmd &`) ignores SIGINT, an ignored signal stays ignored across exec, and Python
    then installs no KeyboardInterrupt handler: the run would never see the Ctrl-C this test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt(inputs: Path, out: Path, db: Path, when) -> str:
    """Starts `jcurate run`, sends SIGINT to its whole process group (as Ctrl-C in a terminal does) once
    ``when()`` holds, and returns what it wrote to stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "jcurate.cli", *_args(inputs, out, db)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=default_sigint)
    deadline = time.monotonic() + 300
    while not when() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before the interrupt"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    return err


def test_ctrl_c_prints_one_line_that_says_the_same_command_resumes(inputs, tmp_path, capsys):
    """SIGINT to the process group: during the filter stage (in the workers) and during start-up (while
    the forkserver imports its modules), no process prints a traceback; the main process says one line."""
    out, db = tmp_path / "out", tmp_path / "store.duckdb"
    completions = out / "work/logs/filter/completions"
    in_filter = _interrupt(inputs, out, db, lambda: (completions / "00001").exists())
    assert not (completions / "00000").exists(), "the big task finished before the interrupt"
    started = time.monotonic()  # right after the start, while the worker server imports (~1 s)
    at_start = _interrupt(inputs, tmp_path / "out-2", tmp_path / "store-2.duckdb",
                          lambda: time.monotonic() - started > 0.5)
    # what the workers write lands in the terminal or, while a stage runs, in its log
    stage_log = (out / "work/logs/datatrove.log").read_text(encoding="utf-8", errors="replace")
    for err in (in_filter, at_start, stage_log):
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    for err in (in_filter, at_start):
        assert err.strip().splitlines()[-1] == INTERRUPTED

    capsys.readouterr()  # the same command resumes, as the line says
    assert jcurate(_args(inputs, out, db)) == 0
    assert "stage filter has 1 of 2 task(s) completed by the interrupted run" in capsys.readouterr().err


def test_fresh_and_changed_inputs_do_not_resume(inputs, tmp_path, capsys):
    from curate.config import PipelineConfig
    from curate.reading.manifest import load_manifest
    from curate.running.pipeline import ExecutorOptions, can_resume, run_fingerprint

    sources = load_manifest(str(inputs / "sources.yaml"))
    options = ExecutorOptions(workers=2)
    fingerprint = run_fingerprint(sources, PipelineConfig(), options)
    out = tmp_path / "out"
    (out / "work").mkdir(parents=True)
    (out / "work/run.json").write_text(json.dumps({"fingerprint": fingerprint, "finished": False}))
    assert can_resume(out, fingerprint)
    assert run_fingerprint(sources, PipelineConfig(), ExecutorOptions(workers=1)) != fingerprint
    changed = PipelineConfig()
    changed.quality.min_output_chars += 1
    assert run_fingerprint(sources, changed, options) != fingerprint
    (out / "work/run.json").write_text(json.dumps({"fingerprint": fingerprint, "finished": True}))
    assert not can_resume(out, fingerprint)


def test_an_interrupted_run_of_other_inputs_is_discarded_with_a_message(inputs, tmp_path, capsys):
    (tmp_path / "sources.yaml").write_text(
        f"sources:\n  - {{id: small, path: {inputs / 'small.jsonl'}, format: jsonl, license: CC-BY-4.0, "
        f"fields: {{instruction: instruction, output: output}}}}\n", encoding="utf-8")
    out = tmp_path / "out"
    (out / "work").mkdir(parents=True)
    (out / "work/run.json").write_text(json.dumps({"fingerprint": "of-other-inputs", "finished": False}))
    args = ["run", "--sources", str(tmp_path / "sources.yaml"), "--out", str(out), "--db", str(tmp_path / "s.duckdb"),
            "--workers", "1"]
    assert jcurate(args) == 0
    assert (f"{out} holds an interrupted run of other inputs (sources, config, executor or --workers differ): "
            f"starting afresh; its work is discarded") in capsys.readouterr().err
    (out / "work/run.json").write_text(json.dumps({"fingerprint": "of-other-inputs", "finished": False}))
    assert jcurate([*args, "--fresh"]) == 0  # asked for: no message
    assert "interrupted run of other inputs" not in capsys.readouterr().err


def test_two_workers_split_one_file_and_decide_as_one(tmp_path):
    """One JSONL file, --workers 2: both tasks read rows of it, and every decision is the one a
    single worker makes."""
    (tmp_path / "one.jsonl").write_text(_rows(1500, offset=7), encoding="utf-8")
    (tmp_path / "sources.yaml").write_text(
        "sources:\n  - {id: one, path: one.jsonl, format: jsonl, license: CC-BY-4.0, "
        "fields: {instruction: instruction, output: output}}\n", encoding="utf-8")
    results = {}
    for workers in ("1", "2"):
        out, db = tmp_path / f"out{workers}", tmp_path / f"store{workers}.duckdb"
        assert jcurate(["run", "--sources", str(tmp_path / "sources.yaml"), "--out", str(out), "--db", str(db),
                        "--workers", workers]) == 0
        results[workers] = _contents(db)
        counts = sorted(int(p.read_text()) for p in (out / "work/progress/filter").iterdir())
        assert len(counts) == int(workers) and all(c > 0 for c in counts), counts
    assert len(results["1"]["fate"]) == 1520 and sum(k for _, k, *_ in results["1"]["fate"]) > 100
    assert results["2"] == results["1"]
