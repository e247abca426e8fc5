"""Load test of ``jcurate serve``: POST /v1/score from concurrent clients on loopback.

    uv run python benchmarks/service/service_load.py [--requests 2000] [--clients 8] [--batch 16]

Baseline: the classifier alone on the same records, in process (what ``jcurate classifier
score`` does per record). The table shows the whole in-process scoring path (normalise,
quality, language, duplicate lookups, classifier) and the service over HTTP as fractions of
that baseline: the service's overhead as a ratio.

``--compare-with DIR`` also load-tests a server running the code of another checkout (e.g.
``git worktree add /tmp/before <commit>``) on the same store and records, one worker each, and
prints this tree's /v1/score records/s as a multiple of that one's. ``--compare-db`` gives that
server the store its own tree built (``jcurate run`` there), where an older tree cannot read this
one's store (its config has keys the old code does not know).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="server processes, one load test each")
    parser.add_argument("--db", default=None, help="an existing store (default: jcurate run on data/ into a temp dir)")
    parser.add_argument("--compare-with", default=None, metavar="DIR",
                        help="another checkout whose server is the baseline for /v1/score records/s per worker")
    parser.add_argument("--compare-db", default=None, metavar="DB",
                        help="the baseline server's store (built by that checkout); default: the same store")
    args = parser.parse_args()

    from benchmarks.service.loadtest import run_load, start_server
    from benchmarks.speed.pipeline_throughput import base_records, perturb
    from core.net import free_port
    from curate.scoring.classifier import QualityClassifier
    from jcurate.cli import main as jcurate
    from jcurate.service.scoring import RecordScorer

    db = args.db
    if db is None:
        tmp = Path(tempfile.mkdtemp(prefix="jcurate-serve-"))
        db = str(tmp / "db.duckdb")
        assert jcurate(["run", "--out", str(tmp / "out"), "--db", db]) == 0
    rng = random.Random(7)
    base = base_records()
    n_batches = min(args.requests, 250)  # distinct bodies, cycled
    records = [perturb(base[i % len(base)], i, rng) for i in range(n_batches * args.batch)]
    batches = [[{"instruction": r["instruction"], "output": r["output"]} for r in records[i:i + args.batch]]
               for i in range(0, len(records), args.batch)]

    scorer = RecordScorer(db)
    clf = QualityClassifier(scorer.classifier.path)
    texts = [r["instruction"] + "\n\n" + r["output"] for r in records]
    start = time.perf_counter()
    clf.score(texts)
    clf_rate = len(texts) / (time.perf_counter() - start)
    for b in batches:  # warm pass: the load test cycles through the same batches, so its index cache is warm too
        scorer.score(b)
    start = time.perf_counter()
    for b in batches:
        scorer.score(b)
    inproc_rate = len(records) / (time.perf_counter() - start)

    provenance_rows = provenance_latency(db)
    loads = {}
    for workers in args.workers:
        port = free_port()
        proc = start_server(db, port, "--workers", str(workers))
        try:
            loads[workers] = run_load(f"http://127.0.0.1:{port}", batches, requests=args.requests, clients=args.clients)
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    print(f"\n{'path':<66} {'records':>8} {'records/s':>10} {'x baseline':>10}")
    print(f"{'classifier only, in process (jcurate classifier score; baseline)':<66} {len(texts):>8} "
          f"{clf_rate:>10.0f} {1.0:>10.2f}")
    print(f"{'RecordScorer in process (all checks, no HTTP)':<66} {len(records):>8} {inproc_rate:>10.0f} "
          f"{inproc_rate / clf_rate:>10.2f}")
    for workers, load in loads.items():
        label = f"POST /v1/score, {workers} worker(s), {args.clients} clients x {args.batch} records"
        print(f"{label:<66} {load['records']:>8} {load['records_per_s']:>10.0f} {load['records_per_s'] / clf_rate:>10.2f}")
    if args.compare_with:
        port = free_port()
        proc = start_server(args.compare_db or db, port, "--workers", "1", tree=args.compare_with)
        try:
            before = run_load(f"http://127.0.0.1:{port}", batches, requests=args.requests, clients=args.clients)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        now = loads.get(1) or next(iter(loads.values()))
        print(f"\nPOST /v1/score, 1 worker: this tree {now['records_per_s']:.0f} records/s, {args.compare_with} "
              f"(baseline) {before['records_per_s']:.0f} records/s: {now['records_per_s'] / before['records_per_s']:.2f}x")
    print(f"\n{'provenance endpoint (median of 30)':<40} {'HTTP ms':>9} {'in process ms (baseline)':>25} {'ratio':>7}")
    for name, http_ms, inproc_ms in provenance_rows:
        print(f"{name:<40} {http_ms:>9.1f} {inproc_ms:>25.1f} {http_ms / inproc_ms:>7.2f}")
    for workers, load in loads.items():
        print(f"\nload test, {workers} worker(s): {load['requests']} requests ({load['ok']} ok, {load['errors']} errors) "
              f"in {load['seconds']} s; latency p50 {load['p50_ms']} ms, p99 {load['p99_ms']} ms, max {load['max_ms']} ms; "
              f"{load['requests_per_s']} requests/s")
        if load["errors"]:
            print("first errors:", *load["first_errors"], sep="\n  ")


def provenance_latency(db: str, repeat: int = 30) -> list[tuple[str, float, float]]:
    """Median latency of the provenance endpoints over HTTP (a fresh read-only connection per
    request) vs the same lookup on a connection held open in process (the baseline)."""
    import statistics
    import urllib.parse
    import urllib.request

    import duckdb

    from benchmarks.service.loadtest import start_server
    from core.net import free_port
    from jcurate.service import provenance
    from licenses.catalogue import load_catalogue

    catalogue = load_catalogue()
    con = duckdb.connect(db, read_only=True)
    rid = con.execute("SELECT record_id FROM record_fate WHERE dropped_at = 'near_dedup' LIMIT 1").fetchone()[0]
    cases = [
        ("GET /v1/records/{id}", "/v1/records/" + urllib.parse.quote(rid),
         lambda: provenance.record(con, rid, catalogue)),
        ("GET /v1/records?q=東京", "/v1/records?q=" + urllib.parse.quote("東京"),
         lambda: provenance.search(con, "東京")),
        ("GET /v1/sources", "/v1/sources", lambda: provenance.sources_overview(con)),
        ("GET /v1/subsets", "/v1/subsets", lambda: provenance.subsets(con, catalogue)),
    ]
    inproc = {}
    for name, _, fn in cases:
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        inproc[name] = statistics.median(times) * 1000
    con.close()
    port = free_port()
    proc = start_server(db, port)
    rows = []
    try:
        for name, path, _ in cases:
            times = []
            for _ in range(repeat):
                t = time.perf_counter()
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}") as r:
                    r.read()
                times.append(time.perf_counter() - t)
            rows.append((name, statistics.median(times) * 1000, inproc[name]))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return rows


if __name__ == "__main__":
    main()
