"""The fit test read by people (benchmarks/quality/fit_reading.py): pairs that hide which answer is the
record's own, and verdicts scored against the key and beside the scorer on the same pairs."""

from __future__ import annotations

import argparse
import json

import pytest

from benchmarks.quality import fit_reading


def _args(tmp_path, **kw):
    # labelled records committed in data/labels: no local build of the datasets needed
    base = dict(out=tmp_path / "fit", datasets=["real-persona-chat", "instruction-ja-mt"], n=6, shares=2, seed=0,
                model="jquality-v3", realdata=tmp_path / "no-realdata")
    return argparse.Namespace(**{**base, **kw})


def test_pairs_hide_the_original_and_verdicts_score_against_the_key(tmp_path):
    args = _args(tmp_path)
    fit_reading.make(args)
    key = json.loads((args.out / "key.json").read_text(encoding="utf-8"))["pairs"]
    assert len(key) == 12
    assert {k["dataset"] for k in key.values()} == {"real-persona-chat", "instruction-ja-mt"}
    assert {k["original_first"] for k in key.values()} == {True, False}, "the original is shown first and second"
    shares = "".join((args.out / f"share-{s}.md").read_text(encoding="utf-8") for s in range(2))
    assert "original" not in shares.lower() and shares.count("## pair ") == 12

    # a reader right on every pair of one dataset, unsure on every pair of the other
    for s in range(2):
        rows = []
        for pid, k in key.items():
            if pid.startswith(f"{s}-"):
                verdict = ("1" if k["original_first"] else "2") if k["dataset"] == "instruction-ja-mt" else "unsure"
                rows.append(f"{pid}\t{verdict}\tread it")
        (args.out / f"verdicts-{s}.tsv").write_text("\n".join(rows), encoding="utf-8")
    fit_reading.score(args)
    table = (args.out / "results.md").read_text(encoding="utf-8")
    scorer_mt = sum(k["scorer_right"] for k in key.values() if k["dataset"] == "instruction-ja-mt") / 6
    assert f"| instruction-ja-mt | 6 | 1.00 [1.00, 1.00] | 0 | {scorer_mt:.2f}" in table
    assert "| real-persona-chat | 6 | 0.50 [0.50, 0.50] | 6 |" in table


def test_a_bad_verdict_line_names_its_file_and_line(tmp_path):
    args = _args(tmp_path, datasets=["instruction-ja-mt"], n=2, shares=1)
    fit_reading.make(args)
    (args.out / "verdicts-0.tsv").write_text("0-000\t1\tfine\n0-001\tA\twhy\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"verdicts-0.tsv line 2"):
        fit_reading.score(args)
