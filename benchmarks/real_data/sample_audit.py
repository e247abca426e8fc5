"""Draw the audit sample of a finished run: per dataset, up to N drops of every stage and M kept records.

    uv run python benchmarks/real_data/sample_audit.py --out OUT_OF_A_RUN --shares 4 --to runs/audit_work

Writes ``share_<k>.jsonl`` files for people to read: each line one record (instruction, input,
output or messages), the stage that dropped it, its reason and value, and for duplicates the
record it duplicates. The judgements are made by reading, not by this script.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import duckdb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="the OUT folder of a jcurate run")
    ap.add_argument("--to", required=True)
    ap.add_argument("--drops", type=int, default=50)
    ap.add_argument("--kept", type=int, default=100)
    ap.add_argument("--shares", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", help="a JSONL of (record_id, stage) already audited, left out")
    args = ap.parse_args()
    out = Path(args.out)
    con = duckdb.connect()
    rows = con.execute(
        f"""SELECT record_id, source_id, coalesce(stage, 'kept') AS stage, reason, value, instruction, input, output,
                   messages
            FROM read_parquet(['{out}/kept/*.parquet', '{out}/dropped/*/*.parquet'], union_by_name=true)"""
    ).fetchall()
    cols = ["record_id", "source_id", "stage", "reason", "value", "instruction", "input", "output", "messages"]
    records = {r[0]: dict(zip(cols, r)) for r in rows}
    skip = set()
    if args.skip:
        for line in Path(args.skip).read_text(encoding="utf-8").splitlines():
            j = json.loads(line)
            skip.add((j["record_id"], j["stage"]))
    rng = random.Random(args.seed)
    picked = []
    groups: dict[tuple[str, str], list[dict]] = {}
    for rec in records.values():
        groups.setdefault((rec["source_id"], rec["stage"]), []).append(rec)
    for (_source, stage), recs in sorted(groups.items()):
        recs = sorted((r for r in recs if (r["record_id"], r["stage"]) not in skip), key=lambda r: r["record_id"])
        n = args.kept if stage == "kept" else args.drops
        picked += rng.sample(recs, min(n, len(recs)))
    for rec in picked:
        if rec["messages"]:
            rec["messages"] = json.loads(rec["messages"])
        if rec["stage"] in ("exact_dedup", "near_dedup") and rec["value"] in records:
            partner = records[rec["value"]]
            rec["duplicate_of"] = {k: partner[k] for k in ("record_id", "instruction", "input", "output")}
            if partner["messages"]:
                rec["duplicate_of"]["messages"] = json.loads(partner["messages"])
    rng.shuffle(picked)
    to = Path(args.to)
    to.mkdir(parents=True, exist_ok=True)
    for k in range(args.shares):
        share = picked[k::args.shares]
        with open(to / f"share_{k}.jsonl", "w", encoding="utf-8") as f:
            for rec in share:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        print(f"share_{k}.jsonl: {len(share)} records")


if __name__ == "__main__":
    main()
