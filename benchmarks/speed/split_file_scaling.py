"""`--workers 2` against `--workers 1` (the baseline) on ONE large JSONL file, same run, same input.

    uv run python benchmarks/speed/split_file_scaling.py [--n 60000]

Before rows were split within a file, a single-file source gave a second worker nothing to do
(0.98x). Printed: wall seconds per stage and in total for each, the speed-up, and whether the
two runs decided every record the same way; with ``--repeat N``, medians of N interleaved runs.

Also printed (Linux): the CPU seconds each run took on the whole machine (``/proc/stat``: every
process, the forkserver's workers included) and the cores it kept busy on average. They bound the
speed-up: two workers cannot finish before their CPU seconds / 2, so the speed-up is at most
2 x (wall with one worker) / (CPU seconds with two). ``--workers 1`` already keeps ~1.1 cores busy
(the store's records load and DuckDB's threads beside the stages), so that bound is below 2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.speed.pipeline_throughput import make_input, real_base_records  # noqa: E402
from benchmarks.speed.resume_after_kill import contents  # noqa: E402
from curate.running.progress import machine_busy_seconds  # noqa: E402


class Run(NamedTuple):
    """One ``jcurate run`` (or the medians of several): wall seconds, the machine's busy CPU seconds (None off
    Linux), wall and busy CPU seconds per stage, and the store's contents (to compare decisions)."""

    wall: float
    cpu: float | None
    stages: dict
    contents: object
    stage_cpu: dict


def one_run(manifest: Path, tmp: Path, workers: int) -> Run:
    out, db = tmp / f"out{workers}", tmp / f"store{workers}.duckdb"
    for leftover in (db, db.with_name(db.name + ".wal")):
        leftover.unlink(missing_ok=True)
    cpu, start = machine_busy_seconds(), time.perf_counter()
    subprocess.run([sys.executable, "-m", "jcurate.cli", "run", "--sources", str(manifest), "--out", str(out),
                    "--db", str(db), "--workers", str(workers), "--fresh"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall, cpu_after = time.perf_counter() - start, machine_busy_seconds()
    stages = json.loads((out / "report.json").read_text(encoding="utf-8"))["seconds"]
    cpu_file = out / "work/cpu_seconds.json"
    stage_cpu = json.loads(cpu_file.read_text(encoding="utf-8")) if cpu_file.is_file() else {}
    return Run(wall, cpu_after - cpu if cpu is not None else None, stages, contents(db), stage_cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60_000)
    ap.add_argument("--repeat", type=int, default=1, help="interleaved runs of each; medians are printed")
    ap.add_argument("--base-store", type=Path, default=None,
                    help="perturb the kept records of this curated store instead of the embedded default")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="jcurate-split-"))
    manifest = make_input(args.n, tmp, shards=1,
                          base=real_base_records(args.base_store) if args.base_store else None)
    runs: dict[int, list[Run]] = {1: [], 2: []}
    for i in range(args.repeat):
        for workers in ((1, 2) if i % 2 == 0 else (2, 1)):
            runs[workers].append(one_run(manifest, tmp, workers))
    results: dict[int, Run] = {}
    for workers, rs in runs.items():
        names = list(rs[0].stages)
        cpus = [r.cpu for r in rs if r.cpu is not None]
        results[workers] = Run(statistics.median(r.wall for r in rs), statistics.median(cpus) if cpus else None,
                               {n: statistics.median(r.stages[n] for r in rs) for n in names}, rs[-1].contents,
                               {n: statistics.median(r.stage_cpu[n] for r in rs)
                                for n in names if all(n in r.stage_cpu for r in rs)})
    print(f"\n{args.n} records in one JSONL file" + (f"; medians of {args.repeat} interleaved runs" if args.repeat > 1 else ""))
    names = list(results[1].stages)
    print(f"{'workers':<8} {'total s':>8} {'CPU s':>7} {'cores':>6} " + " ".join(f"{n:>15}" for n in names))
    for w, (wall, cpu, stages, _, _) in results.items():
        cpu_text = f"{cpu:>7.1f} {cpu / wall:>6.2f}" if cpu is not None else f"{'-':>7} {'-':>6}"
        print(f"{w:<8} {wall:>8.1f} {cpu_text} " + " ".join(f"{stages[n]:>15.1f}" for n in names))
    one, two = results[1], results[2]
    print(f"speed-up, --workers 2 vs --workers 1 (baseline): {one.wall / two.wall:.2f}x end to end, "
          f"{sum(one.stages.values()) / sum(two.stages.values()):.2f}x over the stages")
    if two.cpu is not None:
        print(f"at most {2 * one.wall / two.cpu:.2f}x with both cores busy throughout "
              f"(2 x {one.wall:.1f} s / {two.cpu:.1f} CPU s)")
    print_stage_bounds(one, two)
    print(f"same decisions and scores: {one.contents == two.contents}")


PLAN_STAGES = ("minhash-buckets", "near-pairs", "near-verify", "dedup-plan")


def print_stage_bounds(one: Run, two: Run) -> None:
    """Per stage (and the plan stages together): the cores each run kept busy, the speed-up, and
    its bound on 2 cores, 2 x (wall with one worker) / (machine CPU seconds with two): a stage whose
    one-worker run already keeps both cores busy cannot go faster."""
    (wall1, cpu1), (wall2, cpu2) = (one.stages, one.stage_cpu), (two.stages, two.stage_cpu)
    rows = [n for n in wall1 if n in cpu1 and n in cpu2]
    if not rows:
        return
    plan = [n for n in PLAN_STAGES if n in rows]

    def total(d: dict, names) -> float:
        return sum(d[n] for n in names)

    print(f"\n{'stage':<22} {'w1 s':>7} {'w1 cores':>9} {'w2 s':>7} {'w2 cores':>9} {'speed-up':>9} {'bound':>6}")
    for name, names in [(n, [n]) for n in rows] + ([("plan stages", plan)] if plan else []):
        w1, c1, w2, c2 = total(wall1, names), total(cpu1, names), total(wall2, names), total(cpu2, names)
        print(f"{name:<22} {w1:>7.1f} {c1 / max(w1, 1e-9):>9.2f} {w2:>7.1f} {c2 / max(w2, 1e-9):>9.2f} "
              f"{w1 / max(w2, 1e-9):>8.2f}x {2 * w1 / max(c2, 1e-9):>5.2f}x")


if __name__ == "__main__":
    main()
