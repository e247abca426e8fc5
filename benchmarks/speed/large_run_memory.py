"""Peak memory per stage of `jcurate run` on a large generated input (default 1,000,000 records).

    uv run python benchmarks/speed/large_run_memory.py [--n 1000000] [--workers 2]

The input: the perturbed replicas of pipeline_throughput.py in ONE JSONL file. `jcurate run` runs
as a child process with its defaults; every 0.5 s this script reads the resident set size of it and
of every process under it (datatrove's workers) from /proc, and charges each sample to the stage
the run last announced. Printed per stage: seconds, records/s, the largest RSS of one process,
the largest RSS of all of them together, and the largest one process as a share of the 4 GiB
budget of the performance issue (the baseline: 1.00 = at the budget).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.speed.pipeline_throughput import make_input, real_base_records  # noqa: E402

REAL_POOL = ROOT / "runs" / "selection" / "instruction-k100" / "store.duckdb"

BUDGET_MIB = 4096
STAGE_LINE = re.compile(r"^\[(\d+)/(\d+)\] (\S+) (\.\.\.|done in)")
AFTER = "store + scoring"  # after the last stage: the DuckDB store, the shipped scorer, the report


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", "--records", dest="n", type=int, default=1_000_000)
    ap.add_argument("--base", type=Path, default=REAL_POOL if REAL_POOL.is_file() else None,
                    help="a curated store whose kept records are perturbed into the input (default: the realistic "
                         "instruction pool of the selection benchmark when it exists, else the hand-written sample)")
    ap.add_argument("--executor", default="local", help="local | ray (a local Ray instance when RAY_ADDRESS is unset)")
    ap.add_argument("--keep", action="store_true", help="keep the input and the run's folder (deleted by default)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="jcurate-large-"))
    start = time.perf_counter()
    base = real_base_records(args.base) if args.base else None
    manifest = make_input(args.n, tmp, shards=1, base=base)
    size = (tmp / "part-00.jsonl").stat().st_size
    print(f"input: {args.n:,} records perturbed from {len(base) if base else 'the hand-written'} base records "
          f"({args.base or 'data/handwritten'}), one JSONL file of {size / 2**20:,.0f} MiB "
          f"({time.perf_counter() - start:.0f} s to write) at {tmp}", flush=True)

    stage = ["start"]
    peaks: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}
    proc = subprocess.Popen([sys.executable, "-m", "jcurate.cli", "run", "--sources", str(manifest),
                             "--out", str(tmp / "out"), "--db", str(tmp / "store.duckdb"),
                             "--workers", str(args.workers), "--executor", args.executor],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stage_started = [time.perf_counter()]

    def follow() -> None:
        for line in proc.stdout:
            if m := STAGE_LINE.match(line):
                seconds[stage[0]] = time.perf_counter() - stage_started[0]
                stage[0], stage_started[0] = (m.group(3) if m.group(4) == "..." else AFTER), time.perf_counter()
            if "Traceback" in line or "error" in line.lower():
                print("  run: " + line.rstrip(), flush=True)

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    run_start = time.perf_counter()
    while proc.poll() is None:
        sizes = [rss_mib(pid) for pid in descendants(proc.pid)]
        one, total = max(sizes, default=0.0), sum(sizes)
        peak = peaks.setdefault(stage[0], [0.0, 0.0])
        peak[0], peak[1] = max(peak[0], one), max(peak[1], total)
        time.sleep(0.5)
    reader.join(timeout=5)
    wall = time.perf_counter() - run_start
    seconds[stage[0]] = time.perf_counter() - stage_started[0]
    if proc.returncode:
        sys.exit(f"jcurate run failed with exit status {proc.returncode}: see {tmp / 'out/work/logs'}")

    print(f"\n`jcurate run --executor {args.executor}`, {args.workers} worker(s), {args.n:,} records: "
          f"{wall:.0f} s end to end "
          f"({args.n / wall:,.0f} records/s)")
    print(f"{'stage':<18} {'s':>7} {'peak RSS one process MiB':>26} {'all processes MiB':>18} {'one / 4 GiB':>12}")
    for name, (one, total) in peaks.items():
        print(f"{name:<18} {seconds.get(name, 0):>7.0f} {one:>26,.0f} {total:>18,.0f} {one / BUDGET_MIB:>12.2f}")
    disk = {"input": size / 2**30,
            "out (work included)": sum(f.stat().st_size for f in (tmp / "out").rglob("*") if f.is_file()) / 2**30,
            "store": (tmp / "store.duckdb").stat().st_size / 2**30}
    print("disk used, GiB: " + ", ".join(f"{k} {v:.2f}" for k, v in disk.items()))
    worst = max(one for one, _ in peaks.values())
    print(f"largest single process: {worst:,.0f} MiB = {worst / BUDGET_MIB:.2f} of the 4 GiB budget "
          f"({'within' if worst <= BUDGET_MIB else 'OVER'})")
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
