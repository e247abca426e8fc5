"""Progress of the long stages: the tasks' record counts, shown as a bar on a terminal and as plain
lines otherwise."""

from __future__ import annotations

import json
import os
import threading
import time

from datatrove.data import Document

from curate.running.pipeline import _heartbeat
from curate.running.progress import ProgressCounter, count_input_rows, machine_busy_seconds, progress_line, records_done


def test_a_run_s_progress_counts_are_its_records(default_run):
    out, _ = default_run
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert records_done(out / "work/progress/filter") == report["read"]
    # the last stage reads what the filters passed and the dedup plan did not drop (it wrote those itself)
    read_last = report["read"] - sum(report["dropped"][s] for s in ("read", "quality", "language", "exact_dedup",
                                                                     "near_dedup"))
    assert report["dropped"]["near_dedup"] > 0 and records_done(out / "work/progress/dedup-decont") == read_last
    from curate.running.pipeline import unplanned_rows

    assert unplanned_rows(out / "work") == read_last


def _counted(tmp_path, n: int):
    counter = ProgressCounter(str(tmp_path / "progress"), every_s=0.0)
    docs = (Document(text=str(i), id=str(i)) for i in range(n))
    assert sum(1 for _ in counter.run(docs, rank=3)) == n
    return tmp_path / "progress"


def _beat(fd: int, folder, total, seconds: float = 0.7, every: float = 0.2) -> None:
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(folder / "none.log", 0, fd, "filter", stop, every, folder, total))
    beat.start()
    time.sleep(seconds)
    stop.set()
    beat.join()


def test_plain_lines_when_not_a_terminal(tmp_path):
    folder = _counted(tmp_path, 500)
    assert records_done(folder) == 500 and (folder / "00003").is_file()
    read, write = os.pipe()
    _beat(write, folder, 2000)
    os.close(write)
    text = os.read(read, 65536).decode()
    os.close(read)
    lines = [ln for ln in text.splitlines() if ln]
    assert lines and all(ln.startswith("    filter: 500 / 2,000 records (25%)") and "records/s, ETA" in ln
                         for ln in lines), text
    assert "\r" not in text and "█" not in text


def _read_all(fd: int, quiet: float = 0.5) -> bytes:
    """Everything written to a pty so far: one read returns what the line discipline has passed on at that
    moment, which on a loaded machine can stop short of the last write (seen in CI: the final newline)."""
    import select

    chunks = []
    while select.select([fd], [], [], quiet)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_bar_redrawn_in_place_on_a_terminal(tmp_path):
    folder = _counted(tmp_path, 500)
    master, slave = os.openpty()
    _beat(slave, folder, 1000, seconds=2.5)  # redraws every 0.5 s: at least 2 before the last line, even when slow
    text = _read_all(master).decode()
    os.close(master)
    os.close(slave)
    assert text.count("\r") >= 2 and "█" in text and "500 / 1,000 records (50%)" in text and text.endswith("\n")


def test_totals_come_cheap_or_not_at_all(tmp_path):
    from curate.reading.manifest import load_manifest

    (tmp_path / "a.jsonl").write_text('{"instruction": "q", "output": "a"}\n' * 7, encoding="utf-8")
    (tmp_path / "b.jsonl").write_text('{"instruction": "q", "output": "a"}\n' * 2 + '{"x": 1}', encoding="utf-8")
    (tmp_path / "s.yaml").write_text("sources:\n  - {id: s, path: '*.jsonl', format: jsonl, license: MIT, "
                                     "fields: {instruction: instruction, output: output}}\n", encoding="utf-8")
    assert count_input_rows(load_manifest(str(tmp_path / "s.yaml"))) == 10
    assert progress_line("x", 10, None, 2.0) == "x: 10 records, 5 records/s"


def test_each_stage_s_busy_cpu_is_written_beside_its_wall_time(default_run):
    """work/cpu_seconds.json: the machine's busy CPU seconds per stage, the same stages as the report's
    wall seconds; busy time counts while any process works, so it is positive, and a stage cannot keep
    more cores busy than the machine has."""
    out, _ = default_run
    seconds = json.loads((out / "report.json").read_text(encoding="utf-8"))["seconds"]
    cpu = json.loads((out / "work/cpu_seconds.json").read_text(encoding="utf-8"))
    assert list(cpu) == list(seconds)
    assert sum(cpu.values()) > 0
    for stage, busy in cpu.items():
        assert 0 <= busy <= (os.cpu_count() or 1) * seconds[stage] + 0.1, (stage, busy, seconds[stage])
    assert machine_busy_seconds() > 0
