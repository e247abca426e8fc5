"""The run report: per-stage and per-source counts read back from the Parquet shards."""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb

from curate.running.pipeline import STAGES


def shard_glob(out: Path, kind: str) -> str | None:
    pattern = "kept/*.parquet" if kind == "kept" else "dropped/*/*.parquet"
    return str(out / pattern) if list(out.glob(pattern)) else None


def build_report(out: Path, timings: dict[str, float] | None = None, sources=None) -> dict:
    """Counts of the run's shards: read, kept, dropped per stage and reason, per source (sources in the
    order their first record appears, kept shards first). Counted by DuckDB in groups of (source, file,
    stage, reason), not row by row in Python (a quarter of a second per 60k records). With the run's
    ``sources``, a source none of whose rows was read is listed too, with 0, and ``files_without_rows``
    names every file that gave no row (empty, a header alone, an empty array): a truncated download must
    not pass unnoticed."""
    con = duckdb.connect()
    kept_glob, dropped_glob = shard_glob(out, "kept"), shard_glob(out, "dropped")
    parts = []
    for part, (glob, columns) in enumerate(((kept_glob, "NULL AS stage, NULL AS reason"),
                                            (dropped_glob, "stage, reason"))):
        if glob:
            parts.append(f"SELECT source_id, file, {columns}, {part} AS part, filename, file_row_number "
                         f"FROM read_parquet('{glob}', filename = true, file_row_number = true)")
    groups = con.execute(
        f"SELECT source_id, file, stage, reason, count(*) FROM ({' UNION ALL '.join(parts)}) "
        "GROUP BY ALL ORDER BY min((part, filename, file_row_number))").fetchall() if parts else []
    report = {"read": 0, "kept": 0, "dropped": {s: 0 for s in STAGES}, "reasons": {}, "per_source": {}}
    for source_id, _, stage, reason, n in groups:
        src = report["per_source"].setdefault(source_id, {"read": 0, "kept": 0, "dropped": {}})
        report["read"] += n
        src["read"] += n
        if stage is None:
            report["kept"] += n
            src["kept"] += n
        else:
            report["dropped"][stage] = report["dropped"].get(stage, 0) + n
            src["dropped"][stage] = src["dropped"].get(stage, 0) + n
            key = f"{stage}/{reason}"
            report["reasons"][key] = report["reasons"].get(key, 0) + n
    report["reasons"] = dict(sorted(report["reasons"].items()))
    if sources is not None:
        for source in sources:
            report["per_source"].setdefault(source.id, {"read": 0, "kept": 0, "dropped": {}})
        read_from = {(source_id, file) for source_id, file, *_ in groups}
        report["files_without_rows"] = [{"source": s.id, "file": f} for s in sources for f in s.files
                                        if (s.id, f) not in read_from]
    if timings:
        report["seconds"] = timings
        if timings and report["read"]:
            report["records_per_second"] = round(report["read"] / sum(timings.values()), 1)
    return report


def files_without_rows_lines(report: dict) -> list[str]:
    """One warning line per source file that gave no row."""
    lines = []
    for item in report.get("files_without_rows", []):
        size = f" ({os.path.getsize(item['file']):,} bytes)" if os.path.isfile(item["file"]) else ""
        lines.append(f"warning: source '{item['source']}': {item['file']}{size} gave no row: an empty or truncated file?")
    return lines


def format_report(report: dict) -> str:
    lines = [f"read {report['read']}  kept {report['kept']}  dropped {report['read'] - report['kept']}"]
    lines.append("dropped per stage: " + ", ".join(f"{k}={v}" for k, v in report["dropped"].items()))
    if report["reasons"]:
        lines.append("reasons: " + ", ".join(f"{k}={v}" for k, v in report["reasons"].items()))
    width = max([len(s) for s in report["per_source"]] + [6])
    lines.append(f"{'source':<{width}}  {'read':>6} {'kept':>6}  dropped")
    for sid, src in report["per_source"].items():
        dropped = ", ".join(f"{k}={v}" for k, v in sorted(src["dropped"].items())) or "-"
        lines.append(f"{sid:<{width}}  {src['read']:>6} {src['kept']:>6}  {dropped}")
    scoring = report.get("scoring") or {}
    shipped = scoring.get("shipped")
    if isinstance(shipped, dict):
        lines.append(f"scores: shipped scorer {shipped['model']} on {shipped['scored']} kept records "
                     f"(`--score shipped`; its model card: curate/scoring/models/{shipped['model'].replace('@', '-')}"
                     f"/README.md)")
    clf = scoring.get("classifier")
    if isinstance(clf, dict):
        lines.append(f"scores: classifier {clf['model_id']} on {scoring['scored']} kept records; held-out accuracy "
                     f"{clf['accuracy']:.2f} (majority {clf['majority_accuracy']:.2f}), macro-F1 {clf['macro_f1']:.2f}, "
                     f"Spearman {clf['spearman']:.2f} vs the labels")
    elif clf:
        lines.append(f"scores: classifier {clf}")
    if report.get("seconds"):
        lines.append("seconds per stage: " + ", ".join(f"{k}={v:.1f}" for k, v in report["seconds"].items()))
    return "\n".join(lines)


def write_report(out: Path, report: dict) -> Path:
    path = out / "report.json"
    path.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    return path
