"""Every planted case of the embedded default is caught by the stage we expect, with its reason."""

from __future__ import annotations

import json

import duckdb
import pytest

from benchmarks.quality.planted_eval import evaluate
from tests.conftest import ROOT

PLANTED = [json.loads(line) for line in (ROOT / "data/planted.jsonl").read_text(encoding="utf-8").splitlines()]


def _fates(out):
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT record_id, stage, reason, value FROM read_parquet(['{out}/kept/*.parquet', '{out}/dropped/*/*.parquet'])"
    ).fetchall()
    return {r[0]: r[1:] for r in rows}


@pytest.mark.parametrize("case", PLANTED, ids=[p["record_id"] for p in PLANTED])
def test_planted_case(default_run, case):
    out, _ = default_run
    fates = _fates(out)
    assert case["record_id"] in fates, f"{case['record_id']} was lost: neither kept nor dropped"
    stage, reason, value = fates[case["record_id"]]
    assert (stage, reason) == (case["expect_stage"], case["expect_reason"]), case["case"]
    if stage is not None:
        assert value, "a dropped record carries the value that decided it"


def test_every_stage_is_precise_on_the_default(default_run):
    """No stage drops a record that was not planted (or found and listed) for it."""
    table = evaluate(default_run[0], ROOT / "data/planted.jsonl")
    for stage, row in table.items():
        if stage == "must_pass":
            assert row["kept"] == row["planted"], row["not_kept"]
        else:
            assert row["unexpected"] == [], f"{stage} dropped unplanted records {row['unexpected']}"
            assert row["missed"] == [], f"{stage} missed {row['missed']}"


def test_chinese_never_passes_and_japanese_code_does(default_run):
    fates = _fates(default_run[0])
    chinese = [rid for rid in fates if ":zh-" in rid]
    assert len(chinese) == 20
    assert all(fates[rid][0] == "language" for rid in chinese)
    code_ja = [rid for rid in fates if ":codeja-" in rid]
    assert len(code_ja) == 12 and all(fates[rid][0] is None for rid in code_ja)


def test_malformed_rows_name_file_row_and_field(default_run):
    fates = _fates(default_run[0])
    assert "alpaca_ja.jsonl" in fates["jcurate-alpaca:bad-missing"][2]
    assert "missing field 'output'" in fates["jcurate-alpaca:bad-missing"][2]
    assert "must be a string, got int" in fates["jcurate-alpaca:bad-type"][2]
    # a Parquet file has no lines: its 62nd record, the row data/build_sources.py writes as row 61 (0-based)
    assert fates["jcurate-labelled:null-output"][2] == (
        "data/sources/labelled_ja.parquet: row 62: missing field 'output' (column 'response')")
    utf8 = [v for v in fates.values() if v[2] and "invalid UTF-8" in v[2]]
    assert len(utf8) == 1 and "line" in utf8[0][2]


def test_report_adds_up(default_run):
    out, _ = default_run
    report = json.loads((out / "report.json").read_text())
    assert report["read"] == report["kept"] + sum(report["dropped"].values())
    assert report["read"] >= 1000
    for sid, src in report["per_source"].items():
        assert src["read"] == src["kept"] + sum(src["dropped"].values()), sid
    assert sum(s["read"] for s in report["per_source"].values()) == report["read"]
    assert set(report["dropped"]) >= {"read", "quality", "language", "exact_dedup", "near_dedup", "decontamination"}


def test_kept_records_follow_the_record_model(default_run):
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT record_id, source_id, text, content_hash, messages FROM read_parquet('{default_run[0]}/kept/*.parquet')"
    ).fetchall()
    assert len({r[0] for r in rows}) == len(rows)
    assert len({r[3] for r in rows}) == len(rows), "exact dedup leaves one record per content hash"
    assert all(r[0].startswith(r[1] + ":") for r in rows)
    chats = [json.loads(r[4]) for r in rows if r[1] == "jcurate-chat"]
    assert len(chats) == 70 and all(t["role"] in ("system", "user", "assistant") for c in chats for t in c)
