"""The real-data audit benchmark: the current pipeline against records people read and judged.

    uv run python benchmarks/quality/real_data_audit.py [--realdata runs/realdata] [--keep DIR]

Re-runs ``jcurate run`` over the audited records of public Japanese datasets
(``data/audit/records.jsonl``; records of sources that may not be redistributed come from
``--realdata`` when present, see ``benchmarks/real_data/sources.md``) and prints, per stage
and dataset, how many records the current pipeline drops, how many of those were audited,
and the precision: the share of audited drops that the reader judged should be dropped.
A dedup drop counts as audited only when it names the same duplicate the reader compared it
with. Then the bad-kept rate per dataset: audited records the pipeline keeps that the reader
said should be dropped.

Second part, decontamination: every prompt of ELYZA-tasks-100 (``data/eval/elyza_tasks_100.jsonl``)
is planted into a training source verbatim and with one and with two characters changed
(substituted, deleted or inserted, at seeded positions); the share of each that the
pipeline drops at ``decontamination`` is printed (targets: 100% verbatim, >= 95% changed).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from collections import defaultdict
from pathlib import Path

import duckdb
import yaml

from benchmarks.real_data.build_inputs import DEFAULT_REALDATA
from core.jsonl import json_objects

ROOT = Path(__file__).resolve().parents[2]
AUDIT = ROOT / "data/audit"
ELYZA = ROOT / "data/eval/elyza_tasks_100.jsonl"
# the gold set: every reference answer of ELYZA-tasks-100 and of Japanese MT-Bench (first turn) as records,
# run apart with decontamination off (they are the eval prompts themselves)
GOLD_RECORDS = AUDIT / "gold_records.jsonl"
GOLD = {"elyza-tasks-100-gold", "japanese-mt-bench-gold"}
KANA = "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをん"



def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def audited_records(realdata: Path | None) -> tuple[dict[str, list[dict]], list[str]]:
    """Records per source: the committed sample, plus those only ``--realdata`` holds."""
    by_source: dict[str, list[dict]] = defaultdict(list)
    for rec in json_objects(AUDIT / "records.jsonl"):
        by_source[rec.pop("source_id")].append(rec)
    notes = []
    judged = json_objects(AUDIT / "judgements.jsonl")
    wanted = {j["record_id"] for j in judged if j["source_id"] not in GOLD} | {
        j["duplicate_of"] for j in judged if j.get("duplicate_of")}
    have = {f"{s}:{r['id']}" for s, rs in by_source.items() for r in rs}
    missing_sources = sorted({w.split(":", 1)[0] for w in wanted - have})
    for source in missing_sources:
        path = realdata / f"{source}.jsonl" if realdata else None
        if path and path.is_file():
            by_source[source] = [r for r in json_objects(path) if f"{source}:{r['id']}" in wanted]
        else:
            notes.append(f"{source}: not redistributable and no --realdata copy; its audit is skipped")
    return by_source, notes


def run_pipeline(manifest: Path, out: Path, config: dict) -> None:
    from jcurate.cli import main as jcurate

    cfg = out.parent / f"{out.name}.config.yaml"
    cfg.write_text(yaml.safe_dump(config), encoding="utf-8")
    rc = jcurate(["run", "--sources", str(manifest), "--out", str(out), "--db", str(out.parent / f"{out.name}.duckdb"),
                  "--config", str(cfg)])
    if rc:
        raise SystemExit(f"jcurate run failed ({rc})")


def decisions(out: Path) -> dict[str, tuple[str, str | None, str | None]]:
    """record_id -> (stage or 'kept', reason, value)."""
    files = [str(p) for p in sorted(out.glob("kept/*.parquet")) + sorted(out.glob("dropped/*/*.parquet"))]
    rows = duckdb.connect().execute(
        f"""SELECT record_id, coalesce(stage, 'kept'), reason, value
            FROM read_parquet({json.dumps(files)}, union_by_name=true)""").fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def judgement_for(judged: list[dict], stage: str, value: str | None) -> dict | None:
    """The judgement that speaks to this decision (latest round first)."""
    for j in sorted(judged, key=lambda j: j["round"], reverse=True):
        if stage in ("exact_dedup", "near_dedup"):
            if j["stage"] == stage and j.get("duplicate_of") == value:
                return j
        elif j["stage"] not in ("exact_dedup", "near_dedup"):
            return j
    return None


def should_drop(j: dict) -> bool:
    return j["should"] != "keep"


def audit_table(out: Path, sources: list[str]) -> None:
    fate = decisions(out)
    by_record: dict[str, list[dict]] = defaultdict(list)
    for j in json_objects(AUDIT / "judgements.jsonl"):
        by_record[j["record_id"]].append(j)
    drops: dict[tuple[str, str], list] = defaultdict(lambda: [0, 0, 0])  # dropped, audited, right
    kept: dict[str, list] = defaultdict(lambda: [0, 0])  # audited kept, bad
    wrong_examples, bad_kept = [], []
    for rid, judged in by_record.items():
        if rid not in fate:
            continue
        stage, reason, value = fate[rid]
        source = rid.split(":", 1)[0]
        j = judgement_for(judged, stage, value)
        if stage == "kept":
            if j is not None:
                kept[source][0] += 1
                kept[source][1] += should_drop(j)
                if should_drop(j):
                    bad_kept.append(f"  {rid} (should: {j['should']}): {j['why']}")
            continue
        cell = drops[(stage, source)]
        cell[0] += 1
        if j is not None:
            cell[1] += 1
            cell[2] += should_drop(j)
            if not should_drop(j):
                wrong_examples.append(f"  {stage}/{reason} {rid}: {j['why']}")
    print(f"\n{'stage':<16} {'dataset':<24} {'dropped':>7} {'audited':>7} {'right':>5} {'precision':>9}")
    for (stage, source), (n, audited, right) in sorted(drops.items()):
        prec = f"{right / audited:.2f}" if audited else "-"
        print(f"{stage:<16} {source:<24} {n:>7} {audited:>7} {right:>5} {prec:>9}")
    cut: dict[str, list] = defaultdict(lambda: [0, 0])  # audited cut-off answers, caught as truncated
    for rid, judged in by_record.items():
        if rid in fate and any(j["should"] == "quality/truncated_output" for j in judged):
            cut[rid.split(":", 1)[0]][0] += 1
            cut[rid.split(":", 1)[0]][1] += fate[rid][1] == "truncated_output"
    print(f"\n{'dataset':<24} {'cut-off answers audited':>23} {'caught as truncated':>19}")
    for source, (n, caught) in sorted(cut.items()):
        print(f"{source:<24} {n:>23} {caught:>19}")
    print(f"\n{'dataset':<24} {'kept audited':>12} {'bad kept':>8} {'bad-kept rate':>13}")
    for source in sources:
        n, bad = kept.get(source, (0, 0))
        print(f"{source:<24} {n:>12} {bad:>8} {bad / n if n else float('nan'):>13.3f}")
    if wrong_examples:
        print("\nwrong drops (audited):")
        print("\n".join(wrong_examples[:40]))
    if bad_kept:
        print("\nbad records kept (audited):")
        print("\n".join(bad_kept[:60]))


def perturb(text: str, edits: int, rng: random.Random) -> str:
    chars = list(text)
    for _ in range(edits):
        i = rng.randrange(len(chars))
        op = rng.choice(("substitute", "delete", "insert"))
        if op == "substitute":
            chars[i] = rng.choice([c for c in KANA if c != chars[i]])
        elif op == "delete" and len(chars) > 1:
            del chars[i]
        else:
            chars.insert(i, rng.choice(KANA))
    return "".join(chars)


def gold(tmp: Path) -> None:
    """The gold set through the pipeline, decontamination off: every drop printed with its reading."""
    folder = tmp / "gold"
    folder.mkdir()
    by_source: dict[str, list[dict]] = defaultdict(list)
    for rec in json_objects(GOLD_RECORDS):
        by_source[rec.pop("source_id")].append(rec)
    template = {s["id"]: s for s in yaml.safe_load((AUDIT / "sources.yaml").read_text(encoding="utf-8"))["sources"]}
    entries = []
    for source, rows in sorted(by_source.items()):
        write_jsonl(folder / f"{source}.jsonl", rows)
        entries.append({**template[source], "path": f"{source}.jsonl"})
    (folder / "sources.yaml").write_text(yaml.safe_dump({"sources": entries}, allow_unicode=True), encoding="utf-8")
    run_pipeline(folder / "sources.yaml", folder / "out", {"decontamination": {"enabled": False},
                                                           "scoring": {"classifier": False}})
    fate = decisions(folder / "out")
    readings = {j["record_id"]: j for j in json_objects(AUDIT / "judgements.jsonl") if j["source_id"] in GOLD}
    total = len(fate)
    dropped = {rid: f for rid, f in fate.items() if f[0] != "kept"}
    truly_cut = {rid for rid in dropped if rid in readings and readings[rid]["verdict"] == "right"}
    complete = total - len(truly_cut)
    kept_complete = complete - (len(dropped) - len(truly_cut))
    print(f"\ngold: reference answers of ELYZA-tasks-100 and Japanese MT-Bench as records ({total}), "
          f"decontamination off")
    print(f"complete references kept: {kept_complete} / {complete} ({kept_complete / complete:.3f}); "
          f"truly cut-off references dropped: {len(truly_cut)}")
    for rid, (stage, reason, value) in sorted(dropped.items()):
        j = readings.get(rid)
        reading = f"{'right' if j['verdict'] == 'right' else 'WRONG'}: {j['why']}" if j else "not read yet"
        print(f"  {rid} {stage}/{reason} ({value}) -- {reading}")


def decontamination(tmp: Path) -> None:
    prompts = [item["input"] for item in json_objects(ELYZA)]
    rng = random.Random(0)
    rows = []
    for i, p in enumerate(prompts):
        answer = f"はい、{i}番目の質問にお答えします。詳しく説明すると次のとおりです。"
        rows.append({"id": f"verbatim-{i}", "instruction": p, "input": "", "output": answer})
        rows.append({"id": f"edit1-{i}", "instruction": perturb(p, 1, rng), "input": "", "output": answer})
        rows.append({"id": f"edit2-{i}", "instruction": perturb(p, 2, rng), "input": "", "output": answer})
    folder = tmp / "decont"
    folder.mkdir()
    write_jsonl(folder / "planted.jsonl", rows)
    manifest = folder / "sources.yaml"
    manifest.write_text(yaml.safe_dump({"sources": [{
        "id": "planted-elyza", "path": "planted.jsonl", "format": "jsonl", "license": "CC-BY-SA-4.0",
        "fields": {"instruction": "instruction", "input": "input", "output": "output"}, "id_field": "id"}]}),
        encoding="utf-8")
    # dedup off: a changed copy must be caught by decontamination, not as a near duplicate of the verbatim one
    run_pipeline(manifest, folder / "out", {"decontamination": {"eval_files": [str(ELYZA)]},
                                            "exact_dedup": {"enabled": False}, "near_dedup": {"enabled": False},
                                            "scoring": {"classifier": False}})
    fate = decisions(folder / "out")
    print(f"\ndecontamination: ELYZA-tasks-100 prompts planted into a training source ({len(prompts)} each)")
    print(f"{'copy':<20} {'dropped':>7} {'share':>6}   other stages")
    for kind in ("verbatim", "edit1", "edit2"):
        ids = [f"planted-elyza:{kind}-{i}" for i in range(len(prompts))]
        caught = sum(fate[r][0] == "decontamination" for r in ids)
        other = defaultdict(int)
        for r in ids:
            if fate[r][0] not in ("decontamination", "kept"):
                other[fate[r][0]] += 1
        print(f"{kind:<20} {caught:>7} {caught / len(ids):>6.2f}   {dict(other) or ''}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--realdata", type=Path, default=DEFAULT_REALDATA)
    ap.add_argument("--keep", type=Path, help="keep the runs in this folder")
    args = ap.parse_args()
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="jcurate-audit-"))
    tmp.mkdir(parents=True, exist_ok=True)
    by_source, notes = audited_records(args.realdata if args.realdata.is_dir() else None)
    template = {s["id"]: s for s in yaml.safe_load((AUDIT / "sources.yaml").read_text(encoding="utf-8"))["sources"]}
    entries = []
    for source, rows in sorted(by_source.items(), key=lambda kv: list(template).index(kv[0])):
        write_jsonl(tmp / f"{source}.jsonl", rows)
        entries.append({**template[source], "path": f"{source}.jsonl"})
    (tmp / "sources.yaml").write_text(yaml.safe_dump({"sources": entries}, allow_unicode=True), encoding="utf-8")
    run_pipeline(tmp / "sources.yaml", tmp / "audit", {"decontamination": {"eval_files": [str(ELYZA)]},
                                                       "scoring": {"classifier": False}})
    for note in notes:
        print(note)
    audit_table(tmp / "audit", [e["id"] for e in entries])
    gold(tmp)
    decontamination(tmp)
    print(f"\nruns in {tmp}")


if __name__ == "__main__":
    main()
