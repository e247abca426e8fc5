"""`jcurate run` side by side with HojiChar, the peer a Japanese user would pick, on the same input.

    uv sync --group hojichar && uv run --group hojichar python benchmarks/speed/vs_hojichar.py [--n 60000] [--repeat 3]

The input: the perturbed replicas of pipeline_throughput.py in ONE JSONL file (near duplicates
included). HojiChar 0.18 (the baseline) runs in one process: DocumentNormalizer, AcceptJapanese,
DocumentLengthFilter, CharRepetitionRatioFilter, GenerateDedupLSH (5-gram characters, 20 bands x 5,
as our defaults) and InlineDeduplicator, each step over all surviving documents in turn so its
time is its own. jcurate runs with its defaults (``--workers`` = cores), doing more: lang-ID,
exact + near dedup with verification, decontamination, Parquet shards and the DuckDB store.
Printed: seconds and records/s per step, end to end and the ratio; and the duplicates each drops
that the other does not (HojiChar's inline dedup keeps the first of a group, as jcurate's
survivor rule does for one file).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.speed.pipeline_throughput import make_input  # noqa: E402


def hojichar_run(rows: list[dict]) -> tuple[list[tuple[str, float]], float, set[str]]:
    from hojichar import Document
    from hojichar.filters import deduplication, document_filters

    steps = [("normalise", document_filters.DocumentNormalizer()), ("AcceptJapanese", document_filters.AcceptJapanese()),
             ("length", document_filters.DocumentLengthFilter(min_doc_len=1, max_doc_len=20000)),
             ("char repetition", document_filters.CharRepetitionRatioFilter()),
             ("MinHash-LSH keys", deduplication.GenerateDedupLSH(n_grams=5, num_bands=20, band_size=5)),
             ("inline dedup", deduplication.InlineDeduplicator())]
    docs = []
    for r in rows:
        doc = Document("\n".join(p for p in (r["instruction"], r.get("input") or "", r["output"]) if p))
        doc.extras["id"] = r["id"]
        docs.append(doc)
    timings = []
    start_all = time.perf_counter()
    for name, step in steps:
        start = time.perf_counter()
        for doc in docs:
            if not doc.is_rejected:
                step.apply(doc)
        timings.append((name, time.perf_counter() - start))
        if name == "MinHash-LSH keys":
            rejected_before_dedup = {d.extras["id"] for d in docs if d.is_rejected}
    total = time.perf_counter() - start_all
    duplicates = {d.extras["id"] for d in docs if d.is_rejected} - rejected_before_dedup
    return timings, total, duplicates


def jcurate_run(manifest: Path, out: Path) -> tuple[dict, float, set[str]]:
    import duckdb

    db = out.parent / f"{out.name}.duckdb"  # a new store per run: a fresh run, not a re-run
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "jcurate.cli", "run", "--sources", str(manifest), "--out", str(out),
                    "--db", str(db)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    stages = json.loads((out / "report.json").read_text(encoding="utf-8"))["seconds"]
    con = duckdb.connect(str(db), read_only=True)
    try:
        dups = {r[0].split(":", 1)[1] for r in con.execute(
            "SELECT record_id FROM record_fate WHERE dropped_at IN ('exact_dedup', 'near_dedup')").fetchall()}
    finally:
        con.close()
    return stages, wall, dups


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60_000)
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of each, interleaved; medians are compared (this machine is shared and noisy)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="jcurate-vs-hojichar-"))
    manifest = make_input(args.n, tmp, shards=1)
    rows = [json.loads(line) for line in (tmp / "part-00.jsonl").read_text(encoding="utf-8").splitlines()]
    h_runs, j_runs = [], []
    for i in range(args.repeat):
        h_runs.append(hojichar_run(rows))
        j_runs.append(jcurate_run(manifest, tmp / f"out-{i}"))
        print(f"run {i + 1}: HojiChar {h_runs[-1][1]:.1f} s, jcurate {j_runs[-1][1]:.1f} s", file=sys.stderr)
    n = len(rows)
    h_total, j_wall = median([r[1] for r in h_runs]), median([r[1] for r in j_runs])
    h_dups, j_dups = h_runs[0][2], j_runs[0][2]
    print(f"\n{n} records, one JSONL file; medians of {args.repeat} interleaved runs")
    print(f"{'HojiChar 0.18 step (baseline)':<34} {'s':>7} {'records/s':>10}")
    for k, (name, _) in enumerate(h_runs[0][0]):
        secs = median([r[0][k][1] for r in h_runs])
        print(f"  {name:<32} {secs:>7.1f} {n / secs if secs else float('inf'):>10,.0f}")
    print(f"  {'all steps, one process':<32} {h_total:>7.1f} {n / h_total:>10,.0f}")
    print(f"{'jcurate run stage':<34} {'s':>7} {'records/s':>10}")
    for name in j_runs[0][0]:
        secs = median([r[0][name] for r in j_runs])
        print(f"  {name:<32} {secs:>7.1f} {n / secs if secs else float('inf'):>10,.0f}")
    print(f"  {'end to end (incl. start, store)':<32} {j_wall:>7.1f} {n / j_wall:>10,.0f}")
    print(f"jcurate / HojiChar records/s: {h_total / j_wall:.2f}x (1.0 = as fast); per run: "
          + ", ".join(f"{h[1] / j[1]:.2f}x" for h, j in zip(h_runs, j_runs)))
    print(f"duplicates dropped: HojiChar {len(h_dups)}, jcurate {len(j_dups)}; both {len(h_dups & j_dups)}, "
          f"only HojiChar {len(h_dups - j_dups)}, only jcurate {len(j_dups - h_dups)}")
    for name, only in (("only HojiChar", sorted(h_dups - j_dups)[:5]), ("only jcurate", sorted(j_dups - h_dups)[:5])):
        print(f"  e.g. {name}: {', '.join(only) or '-'}")


if __name__ == "__main__":
    main()
