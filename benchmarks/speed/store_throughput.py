"""Ingest throughput into the DuckDB store, and the time of the five SQL questions on it.

    uv run python benchmarks/speed/store_throughput.py OUT_DIR   (a finished run folder, e.g. from pipeline_throughput.py)

Baseline, in the same run: a bare ``CREATE TABLE AS SELECT * FROM read_parquet(...)`` of the
same shards into a fresh DuckDB file (what loading costs with no provenance at all).
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from curate.handover.ingest import ingest_run
    from curate.handover.subsets import SubsetCriteria, create_subset
    from curate.reading.manifest import Source
    from curate.running.pipeline import STAGES
    from curate.running.report import build_report
    from licenses.catalogue import load_catalogue
    from store.query import run_query

    out = Path(sys.argv[1])
    tmp = Path(tempfile.mkdtemp(prefix="jcurate-store-"))
    report = build_report(out)
    n = report["read"]
    source_ids = list(report["per_source"])
    sources = [Source(id=s, path="bench", files=("bench",), format="jsonl", license="CC-BY-4.0",
                      fields={"instruction": "instruction", "output": "output"}) for s in source_ids]

    start = time.perf_counter()
    con = duckdb.connect(str(tmp / "bare.duckdb"))
    con.execute(f"CREATE TABLE shard AS SELECT * FROM read_parquet(['{out}/kept/*.parquet', '{out}/dropped/*/*.parquet'])")
    con.close()
    bare = time.perf_counter() - start

    db = tmp / "store.duckdb"
    start = time.perf_counter()
    ingest_run(db, out, sources, load_catalogue(), config={}, report=report, sources_file="bench", stages=STAGES)
    ours = time.perf_counter() - start

    print(f"{'load of ' + str(n) + ' records':<40} {'seconds':>8} {'records/s':>10} {'ratio':>6}")
    print(f"{'bare CREATE TABLE AS (baseline)':<40} {bare:>8.2f} {n / bare:>10.0f} {1.0:>6.2f}")
    print(f"{'jcurate ingest_run (one transaction)':<40} {ours:>8.2f} {n / ours:>10.0f} {ours / bare:>6.2f}")

    create_subset(db, SubsetCriteria(name="commercial-top100", license_use="commercial", random=100), load_catalogue())
    text = (ROOT / "docs/questions.sql").read_text(encoding="utf-8")
    questions = {m.group(1): m.group(2) for m in re.finditer(r"-- (Q\d):[^\n]*\n(.*?;)", text, re.S)}
    # Q2 asks about a record of the embedded default; ask about one of this run instead
    rid = duckdb.connect(str(db), read_only=True).execute(
        "SELECT record_id FROM decisions WHERE NOT kept LIMIT 1").fetchone()[0]
    questions["Q2"] = questions["Q2"].replace("jcurate-labelled:punct-0", rid)
    print(f"\n{'question on the ' + str(n) + '-record store':<40} {'median ms':>10} {'rows':>6}")
    for q, sql in questions.items():
        times = []
        for _ in range(5):
            start = time.perf_counter()
            _, rows = run_query(db, sql)
            times.append((time.perf_counter() - start) * 1000)
        print(f"{q:<40} {statistics.median(times):>10.1f} {len(rows):>6}")
    print("(each query opens the store read-only, as `jcurate sql` does; the time includes that)")


if __name__ == "__main__":
    main()
