"""Merge the quality labels made by reading and export the labelled records.

    uv run python benchmarks/real_data/export_labels.py --realdata runs/realdata

Reads ``data/labels/shares/real_share_*.jsonl`` (one label 1–5 and a one-line why per record, by the
people who read them; guide: ``data/LABELLING.md``) and writes ``data/labels/real_labels.jsonl``
with each record's source repository, commit and licence (``build_inputs.DATASETS``), and
``data/labels/real_records.jsonl``: the labelled records of the sources that may be redistributed
(Japanese Daily Dialogue may not: its labels are kept, its records are read from ``--realdata``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from build_inputs import DATASETS, DEFAULT_REALDATA, NO_REDISTRIBUTION

from core.jsonl import json_objects

ROOT = Path(__file__).resolve().parents[2]
LABELS = ROOT / "data/labels"
PROVENANCE = {d.id: (d.repo, d.commit, d.license) for d in DATASETS}



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--realdata", type=Path, default=DEFAULT_REALDATA)
    args = ap.parse_args()
    labels = []
    for path in sorted((LABELS / "shares").glob("real_share_*.jsonl")):
        for lab in json_objects(path):
            if lab.get("label") not in (1, 2, 3, 4, 5):
                raise SystemExit(f"{path.name}: {lab['record_id']}: label {lab.get('label')!r} is not 1-5")
            repo, commit, licence = PROVENANCE[lab["source_id"]]
            labels.append({**lab, "repository": repo, "commit": commit, "license": licence, "share": path.stem})
    ids = [lab["record_id"] for lab in labels]
    if len(ids) != len(set(ids)):
        raise SystemExit("a record is labelled twice")
    with open(LABELS / "real_labels.jsonl", "w", encoding="utf-8") as f:
        for lab in sorted(labels, key=lambda x: x["record_id"]):
            f.write(json.dumps(lab, ensure_ascii=False) + "\n")
    wanted = set(ids)
    with open(LABELS / "real_records.jsonl", "w", encoding="utf-8") as f:
        n = 0
        for source in sorted({i.split(":", 1)[0] for i in ids} - NO_REDISTRIBUTION):
            for rec in json_objects(args.realdata / f"{source}.jsonl"):
                if f"{source}:{rec['id']}" in wanted:
                    f.write(json.dumps({"source_id": source, **rec}, ensure_ascii=False) + "\n")
                    n += 1
    print(f"{len(labels)} labels, {n} records exported")


if __name__ == "__main__":
    main()
