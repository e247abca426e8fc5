"""Merge the quality labels made by reading and export the labelled records.

    uv run python benchmarks/real_data/export_labels.py --realdata /work/realdata

Reads ``data/labels/shares/real_share_*.jsonl`` (one label 1–5 and a one-line why per record, by the
people who read them; guide: ``data/LABELLING.md``) and writes ``data/labels/real_labels.jsonl``
with each record's source repository, commit and licence (from ``benchmarks/real_data/sources.md``'s
table, repeated in ``PROVENANCE``), and ``data/labels/real_records.jsonl``: the labelled records of
the sources that may be redistributed (Japanese Daily Dialogue may not: its labels are kept,
its records are read from ``--realdata``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LABELS = ROOT / "data/labels"
PROVENANCE = {
    "jsquad-ja": ("yahoojapan/JGLUE", "6f071c09316baae89c3d083a90985b4b1cb9968c", "CC-BY-SA-4.0"),
    "real-persona-chat": ("nu-dialogue/real-persona-chat", "28d0b6b3865b29cabc26c230a2db37cdf315e937", "CC-BY-SA-4.0"),
    "japanese-daily-dialogue": ("jqk09a/japanese-daily-dialogue", "5e612e02da1228e22d2c8eec6aebe6eaa15b48f9",
                                "CC-BY-NC-ND-4.0"),
    "instruction-ja-mt": ("megagonlabs/instruction_ja", "a72a5d05fd1486c1c3b1e51eb2f362d66e8589dc", "MIT"),
    "instruction-ja-edited": ("megagonlabs/instruction_ja", "a72a5d05fd1486c1c3b1e51eb2f362d66e8589dc", "MIT"),
    "multialpaca-ja": ("DAMO-NLP-MT/PolyLM", "a8b49866ef90ec2db7972d34dececec35bd2df62", "Apache-2.0"),
}
NO_REDISTRIBUTION = {"japanese-daily-dialogue"}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--realdata", type=Path, default=Path("/work/realdata"))
    args = ap.parse_args()
    labels = []
    for path in sorted((LABELS / "shares").glob("real_share_*.jsonl")):
        for lab in read_jsonl(path):
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
            for rec in read_jsonl(args.realdata / f"{source}.jsonl"):
                if f"{source}:{rec['id']}" in wanted:
                    f.write(json.dumps({"source_id": source, **rec}, ensure_ascii=False) + "\n")
                    n += 1
    print(f"{len(labels)} labels, {n} records exported")


if __name__ == "__main__":
    main()
