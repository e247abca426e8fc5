"""`jcurate run` of two checkouts side by side on the same 60k input, interleaved: is a change slower?

    uv run python benchmarks/speed/commit_ab.py --base 22af772 [--n 60000] [--repeat 3] [--config-b FILE ...]

The baseline is a commit of this repository, checked out into a temporary git worktree; the
candidate is the working tree. Both run with this environment's interpreter and packages, on the input
of ``pipeline_throughput.py`` (perturbed replicas of the embedded default, near duplicates included,
one JSONL file), ``--workers 2``, one after the other, ``--repeat`` times (A B A B ...), so that a
slow minute of a shared machine falls on both. ``--config-b`` adds arms: the working tree with that
run config (e.g. the previous shipped model). Printed: wall seconds per run, medians, and each arm's
ratio to the baseline's median.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.speed.pipeline_throughput import make_input, real_base_records  # noqa: E402


def run_once(checkout: Path, manifest: Path, out: Path, config: Path | None) -> float:
    cmd = [sys.executable, "-m", "jcurate.cli", "run", "--sources", str(manifest), "--out", str(out),
           "--db", str(out.with_suffix(".duckdb")), "--workers", "2"]
    if config:
        cmd += ["--config", str(config)]
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{checkout}: jcurate run failed:\n{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the baseline commit")
    ap.add_argument("--n", type=int, default=60_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--config-b", type=Path, nargs="*", default=[], help="more candidate arms: run configs")
    ap.add_argument("--base-store", type=Path, default=None,
                    help="perturb the kept records of this curated store instead of the embedded default (e.g. "
                         "runs/selection/instruction-k100/store.duckdb: real public instruction data)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="jcurate-ab-"))
    base = tmp / "base"
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base), args.base], cwd=ROOT, check=True)
    try:
        (tmp / "input").mkdir()
        manifest = make_input(args.n, tmp / "input", 1,
                              base=real_base_records(args.base_store) if args.base_store else None)
        arms = [("base " + args.base[:10], base, None), ("working tree", ROOT, None)]
        arms += [(f"working tree + {c.name}", ROOT, c.resolve()) for c in args.config_b]
        times: dict[str, list[float]] = {name: [] for name, _, _ in arms}
        kept: dict[str, int] = {}
        for r in range(args.repeat):
            for i, (name, checkout, config) in enumerate(arms):
                out = tmp / f"out-{r}-{i}"
                times[name].append(run_once(checkout, manifest, out, config))
                kept[name] = json.loads((out / "report.json").read_text())["kept"]
                print(f"run {r + 1} {name}: {times[name][-1]:.1f} s", flush=True)
        ref = statistics.median(times[arms[0][0]])
        print(f"\n{args.n} records, --workers 2, {args.repeat} interleaved runs each")
        # a rule change can keep more records, and the stages after the dedup plan scale with what is kept
        print("| arm | runs (s) | median (s) | / baseline | records kept |\n| --- | --- | --- | --- | --- |")
        for name, _, _ in arms:
            med = statistics.median(times[name])
            print(f"| {name} | {', '.join(f'{t:.1f}' for t in times[name])} | {med:.1f} | {med / ref:.2f} | "
                  f"{kept[name]:,} |")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT)


if __name__ == "__main__":
    main()
