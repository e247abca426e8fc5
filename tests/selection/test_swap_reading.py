"""What a selector swaps, read blind: the records one subset has and another lacks, labelled 1-5 and unblinded
into a mean label per side (benchmarks/selection/swap_reading.py), on a real store file."""

from __future__ import annotations

import argparse
import json

import pytest

from benchmarks.selection import swap_reading
from store.connection import connect


def _store(tmp_path):
    db = tmp_path / "store.duckdb"
    con = connect(db)
    try:
        for i in range(8):
            con.execute("INSERT INTO records (record_id, source_id, instruction, output) VALUES (?, ?, ?, ?)",
                        [f"src:{i}", "src" if i % 2 else "other", f"質問{i}を説明してください。", f"回答{i}です。"])
        members = {"sel-top": [0, 1, 2, 3, 4], "sel-longest": [2, 3, 4, 5, 6, 7]}
        for subset, ids in members.items():
            for rank, i in enumerate(ids):
                con.execute("INSERT INTO subset_members VALUES (?, ?, ?, ?)", [subset, f"src:{i}", rank, 1.0])
    finally:
        con.close()
    return db


def test_only_the_swapped_records_are_shown_blind_and_labels_unblind_per_side(tmp_path):
    args = argparse.Namespace(db=_store(tmp_path), a="sel-top", b="sel-longest", out=tmp_path / "swap", n=200, shares=2, seed=0)
    swap_reading.make(args)
    shares = "".join((args.out / f"share-{s}.md").read_text(encoding="utf-8") for s in range(2))
    assert "sel-top" not in shares and "sel-longest" not in shares, "no subset's name reaches the readers"
    assert "| 5 | Correct, complete" in shares, "the labelling scale is shown"
    shown = {f"回答{i}です" for i in range(8) if f"回答{i}です" in shares}
    assert shown == {f"回答{i}です" for i in (0, 1, 5, 6, 7)}, "only records in one subset and not the other"
    key = json.loads((tmp_path / "swap_key.json").read_text(encoding="utf-8"))
    assert key["only_A"] == 2 and key["only_B"] == 3 and not (args.out / "key.json").exists()

    for s in range(2):  # readers give A's records 4 and B's records 2
        rows = [f"{iid}\t{4 if k['side'] == 'A' else 2}\tread it" for iid, k in key["items"].items()
                if iid.startswith(f"{s}-")]
        (args.out / f"verdicts-{s}.tsv").write_text("\n".join(rows), encoding="utf-8")
    swap_reading.score(args)
    table = (args.out / "results.md").read_text(encoding="utf-8")
    assert "| only in A | 2 | 4.00 | 0.00 |" in table and "| only in B | 3 | 2.00 | 1.00 |" in table
    assert "Mean label A − B: +2.00 [+2.00, +2.00]" in table


def test_a_label_out_of_scale_names_its_file_and_line(tmp_path):
    args = argparse.Namespace(db=_store(tmp_path), a="sel-top", b="sel-longest", out=tmp_path / "swap", n=1, shares=1, seed=0)
    swap_reading.make(args)
    (args.out / "verdicts-0.tsv").write_text("0-000\t4\tfine\n0-001\t6\ttoo good\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"verdicts-0.tsv line 2: expected 'pair id<TAB>1\|2\|3\|4\|5"):
        swap_reading.score(args)


def test_an_unknown_subset_is_named(tmp_path):
    args = argparse.Namespace(db=_store(tmp_path), a="sel-top", b="nope", out=tmp_path / "swap", n=5, shares=1, seed=0)
    with pytest.raises(SystemExit, match="subset 'nope' is empty or not in the store"):
        swap_reading.make(args)
