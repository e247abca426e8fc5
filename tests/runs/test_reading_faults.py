"""Record ids a bad row cannot clash with, repeated ids, sources that give no row, and messages that say
where a bad row is: real runs of the CLI on tiny inputs, read back from the store and the report."""

from __future__ import annotations

import json

import duckdb

from jcurate.cli import main as jcurate

QUESTIONS = ["日本の首都はどこですか?", "富士山の高さはどれくらいですか?", "桜が咲くのは何月頃ですか?",
             "味噌汁の作り方を教えてください。", "俳句の音の数はいくつですか?", "新幹線が開業したのは何年ですか?"]
ANSWERS = ["日本の首都は東京です。", "富士山の高さは3776メートルです。", "多くの地域で3月下旬から4月上旬に咲きます。",
           "だしを温め、具材を煮てから味噌を溶き入れます。", "俳句は五・七・五の十七音からなります。",
           "東海道新幹線は1964年に開業しました。"]


def row(rid, i: int) -> str:
    return json.dumps({"id": rid, "instruction": QUESTIONS[i], "output": ANSWERS[i]}, ensure_ascii=False) + "\n"


def source(sid: str, path: str, fmt: str = "jsonl", id_field: str | None = "id") -> str:
    return (f"  - id: {sid}\n    path: {path}\n    format: {fmt}\n    license: CC-BY-4.0\n"
            "    fields: {instruction: instruction, output: output}\n" + (f"    id_field: {id_field}\n" if id_field else ""))


def run(tmp_path, capsys, *sources: str, workers: int = 1) -> tuple[dict, dict, str, str]:
    """(report, {record_id: (dropped_at, reason, value, instruction)}, stderr, stdout) of a run that must
    succeed."""
    manifest = tmp_path / "sources.yaml"
    manifest.write_text("sources:\n" + "".join(sources), encoding="utf-8")
    out, db = tmp_path / "out", tmp_path / "store.duckdb"
    assert jcurate(["run", "--sources", str(manifest), "--out", str(out), "--db", str(db),
                    "--workers", str(workers)]) == 0
    printed = capsys.readouterr()
    con = duckdb.connect(str(db), read_only=True)
    fates = con.execute("SELECT record_id, f.dropped_at, f.reason, f.value, r.instruction "
                        "FROM record_fate f JOIN records r USING (record_id)").fetchall()
    con.close()
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return report, {f[0]: f[1:] for f in fates}, printed.err, printed.out


def test_a_malformed_row_never_takes_the_id_of_a_real_record(tmp_path, capsys):
    """The reviewer's ids2.jsonl: a broken line 3 used to get ``s:2`` from its row number, the id of a real
    record further down, and the whole run failed at its end."""
    (tmp_path / "ids.jsonl").write_text(row(0, 0) + row(1, 1) + '{"id": 9, "instruction": "壊れ\n' + row(3, 2)
                                        + row(2, 3) + row(7, 4), encoding="utf-8")
    report, fates, *_ = run(tmp_path, capsys, source("s", "ids.jsonl"))
    assert report["kept"] == 5 and report["dropped"]["read"] == 1
    assert fates["s:2"][0] is None and fates["s:2"][3] == QUESTIONS[3], "the real record 2 keeps its id"
    assert fates["s:#line-3"][:2] == ("read", "malformed_row")
    assert "ids.jsonl: line 3: bad JSON" in fates["s:#line-3"][2]


def test_a_repeated_id_drops_the_later_row_naming_the_first_and_the_run_goes_on(tmp_path, capsys):
    # two workers split the file's rows between them: the first row keeps the id all the same
    (tmp_path / "a.jsonl").write_text(row(0, 0) + row(7, 1) + "\n" + row(7, 2) + row(1, 3), encoding="utf-8")
    report, fates, err, _ = run(tmp_path, capsys, source("s", "a.jsonl"), workers=2)
    assert report["kept"] == 3 and report["reasons"] == {"read/duplicate_id": 1}
    assert fates["s:7"] == (None, None, None, QUESTIONS[1]), "the first row with the id keeps it"
    dropped_at, reason, value, instruction = fates["s:#line-4"]
    assert (dropped_at, reason, instruction) == ("read", "duplicate_id", QUESTIONS[2]), "its fields are kept"
    assert value.endswith("a.jsonl: line 4: duplicate id 7: the first, line 2, keeps it")
    said = [line for line in err.splitlines() if "duplicate_id" in line]
    assert len(said) == 1 and said[0].startswith("source 's': 1 row(s) repeat an earlier row's id")
    assert err.index("duplicate_id") < err.index("[1/"), "said before any stage runs"


def test_an_id_repeated_in_another_file_of_the_source_names_that_file(tmp_path, capsys):
    folder = tmp_path / "parts"
    folder.mkdir()
    (folder / "a.jsonl").write_text(row("x", 0) + row("y", 1), encoding="utf-8")
    (folder / "b.jsonl").write_text(row("y", 2) + "not json\n", encoding="utf-8")
    _, fates, *_ = run(tmp_path, capsys, source("s", "parts"))
    assert fates["s:y"][3] == QUESTIONS[1]
    assert fates["s:#line-1@b.jsonl"][1:3] == ("duplicate_id", f"{folder}/b.jsonl: line 1: duplicate id 'y': "
                                                               "the first, a.jsonl line 2, keeps it")
    assert fates["s:#line-2@b.jsonl"][1] == "malformed_row"


def test_an_own_id_in_the_form_jcurate_gives_gets_one_hash_more(tmp_path, capsys):
    (tmp_path / "a.jsonl").write_text(row("#line-2", 0) + "[]\n" + row("#7", 2), encoding="utf-8")
    _, fates, *_ = run(tmp_path, capsys, source("s", "a.jsonl"))
    assert fates["s:##line-2"][0] is None and fates["s:#line-2"][1] == "malformed_row"
    assert fates["s:#7"][0] is None, "other ids that start with '#' stay as they are"


def test_a_source_file_that_gives_no_row_is_reported(tmp_path, capsys):
    (tmp_path / "a.jsonl").write_text(row(0, 0), encoding="utf-8")
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "header.csv").write_text("instruction,output\n", encoding="utf-8")
    report, _, err, table = run(tmp_path, capsys, source("a", "a.jsonl"), source("empty", "empty.jsonl", id_field=None),
                         source("header", "header.csv", fmt="csv", id_field=None))
    warned = [line for line in err.splitlines() if line.startswith("warning: source")]
    assert warned == [f"warning: source 'empty': {tmp_path}/empty.jsonl (0 bytes) gave no row: an empty or truncated "
                      "file?", f"warning: source 'header': {tmp_path}/header.csv (19 bytes) gave no row: an empty or "
                      "truncated file?"]
    assert report["per_source"]["empty"] == report["per_source"]["header"] == {"read": 0, "kept": 0, "dropped": {}}
    assert report["files_without_rows"] == [{"source": "empty", "file": f"{tmp_path}/empty.jsonl"},
                                            {"source": "header", "file": f"{tmp_path}/header.csv"}]
    assert "\nempty        0      0  -\n" in table and "\nheader       0      0  -\n" in table


def test_bad_rows_are_located_by_file_line_or_by_record_number(tmp_path, capsys):
    """JSONL and CSV: the file's line, 1-based, blank lines counted (a CSV row across lines: its first and
    last line); Parquet and JSON arrays, which have no lines: ``row N``, the N-th record, 1-based."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.jsonl").write_text(row("a", 0) + "\n\n" + json.dumps({"id": "b", "instruction": "x"}) + "\n",
                                      encoding="utf-8")
    (tmp_path / "c.csv").write_text(
        "id,instruction,output\n"
        f"c1,{QUESTIONS[1]},\"{ANSWERS[1]}\n二行目です。\"\n"
        f"c2,\"{QUESTIONS[2]}\n"  # a quote that is never closed: the lines after it become one row
        f"c3,{QUESTIONS[3]},{ANSWERS[3]}\n", encoding="utf-8")
    (tmp_path / "d.json").write_text(json.dumps([json.loads(row("d1", 4)), "not an object"]), encoding="utf-8")
    pq.write_table(pa.Table.from_pylist([json.loads(row("p1", 5)), {"id": "p2", "instruction": "x", "output": None}]),
                   tmp_path / "p.parquet")
    _, fates, *_ = run(tmp_path, capsys, source("j", "a.jsonl"), source("c", "c.csv", fmt="csv"),
                      source("d", "d.json", fmt="json"), source("p", "p.parquet", fmt="parquet"))
    assert fates["j:b"][2].endswith("a.jsonl: line 4: missing field 'output' (column 'output')")
    assert fates["c:c1"][0] is None, "a quoted field with a line break is one row"
    assert fates["c:c2"][2].endswith("c.csv: lines 4-5: missing field 'output' (column 'output') (if lines 4-5 "
                                     "should be several rows, a quote in them is never closed: look from line 4 on)")
    assert fates["d:#row-2"][2].endswith("d.json: row 2: expected an object")
    assert fates["p:p2"][2].endswith("p.parquet: row 2: missing field 'output' (column 'output')")
