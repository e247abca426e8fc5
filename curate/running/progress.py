"""Progress you can watch: records done / total, records/s and ETA for the long stages.

Each task of a stage counts the records that pass a ``ProgressCounter`` step and writes its count
to ``OUT/work/progress/<stage>/<rank>`` about once a second (a tiny file, replaced atomically),
because datatrove's own stats appear only when a task ends. The main process sums the files:
on a terminal as a bar redrawn in place, otherwise as a plain line every ten seconds.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep


def machine_busy_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy so far (user, nice, system, irq, softirq; every
    process, a stage's pool workers included), or None off Linux. The difference over a stage divided by
    its wall time is the cores it kept busy: what bounds the speed-up more workers can give it."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
        user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[1:8])
    except (OSError, ValueError, IndexError):
        return None
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


class ProgressCounter(PipelineStep):
    """Passes every document on; counts them into ``folder/<rank>``."""

    name = "📈 progress"
    type = "📈 PROGRESS"

    def __init__(self, folder: str, every_s: float = 1.0):
        super().__init__()
        self.folder, self.every_s = folder, every_s

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        path = Path(self.folder) / f"{rank:05d}"
        path.parent.mkdir(parents=True, exist_ok=True)
        n, last = 0, time.monotonic()
        for doc in data:
            n += 1
            if not n % 128 and time.monotonic() - last >= self.every_s:
                _write(path, n)
                last = time.monotonic()
            yield doc
        _write(path, n)


def _write(path: Path, n: int) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(str(n), encoding="ascii")
    os.replace(tmp, path)


def records_done(folder: Path) -> int:
    total = 0
    for f in folder.glob("[0-9]*"):
        try:
            total += int(f.read_text(encoding="ascii") or 0)
        except (OSError, ValueError):  # being replaced right now: counted next time
            continue
    return total


def count_input_rows(sources) -> int | None:
    """Rows the sources hold, where that is cheap to know (JSONL and CSV lines, Parquet metadata);
    None when a file is compressed or a JSON array (no total then, just counts and rate)."""
    total = 0
    for source in sources:
        for file in source.files:
            if source.format == "parquet":
                import pyarrow.parquet as pq

                total += pq.ParquetFile(file).metadata.num_rows
            elif source.format in ("jsonl", "csv") and not file.endswith((".gz", ".bz2", ".zst")):
                lines = _count_lines(file)
                total += lines - 1 if source.format == "csv" and lines else lines
            else:
                return None
    return total


def _count_lines(path: str) -> int:
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def parquet_rows(folder: Path) -> int | None:
    import pyarrow.parquet as pq

    files = sorted(folder.glob("*.parquet"))
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files) if files else None


def progress_line(label: str, done: int, total: int | None, seconds: float, width: int = 24, bar: bool = True) -> str:
    """One progress line: a bar (or a plain label), counts, rate and ETA where the total is known.

    >>> progress_line("filter", 50, 200, 10.0, width=8)
    'filter [██░░░░░░] 50 / 200 records (25%), 5 records/s, ETA 30s'
    >>> progress_line("filter", 50, None, 10.0, bar=False)
    'filter: 50 records, 5 records/s'
    """
    rate = done / seconds if seconds > 0 else 0.0
    if total:
        share = min(done / total, 1.0)
        eta = f", ETA {_duration((total - done) / rate)}" if rate and done < total else ""
        filled = round(share * width)
        head = f"{label} [{'█' * filled}{'░' * (width - filled)}]" if bar else f"{label}:"
        return f"{head} {done:,} / {total:,} records ({share:.0%}), {rate:,.0f} records/s{eta}"
    return f"{label}: {done:,} records, {rate:,.0f} records/s"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
