"""Inputs that used to crash a run or lose rows: everything dropped, a byte-order mark, Shift_JIS,
compressed files, YAML bombs, corrupt Parquet."""

from __future__ import annotations

import json

import duckdb
import pytest

from jcurate.cli import main as jcurate

ROWS = [("日本の首都はどこですか？", "日本の首都は東京です。"), ("富士山の高さは？", "富士山の高さは3776メートルです。")]


def manifest(tmp_path, name: str, fmt: str, extra: str = "") -> str:
    path = tmp_path / "sources.yaml"
    path.write_text(f"sources:\n  - id: s\n    path: {name}\n    format: {fmt}\n    license: CC-BY-4.0\n"
                    f"    fields: {{instruction: instruction, output: output}}\n{extra}", encoding="utf-8")
    return str(path)


def run(tmp_path, sources: str) -> tuple[dict, list[tuple]]:
    out, db = tmp_path / "out", tmp_path / "store.duckdb"
    assert jcurate(["run", "--sources", sources, "--out", str(out), "--db", str(db)]) == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    con = duckdb.connect(str(db), read_only=True)
    fates = con.execute("SELECT record_id, kept, dropped_at, value FROM record_fate ORDER BY record_id").fetchall()
    con.close()
    return report, fates


def test_a_run_where_every_record_is_dropped_completes_with_its_report_and_store_rows(tmp_path):
    (tmp_path / "en.jsonl").write_text(
        json.dumps({"instruction": "hello", "output": "This is English only."}) + "\n"
        + json.dumps({"instruction": "你好", "output": "这是中文。"}, ensure_ascii=False) + "\n", encoding="utf-8")
    report, fates = run(tmp_path, manifest(tmp_path, "en.jsonl", "jsonl"))
    assert report["read"] == 2 and report["kept"] == 0 and report["dropped"]["language"] == 2
    assert [f[2] for f in fates] == ["language", "language"]


def test_a_byte_order_mark_does_not_cost_the_first_row(tmp_path):
    lines = "".join(json.dumps({"instruction": i, "output": o}, ensure_ascii=False) + "\n" for i, o in ROWS)
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + lines.encode("utf-8"))
    report, _ = run(tmp_path, manifest(tmp_path, "bom.jsonl", "jsonl"))
    assert report["kept"] == 2 and report["dropped"]["read"] == 0


@pytest.fixture
def shift_jis_csv(tmp_path):
    body = "instruction,output\n" + "".join(f"{i},{o}\n" for i, o in ROWS)
    (tmp_path / "sj.csv").write_bytes(body.encode("cp932"))
    return tmp_path


def test_a_shift_jis_csv_is_dropped_with_a_hint_naming_the_encoding(shift_jis_csv):
    report, fates = run(shift_jis_csv, manifest(shift_jis_csv, "sj.csv", "csv"))
    assert report["dropped"]["read"] == 2
    assert "set `encoding: cp932` on the source" in fates[0][3]


def test_the_encoding_key_reads_it(shift_jis_csv):
    report, _ = run(shift_jis_csv, manifest(shift_jis_csv, "sj.csv", "csv", "    encoding: cp932\n"))
    assert report["kept"] == 2


def test_an_unknown_encoding_stops_before_work_naming_the_key(shift_jis_csv, capsys):
    sources = manifest(shift_jis_csv, "sj.csv", "csv", "    encoding: klingon\n")
    assert jcurate(["run", "--sources", sources, "--out", str(shift_jis_csv / "o"),
                    "--db", str(shift_jis_csv / "d.duckdb")]) == 2
    assert "key 'encoding': unknown encoding 'klingon'" in capsys.readouterr().err


def test_yaml_aliases_are_refused_in_one_line(tmp_path, capsys):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b]\n"
    (tmp_path / "config.yaml").write_text(bomb, encoding="utf-8")
    assert jcurate(["run", "--config", str(tmp_path / "config.yaml"), "--out", str(tmp_path / "o"),
                    "--db", str(tmp_path / "d.duckdb")]) == 2
    err = capsys.readouterr().err.strip()
    assert "aliases are not allowed (line 2)" in err and len(err.splitlines()) == 1


def test_a_folder_source_takes_only_its_format_s_files(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    line = json.dumps({"instruction": ROWS[0][0], "output": ROWS[0][1]}, ensure_ascii=False) + "\n"
    (folder / "a.jsonl").write_text(line, encoding="utf-8")
    (folder / "a.jsonl.bak").write_text(line, encoding="utf-8")
    (folder / "b.json").write_text("[]", encoding="utf-8")
    from curate.reading.manifest import load_manifest

    (source,) = load_manifest(manifest(tmp_path, "src", "jsonl"))
    assert [f.split("/")[-1] for f in source.files] == ["a.jsonl"]


def _compressed_rows(n: int) -> bytes:
    return "".join(json.dumps({"instruction": f"質問{i}: {ROWS[i % 2][0]}", "output": f"{ROWS[i % 2][1]}{i}番目の答えです。"},
                              ensure_ascii=False) + "\n" for i in range(n)).encode()


def test_compressed_sources_are_read_decompressed_and_a_truncated_one_says_where_it_breaks(tmp_path):
    import bz2
    import gzip

    import zstandard

    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "a.jsonl.gz").write_bytes(gzip.compress(_compressed_rows(30)))
    (folder / "b.jsonl.bz2").write_bytes(bz2.compress(_compressed_rows(30)))
    (folder / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(_compressed_rows(30)))
    whole = gzip.compress(_compressed_rows(400))
    (folder / "d.jsonl.gz").write_bytes(whole[: len(whole) // 2])  # a download that stopped half way
    (folder / "e.jsonl.gz.part").write_bytes(whole)  # not the format's extension: not read
    report, fates = run(tmp_path, manifest(tmp_path, "src", "jsonl"))
    from collections import Counter

    by_file = Counter(rid.split(":")[1].split("#")[0] for rid, *_ in fates)
    assert set(by_file) == {"a.jsonl.gz", "b.jsonl.bz2", "c.jsonl.zst", "d.jsonl.gz"}
    assert by_file["a.jsonl.gz"] == by_file["b.jsonl.bz2"] == by_file["c.jsonl.zst"] == 30
    broken = [(rid, value) for rid, kept, dropped_at, value in fates if dropped_at == "read"]
    assert len(broken) == 1 and broken[0][0].startswith("s:d.jsonl.gz#")
    assert "the compressed file breaks off here" in broken[0][1] and len(broken[0][1]) <= 300
    assert 30 < by_file["d.jsonl.gz"] < 400, "the rows before the break are read"
    assert report["read"] == len(fates)


def _parquet(path, n: int = 200, group: int = 100):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"instruction": f"質問{i}: 日本の首都について教えてください。", "output": f"東京です。{i}番目の答えです。"}
            for i in range(n)]
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=group, compression="snappy")


def test_a_corrupt_row_group_drops_its_rows_with_the_reason_and_the_rest_is_read(tmp_path):
    import pyarrow.parquet as pq

    path = tmp_path / "data.parquet"
    _parquet(path)
    start = pq.ParquetFile(path).metadata.row_group(0).column(1).data_page_offset
    data = bytearray(path.read_bytes())
    for k in range(start + 20, start + 60):  # garble a page header of the first row group
        data[k] ^= 0xFF
    path.write_bytes(bytes(data))
    report, fates = run(tmp_path, manifest(tmp_path, "data.parquet", "parquet"))
    assert report["read"] == 200 and report["dropped"]["read"] == 100
    dropped = [f for f in fates if f[2] == "read"]
    assert len(dropped) == 100 and "row group 0 (100 rows) is unreadable" in dropped[0][3]


@pytest.mark.parametrize("content", [b"", b"PAR1 this is not parquet", b"garbage" * 100])
def test_an_unreadable_parquet_file_stops_before_work_in_one_line(tmp_path, capsys, content):
    (tmp_path / "bad.parquet").write_bytes(content)
    assert jcurate(["run", "--sources", manifest(tmp_path, "bad.parquet", "parquet"), "--out", str(tmp_path / "o"),
                    "--db", str(tmp_path / "d.duckdb")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("jcurate: error: source 's':") and "is not a readable Parquet file" in error
    assert len(error) < 400 and not (tmp_path / "o" / "work").exists(), "stopped before any work"


def _hub_cache(tmp_path, card: str) -> tuple:
    """A dataset placed in a Hugging Face cache by its documented layout:
    datasets--OWNER--NAME/{refs/main, snapshots/SHA/...}."""
    cache = tmp_path / "hf-cache"
    sha = "5e2f" * 10
    repo = cache / "datasets--someone--ja-instructions"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs/main").write_text(sha, encoding="utf-8")
    snap = repo / "snapshots" / sha
    (snap / "data").mkdir(parents=True)
    (snap / "README.md").write_text(card, encoding="utf-8")
    for split, n in (("train", 3), ("test", 2)):
        (snap / f"data/{split}-00000-of-00001.jsonl").write_text("".join(
            json.dumps({"instruction": f"{ROWS[i % 2][0]}（{split}{i}）", "output": ROWS[i % 2][1]}, ensure_ascii=False)
            + "\n" for i in range(n)), encoding="utf-8")
    return cache, sha


def _hub_manifest(tmp_path, extra: str = "") -> str:
    path = tmp_path / "hub-sources.yaml"
    path.write_text("sources:\n  - id: hubds\n    hub: someone/ja-instructions\n    split: train\n    format: jsonl\n"
                    f"    fields: {{instruction: instruction, output: output}}\n{extra}", encoding="utf-8")
    return str(path)


def test_a_hub_dataset_source_records_its_revision_and_takes_the_card_license(tmp_path, monkeypatch):
    import huggingface_hub.constants

    cache, sha = _hub_cache(tmp_path, "---\nlicense: cc-by-sa-4.0\nlanguage: [ja]\n---\n# ja instructions\n")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    report, fates = run(tmp_path, _hub_manifest(tmp_path))
    assert report["read"] == 3, "the train split only"
    assert report["hub_sources"]["hubds"] == {"hub": "someone/ja-instructions", "revision": sha,
                                              "license": "CC-BY-SA-4.0", "license_from": "dataset card"}
    con = duckdb.connect(str(tmp_path / "store.duckdb"), read_only=True)
    row = con.execute("SELECT hub_id, hub_revision, license_id, path FROM sources").fetchone()
    con.close()
    assert row == ("someone/ja-instructions", sha, "CC-BY-SA-4.0", f"hf://datasets/someone/ja-instructions@{sha}")


def test_a_hub_dataset_whose_card_disagrees_or_is_missing_stops_before_work(tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants

    cache, _ = _hub_cache(tmp_path, "---\nlicense: cc-by-nc-4.0\n---\n")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out, db = tmp_path / "out", tmp_path / "store.duckdb"
    assert jcurate(["run", "--sources", _hub_manifest(tmp_path, "    license: CC-BY-4.0\n"), "--out", str(out),
                    "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert "the manifest says license 'CC-BY-4.0', the dataset card of someone/ja-instructions says 'cc-by-nc-4.0'" in err
    assert not db.exists()
    path = tmp_path / "missing.yaml"
    path.write_text("sources:\n  - id: x\n    hub: nobody/nothing\n    format: jsonl\n    license: MIT\n"
                    "    fields: {instruction: instruction, output: output}\n", encoding="utf-8")
    assert jcurate(["run", "--sources", str(path), "--out", str(out), "--db", str(db)]) == 2
    assert "is not in the Hugging Face cache and HF_HUB_OFFLINE is set" in capsys.readouterr().err


def test_a_subset_of_a_hub_source_names_its_id_and_revision_in_the_card(tmp_path, monkeypatch):
    import huggingface_hub.constants
    from huggingface_hub import DatasetCard

    cache, sha = _hub_cache(tmp_path, "---\nlicense: apache-2.0\n---\n")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run(tmp_path, _hub_manifest(tmp_path))
    out = tmp_path / "export"
    assert jcurate(["subset", "--db", str(tmp_path / "store.duckdb"), "--name", "hubset", "--out", str(out)]) == 0
    card = DatasetCard.load(out / "README.md")
    assert card.data.source_datasets == ["someone/ja-instructions"] and card.data.license == "apache-2.0"
    assert f"hub dataset `someone/ja-instructions` at revision `{sha}`" in card.text


def test_a_hub_dataset_whose_manifest_writes_the_card_s_license_in_the_hub_s_spelling_agrees(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from curate.reading.manifest import load_manifest

    cache, _ = _hub_cache(tmp_path, "---\nlicense: cc-by-nc-4.0\n---\n")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (source,) = load_manifest(_hub_manifest(tmp_path, "    license: cc-by-nc-4.0\n"))
    assert source.license == "CC-BY-NC-4.0" and not source.license_from_card
