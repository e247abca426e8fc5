"""Precision and recall of each stage on the planted cases of the embedded default.

    uv run python benchmarks/quality/planted_eval.py [--out DIR]   (runs `jcurate run` first unless --out has a run)

A planted record counts as caught when it is dropped by the stage we expect; a record a
stage drops that is not planted for that stage counts against its precision.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import duckdb


def evaluate(out: Path, planted_path: Path = Path("data/planted.jsonl")) -> dict:
    planted = [json.loads(line) for line in planted_path.read_text(encoding="utf-8").splitlines()]
    con = duckdb.connect()
    dropped = dict(
        (rid, (stage, reason))
        for rid, stage, reason in con.execute(
            f"SELECT record_id, stage, reason FROM read_parquet('{out}/dropped/*/*.parquet')").fetchall()
    )
    kept = {r[0] for r in con.execute(f"SELECT record_id FROM read_parquet('{out}/kept/*.parquet')").fetchall()}
    stages = sorted({p["expect_stage"] for p in planted if p["expect_stage"]})
    table = {}
    for stage in stages:
        expected = {p["record_id"] for p in planted if p["expect_stage"] == stage}
        hit = {rid for rid, (st, _) in dropped.items() if st == stage}
        tp = len(expected & hit)
        table[stage] = {
            "planted": len(expected), "dropped": len(hit), "caught": tp,
            "recall": tp / len(expected) if expected else None,
            "precision": tp / len(hit) if hit else None,
            "missed": sorted(expected - hit), "unexpected": sorted(hit - expected),
        }
    must_pass = [p["record_id"] for p in planted if p["expect_stage"] is None]
    table["must_pass"] = {"planted": len(must_pass), "kept": sum(r in kept for r in must_pass),
                          "not_kept": {r: dropped.get(r) for r in must_pass if r not in kept}}
    return table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = Path(args.out) if args.out else None
    if out is None or not (out / "kept").is_dir():
        from jcurate.cli import main as jcurate

        out = out or Path(tempfile.mkdtemp(prefix="jcurate-planted-"))
        jcurate(["run", "--out", str(out), "--db", str(out / "store.duckdb")])
    table = evaluate(out)
    print(f"\n{'stage':<16} {'planted':>7} {'dropped':>7} {'caught':>6} {'recall':>7} {'precision':>9}")
    for stage, row in table.items():
        if stage == "must_pass":
            continue
        print(f"{stage:<16} {row['planted']:>7} {row['dropped']:>7} {row['caught']:>6} "
              f"{row['recall']:>7.2f} {row['precision'] if row['precision'] is not None else float('nan'):>9.2f}")
    mp = table["must_pass"]
    print(f"must pass (Japanese with code, same prompt with another answer): {mp['kept']}/{mp['planted']} kept "
          f"{mp['not_kept'] or ''}")
    for stage, row in table.items():
        if stage != "must_pass" and (row["missed"] or row["unexpected"]):
            print(f"{stage}: missed {row['missed']} unexpected {row['unexpected']}")


if __name__ == "__main__":
    main()
