"""What a kill costs: `jcurate run` killed (SIGKILL) part way and started again, against a run that
was never interrupted and against starting over (what happened before runs could resume).

    uv run python benchmarks/speed/resume_after_kill.py [--n 60000] [--workers 2] [--kill-after filter]

The input is the perturbed replicas of pipeline_throughput.py in one JSONL file per worker. The
kill comes right after the named stage completed (``filter``: the longest one), or, with
``--kill-after mid-filter``, when the first filter task has completed. Printed: wall seconds of
the uninterrupted run, of the killed run up to the kill, of the resumed run, and the ratio of the
work redone (resumed run / uninterrupted run; starting over is 1.0). The store contents of the
resumed and the uninterrupted run are compared (fates, scores).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.speed.pipeline_throughput import make_input  # noqa: E402


def run_args(manifest: Path, out: Path, db: Path, workers: int) -> list[str]:
    return [sys.executable, "-m", "jcurate.cli", "run", "--sources", str(manifest), "--out", str(out), "--db", str(db),
            "--workers", str(workers)]


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def killed(args: list[str], out: Path, kill_after: str, workers: int) -> float:
    """Seconds until the kill."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    completions = out / "work/logs/filter/completions"
    wanted = 1 if kill_after == "mid-filter" else workers
    while proc.poll() is None:
        if completions.is_dir() and sum(1 for _ in completions.iterdir()) >= wanted:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    if proc.returncode != -signal.SIGKILL:
        raise SystemExit("the run ended before the kill: use a bigger --n")
    return time.perf_counter() - start


def contents(db: Path) -> tuple:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        fates = con.execute("SELECT record_id, kept, dropped_at, reason, value FROM record_fate "
                            "WHERE run_id = (SELECT run_id FROM latest_run) ORDER BY record_id").fetchall()
        scores = con.execute("SELECT record_id, scorer, round(score, 6) FROM scores ORDER BY ALL").fetchall()
        return fates, scores
    finally:
        con.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--kill-after", choices=["filter", "mid-filter"], default="filter")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="jcurate-resume-"))
    manifest = make_input(args.n, tmp, shards=args.workers)
    plain = timed(run_args(manifest, tmp / "plain-out", tmp / "plain.duckdb", args.workers))
    resumable = run_args(manifest, tmp / "out", tmp / "store.duckdb", args.workers)
    until_kill = killed(resumable, tmp / "out", args.kill_after, args.workers)
    resumed = timed(resumable)
    same = contents(tmp / "plain.duckdb") == contents(tmp / "store.duckdb")
    print(f"\n{args.n} records, {args.workers} workers, killed after {args.kill_after}")
    print(f"{'run':<34} {'seconds':>8}")
    print(f"{'uninterrupted (baseline)':<34} {plain:>8.1f}")
    print(f"{'killed run, up to the kill':<34} {until_kill:>8.1f}")
    print(f"{'started again: resumed':<34} {resumed:>8.1f}")
    print(f"{'started again: from scratch (old)':<34} {plain:>8.1f}")
    print(f"work redone after the kill: {resumed / plain:.2f} of an uninterrupted run (from scratch: 1.00); "
          f"kill + resume in total {(until_kill + resumed) / plain:.2f}x the uninterrupted run")
    print(f"store contents of the resumed run equal the uninterrupted run's: {same}")


if __name__ == "__main__":
    main()
