"""`--workers 2` against `--workers 1` (the baseline) on ONE large JSONL file, same run, same input.

    uv run python benchmarks/split_file_scaling.py [--n 60000]

Before rows were split within a file, a single-file source gave a second worker nothing to do
(0.98x). Printed: wall seconds per stage and in total for each, the speed-up, and whether the
two runs decided every record the same way.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.pipeline_throughput import make_input  # noqa: E402
from benchmarks.resume_after_kill import contents  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60_000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="jcurate-split-"))
    manifest = make_input(args.n, tmp, shards=1)
    results = {}
    for workers in (1, 2):
        out, db = tmp / f"out{workers}", tmp / f"store{workers}.duckdb"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "jcurate.cli", "run", "--sources", str(manifest), "--out", str(out),
                        "--db", str(db), "--workers", str(workers)], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        stages = json.loads((out / "report.json").read_text(encoding="utf-8"))["seconds"]
        results[workers] = (wall, stages, contents(db))
    print(f"\n{args.n} records in one JSONL file")
    names = list(results[1][1])
    print(f"{'workers':<8} {'total s':>8} " + " ".join(f"{n:>15}" for n in names))
    for w, (wall, stages, _) in results.items():
        print(f"{w:<8} {wall:>8.1f} " + " ".join(f"{stages[n]:>15.1f}" for n in names))
    print(f"speed-up, --workers 2 vs --workers 1 (baseline): {results[1][0] / results[2][0]:.2f}x end to end, "
          f"{sum(results[1][1].values()) / sum(results[2][1].values()):.2f}x over the stages")
    print(f"same decisions and scores: {results[1][2] == results[2][2]}")


if __name__ == "__main__":
    main()
