"""Merge the audit judgements and export the audited records (and their duplicate partners).

    uv run python benchmarks/real_data/export_audit.py --realdata runs/realdata \
        --shares runs/audit_work/round1 runs/audit_work/round2

Reads ``data/audit/rounds/round*_share_*.jsonl`` (one judgement per record, written by the people
who read them), adds the duplicate partner each dedup drop was judged against (from the
share files the readers were given), and writes:

* ``data/audit/judgements.jsonl``: record, source, the audited decision, right/wrong, the
  right decision, why (one line), round, and ``duplicate_of`` for dedup decisions;
* ``data/audit/records.jsonl``: the audited records and their partners, in the shape
  ``build_inputs.py`` writes, from the licences that allow redistribution. Records of
  sources whose terms forbid it (``NO_REDISTRIBUTION``) stay out: the benchmark takes
  them from ``--realdata`` when it is there.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from build_inputs import DEFAULT_REALDATA, NO_REDISTRIBUTION

from core.jsonl import json_objects

ROOT = Path(__file__).resolve().parents[2]
AUDIT = ROOT / "data/audit"



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--realdata", default=str(DEFAULT_REALDATA),
                    help="the folder build_inputs.py wrote ($JCURATE_REALDATA, else runs/realdata)")
    ap.add_argument("--shares", nargs="+", required=True, help="folders of the share files the readers got")
    args = ap.parse_args()
    partners = {}
    for folder in args.shares:
        rnd = Path(folder).name
        for path in sorted(Path(folder).glob("share_*.jsonl")):
            for rec in json_objects(path):
                if rec.get("duplicate_of"):
                    partners[(rnd, rec["record_id"])] = rec["duplicate_of"]["record_id"]
    judgements = []
    for path in sorted((AUDIT / "rounds").glob("round*_share_*.jsonl")):
        rnd = path.name.split("_share_")[0]
        for j in json_objects(path):
            j["round"] = rnd
            if j["stage"] in ("exact_dedup", "near_dedup") and not j.get("duplicate_of"):
                j["duplicate_of"] = partners.get((rnd, j["record_id"]))
            judgements.append(j)
    seen = set()
    for j in judgements:  # a record is judged once per round; a later round may judge it again at a new stage
        key = (j["round"], j["record_id"])
        if key in seen:
            raise SystemExit(f"{j['record_id']} judged twice in {j['round']}")
        seen.add(key)
    with open(AUDIT / "judgements.jsonl", "w", encoding="utf-8") as f:
        for j in sorted(judgements, key=lambda j: (j["round"], j["source_id"], j["record_id"])):
            f.write(json.dumps(j, ensure_ascii=False) + "\n")
    wanted = {j["record_id"] for j in judgements} | {j["duplicate_of"] for j in judgements if j.get("duplicate_of")}
    records = []
    for source in sorted({w.split(":", 1)[0] for w in wanted} - NO_REDISTRIBUTION):
        path = Path(args.realdata) / f"{source}.jsonl"
        path = path if path.is_file() else Path(args.realdata) / "gold" / f"{source}.jsonl"  # the gold set
        for rec in json_objects(path):
            if f"{source}:{rec['id']}" in wanted:
                records.append({"source_id": source, **rec})
    with open(AUDIT / "records.jsonl", "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print(f"{len(judgements)} judgements, {len(records)} records exported "
          f"({len(wanted) - len(records)} left to --realdata: {', '.join(sorted(NO_REDISTRIBUTION))})")


if __name__ == "__main__":
    main()
