"""Every source shape is read into the record model; malformed rows become dropped records."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.errors import JcurateError
from curate.reading.manifest import load_manifest
from curate.reading.readers import SourceReader, check_field_mappings, find_repeated_ids


def _read(tmp_path, path, fmt, fields, extra=""):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"sources:\n  - id: s\n    path: {path}\n    format: {fmt}\n    license: MIT\n"
                        f"    fields: {fields}\n{extra}", encoding="utf-8")
    sources = load_manifest(manifest)
    check_field_mappings(sources)
    return list(SourceReader(sources).run())


def test_jsonl_malformed_rows_are_kept_as_errors(tmp_path):
    path = tmp_path / "a.jsonl"
    good = json.dumps({"id": "a", "q": "日本の首都は？", "a": "東京です。"}, ensure_ascii=False).encode()
    path.write_bytes(b"\n".join([
        good,
        b'{"id": "b", "q": "x"',  # bad JSON
        json.dumps({"id": "c", "q": "x"}).encode(),  # missing field
        json.dumps({"id": "d", "q": "x", "a": ["list"]}).encode(),  # wrong type
        '{"id": "e", "q": "富士山", "a": "高い"}'.encode().replace("高".encode(), b"\xff\xfe"),  # bad UTF-8
        b"",
        json.dumps({"q": "x", "a": "y"}).encode(),  # missing id field
    ]) + b"\n")
    docs = _read(tmp_path, path, "jsonl", "{instruction: q, output: a}", "    id_field: id\n")
    # a row without a usable id of its own is named by its line, which no id of the source can be
    assert [d.id for d in docs] == ["s:a", "s:#line-2", "s:c", "s:d", "s:#line-5", "s:#line-7"]
    errors = [d.metadata.get("read_error") for d in docs]
    assert errors[0] is None
    assert "line 2: bad JSON" in errors[1]
    assert "missing field 'output' (column 'a')" in errors[2]
    assert "field 'output' (column 'a') must be a string, got list" in errors[3]
    assert "line 5: invalid UTF-8" in errors[4]
    assert "line 7: missing id field 'id'" in errors[5], "the blank line 6 counts"
    assert all(str(path) in e for e in errors[1:])
    assert docs[1].text.startswith('{"id": "b"'), "the raw row is kept, nothing is lost"


def test_parquet_csv_and_hf_disk(tmp_path):
    pq.write_table(pa.table({"p": ["質問です。"], "r": ["答えです。"]}), tmp_path / "a.parquet")
    (d,) = _read(tmp_path, tmp_path / "a.parquet", "parquet", "{instruction: p, output: r}")
    assert (d.id, d.metadata["instruction"], d.metadata["output"]) == ("s:0", "質問です。", "答えです。")

    (tmp_path / "a.csv").write_text("q,a\n\"改行を\n含む質問\",答えです。\n", encoding="utf-8")
    (d,) = _read(tmp_path, tmp_path / "a.csv", "csv", "{instruction: q, output: a}")
    assert d.metadata["instruction"] == "改行を\n含む質問"

    from datasets import Dataset

    Dataset.from_list([{"i": "質問", "o": "答え"}]).save_to_disk(str(tmp_path / "ds"))
    (d,) = _read(tmp_path, tmp_path / "ds", "hf-disk", "{instruction: i, output: o}")
    assert d.text == "質問\n\n答え"


def test_sharegpt_and_openai_messages(tmp_path):
    path = tmp_path / "c.jsonl"
    rows = [
        {"conversations": [{"from": "human", "value": "こんにちは"}, {"from": "gpt", "value": "こんにちは！"}]},
        {"conversations": [{"role": "system", "content": "丁寧に"}, {"role": "user", "content": "質問"},
                           {"role": "assistant", "content": "回答"}]},
        {"conversations": [{"role": "robot", "content": "?"}]},
        {"conversations": [{"role": "user", "content": "質問だけ"}]},
    ]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    docs = _read(tmp_path, path, "jsonl", "{messages: conversations}")
    assert docs[0].metadata["messages"] == [{"role": "user", "content": "こんにちは"},
                                            {"role": "assistant", "content": "こんにちは!"}]
    assert docs[1].metadata["instruction"] == "質問" and docs[1].metadata["output"] == "回答"
    assert "unknown role 'robot'" in docs[2].metadata["read_error"]
    assert "at least one user and one assistant" in docs[3].metadata["read_error"]


def test_a_column_missing_from_the_file_stops_before_reading(tmp_path):
    pq.write_table(pa.table({"p": ["x"], "r": ["y"]}), tmp_path / "a.parquet")
    with pytest.raises(JcurateError, match="field mapping output -> 'response' names a column"):
        _read(tmp_path, tmp_path / "a.parquet", "parquet", "{instruction: p, output: response}")


def _manifest(tmp_path, *entries: str):
    path = tmp_path / "m.yaml"
    path.write_text("sources:\n" + "".join(
        f"  - id: {sid}\n    path: {name}\n    format: {fmt}\n    license: MIT\n    fields: {{instruction: q, output: a}}\n"
        "    id_field: id\n" for sid, name, fmt in entries), encoding="utf-8")
    return load_manifest(path)


def test_repeated_ids_are_found_in_every_format_and_only_within_a_source(tmp_path):
    rows = [{"id": i, "q": f"質問{i}", "a": "答え"} for i in (1, 2, 1, 3, 2, 1)]
    # a byte-order mark and a blank line (the fast JSONL pass must count as iter_jsonl does), bad JSON
    (tmp_path / "a.jsonl").write_bytes(b"\xef\xbb\xbf" + b"\n".join(
        json.dumps(r).encode() for r in rows[:3]) + b"\n\n{bad\n" + b"\n".join(json.dumps(r).encode() for r in rows[3:]))
    (tmp_path / "a.csv").write_text("id,q,a\n" + "".join(f"{r['id']},\"{r['q']}\n二行目\",{r['a']}\n" for r in rows),
                                    encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    sources = _manifest(tmp_path, ("j", "a.jsonl", "jsonl"), ("c", "a.csv", "csv"), ("p", "a.parquet", "parquet"),
                        ("u", "a.jsonl", "jsonl"))
    found = find_repeated_ids(sources)
    jsonl = str(tmp_path / "a.jsonl")
    assert found["j"] == {jsonl: {2: "line 3: duplicate id 1: the first, line 1, keeps it",
                                  5: "line 7: duplicate id 2: the first, line 2, keeps it",
                                  6: "line 8: duplicate id 1: the first, line 1, keeps it"}}
    assert found["u"] == found["j"], "another source reading the same file has ids of its own"
    assert found["c"][str(tmp_path / "a.csv")][2] == "lines 6-7: duplicate id '1': the first, lines 2-3, keeps it"
    assert found["p"][str(tmp_path / "a.parquet")][5] == "row 6: duplicate id 1: the first, row 1, keeps it"
    docs = list(SourceReader(sources[:1], found).run())
    assert [d.id for d in docs] == ["j:1", "j:2", "j:#line-3", "j:#line-5", "j:3", "j:#line-7", "j:#line-8"]
    assert [d.metadata.get("read_reason") for d in docs][2:4] == ["duplicate_id", None]
    assert docs[2].metadata["instruction"] == "質問1", "a row with a repeated id keeps its fields"
