"""Which records a subset selects, and in which order, pinned on a fixed small store; and what
``jcurate subset`` says when it cannot give what was asked (a short pool, an exclusion that matches
nothing, an export that fails, a bad flag, a missing store).

The store is built row by row (no pipeline run), so the pins below change only when the selection
code does: a benchmark trains on these selections, and they must not move under it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest

from licenses.catalogue import load_catalogue, sync_licenses
from store.connection import connect, transaction
from store.rows import insert_row, insert_rows
from tests.conftest import run_cli

# source id -> (license, generating model, its license, number of records)
SOURCES = {"alpha": ("CC-BY-4.0", None, None, 14), "beta": ("Apache-2.0", "gpt-3.5-turbo", "OpenAI-ToU", 9),
           "gamma": ("CC-BY-NC-4.0", None, None, 7), "delta": ("CC-BY-SA-4.0", "google/gemma-3-270m", "Gemma", 5)}


def build_store(db) -> None:
    """One run over four sources, 35 records: every 5th dropped; ``label`` scores 1-5 with ties, every
    7th record unscored; ``classifier`` scores with an older, overwritten score for some records."""
    con = connect(db)
    try:
        with transaction(con):
            sync_licenses(con, load_catalogue())
            insert_row(con, "runs", dict(run_id="r1", started_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
                                         finished_at=datetime(2026, 1, 1, 1, tzinfo=timezone.utc), n_read=35))
            insert_rows(con, "sources", [dict(run_id="r1", source_id=sid, name=sid, url=f"https://example.org/{sid}",
                                              license_id=lic, generated_by_model=model, generated_by_license=mlic)
                                         for sid, (lic, model, mlic, _) in SOURCES.items()])
            records, outcomes, scores = [], [], []
            i = 0
            for sid, (*_, n) in SOURCES.items():
                for row in range(n):
                    rid = f"{sid}:{row}"
                    records.append(dict(record_id=rid, source_id=sid, row=row, instruction=f"問{i}", output=f"答{i}",
                                        content_hash=f"h{i}"))
                    dropped = i % 5 == 4
                    outcomes.append(dict(run_id="r1", record_id=rid, dropped_at="near_dedup" if dropped else None,
                                         dropped_order=2 if dropped else None))
                    if i % 7 != 6:
                        scores.append(dict(record_id=rid, scorer="label", model="source labels",
                                           score=float((i * 37 + row) % 5 + 1),
                                           created_at=datetime(2026, 1, 2, tzinfo=timezone.utc)))
                    scores.append(dict(record_id=rid, scorer="classifier", model="clf-1",
                                       score=round((i * 0.737) % 5, 3),
                                       created_at=datetime(2026, 1, 3, tzinfo=timezone.utc)))
                    if i % 3 == 0:  # an older score the newer one replaces
                        scores.append(dict(record_id=rid, scorer="classifier", model="clf-1", score=4.99,
                                           created_at=datetime(2026, 1, 2, tzinfo=timezone.utc)))
                    i += 1
            insert_rows(con, "records", records)
            insert_rows(con, "record_outcomes", outcomes)
            insert_rows(con, "scores", scores)
    finally:
        con.close()


@pytest.fixture
def small(tmp_path):
    db = tmp_path / "small.duckdb"
    build_store(db)
    return db


def members(db, name: str) -> list[str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return [r[0] for r in con.execute("SELECT record_id FROM subset_members WHERE subset = ? ORDER BY rank",
                                          [name]).fetchall()]
    finally:
        con.close()


# flags -> the records selected, in rank order, as the selection code gave them before any change to the
# messages around it (2026-12-07). A change here changes what a benchmark trains on.
PINNED = {
    "--top-k 8 --score label": ["alpha:3", "beta:2", "beta:7", "alpha:8", "delta:3", "alpha:1", "delta:1", "alpha:11"],
    "--top-k 8 --score label --per-source": ["alpha:3", "beta:2", "beta:7", "alpha:8", "delta:3", "alpha:1",
        "alpha:11", "gamma:2"],
    "--top-k 8 --score label --global": ["alpha:3", "beta:2", "beta:7", "alpha:8", "delta:3", "alpha:1", "delta:1",
        "alpha:11"],
    "--top-k 8 --score label --quota-min-score 3": ["alpha:3", "beta:2", "beta:7", "alpha:8", "delta:3", "alpha:1",
        "beta:8", "gamma:2"],
    "--top-k 8": ["gamma:4", "beta:6", "alpha:13", "alpha:6", "delta:3", "gamma:3", "alpha:12", "gamma:2"],
    "--random 8 --seed 0": ["delta:0", "beta:4", "beta:3", "alpha:0", "alpha:13", "alpha:7", "alpha:8", "delta:2"],
    "--random 8 --seed 3": ["beta:3", "gamma:4", "delta:3", "beta:4", "alpha:5", "beta:2", "gamma:5", "alpha:6"],
    "--license-use commercial --top-k 6 --score label": ["alpha:3", "beta:2", "beta:7", "alpha:8", "delta:3",
        "alpha:1"],
    "--license-use academic --top-k 6 --score label --global": ["alpha:3", "beta:2", "beta:7", "alpha:8", "delta:3",
        "alpha:1"],
    "--exclude-generated-by OpenAI-ToU --top-k 6 --score label --global": ["alpha:3", "alpha:8", "delta:3",
        "alpha:1", "delta:1", "alpha:11"],
    "--exclude-generated-by google/gemma-3-270m --random 6 --seed 1": ["beta:2", "alpha:12", "alpha:7", "gamma:2",
        "beta:8", "beta:4"],
    "--no-share-alike --random 5 --seed 2": ["beta:3", "alpha:3", "alpha:7", "alpha:2", "alpha:13"],
    "--license-use non-commercial": ["alpha:0", "alpha:1", "alpha:10", "alpha:11", "alpha:12", "alpha:13", "alpha:2",
        "alpha:3", "alpha:5", "alpha:6", "alpha:7", "alpha:8", "beta:1", "beta:2", "beta:3", "beta:4", "beta:6",
        "beta:7", "beta:8", "delta:0", "delta:1", "delta:2", "delta:3", "gamma:0", "gamma:2", "gamma:3", "gamma:4",
        "gamma:5"],
    "--license-use commercial --top-k 100 --score label": ["alpha:3", "beta:2", "beta:7", "alpha:8", "delta:3",
        "alpha:1", "delta:1", "alpha:11", "beta:8", "beta:3", "alpha:7", "beta:1", "alpha:12", "delta:2", "alpha:2",
        "alpha:5", "alpha:10", "delta:0", "beta:4", "alpha:0"],
    "--license-use commercial --top-k 100 --score label --global": ["alpha:3", "beta:2", "beta:7", "alpha:8",
        "delta:3", "alpha:1", "delta:1", "alpha:11", "beta:8", "beta:3", "alpha:7", "beta:1", "alpha:12", "delta:2",
        "alpha:2", "alpha:5", "alpha:10", "delta:0", "beta:4", "alpha:0"],
    "--license-use commercial --random 100 --seed 0": ["delta:0", "beta:4", "beta:3", "alpha:0", "alpha:13",
        "alpha:7", "alpha:8", "delta:2", "alpha:1", "beta:7", "beta:2", "alpha:6", "beta:6", "delta:3", "alpha:11",
        "delta:1", "alpha:2", "alpha:5", "alpha:3", "beta:1", "alpha:10", "alpha:12", "beta:8"],
}


def test_the_selections_stay_what_they_were(small):
    got = {}
    for i, flags in enumerate(PINNED):
        assert run_cli("subset", "--name", f"pin{i}", *flags.split(), "--db", str(small)) == 0, flags
        got[flags] = members(small, f"pin{i}")
    assert got == PINNED


def subset_row(db, name: str):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT n_records, size_note, criteria, export_path FROM subsets WHERE name = ?",
                           [name]).fetchone()
    finally:
        con.close()


def test_a_pool_smaller_than_k_is_said_on_stderr_in_the_store_notice_and_card(small, tmp_path, capsys):
    pool = "kept records of run r1 match the criteria (license use commercial"
    cases = {"short-top": (["--top-k", "100", "--score", "label"], 20, f"only 20 {pool}, a `label` score)"),
             "short-random": (["--random", "100"], 23, f"only 23 {pool})")}
    for name, (flags, n, why) in cases.items():
        out = tmp_path / f"{name}.jsonl"
        assert run_cli("subset", "--name", name, "--license-use", "commercial", *flags, "--out", str(out),
                       "--db", str(small)) == 0
        note = f"asked for 100, {why}: the subset has {n}"
        assert capsys.readouterr().err == f"jcurate: warning: subset '{name}': {note}\n"
        assert subset_row(small, name)[:2] == (n, note)
        assert len(out.read_text(encoding="utf-8").splitlines()) == n
        assert f"Size: {note}." in (tmp_path / f"{name}.NOTICE.md").read_text(encoding="utf-8")
        card = (tmp_path / f"{name}.README.md").read_text(encoding="utf-8")
        assert f"- Size: {note}." in card and "100" not in card.split("## How the records were selected")[1].split(
            "- Size:")[0], "the selection line gives the real count"
    # a subset that has its k: no warning, no note
    assert run_cli("subset", "--name", "full", "--random", "8", "--out", str(tmp_path / "full.jsonl"),
                   "--db", str(small)) == 0
    assert capsys.readouterr().err == "" and subset_row(small, "full")[:2] == (8, None)
    assert "Size:" not in (tmp_path / "full.README.md").read_text(encoding="utf-8")
    assert "8 kept records drawn at random" in (tmp_path / "full.README.md").read_text(encoding="utf-8")


def test_an_exclusion_matching_nothing_is_refused_and_another_case_is_taken(small, capsys):
    assert run_cli("subset", "--name", "typo", "--exclude-generated-by", "gpt-4o", "--top-k", "6", "--score", "label",
                   "--db", str(small)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--exclude-generated-by gpt-4o: no generating model or license" in err
    assert "gpt-3.5-turbo (OpenAI-ToU); google/gemma-3-270m (Gemma)" in err or \
        "google/gemma-3-270m (Gemma); gpt-3.5-turbo (OpenAI-ToU)" in err
    assert subset_row(small, "typo") is None
    assert run_cli("subset", "--name", "lower", "--exclude-generated-by", "openai-tou", "--top-k", "6", "--score",
                   "label", "--global", "--db", str(small)) == 0
    assert capsys.readouterr().err == "jcurate: warning: --exclude-generated-by openai-tou: taken as OpenAI-ToU\n"
    assert members(small, "lower") == PINNED["--exclude-generated-by OpenAI-ToU --top-k 6 --score label --global"]
    assert '"exclude_generated_by": ["OpenAI-ToU"]' in subset_row(small, "lower")[2]
    # a license id of the catalogue that no record of this store has is a valid statement: nothing to exclude
    assert run_cli("subset", "--name", "nollama", "--exclude-generated-by", "Llama-3.1", "--db", str(small)) == 0


def test_a_failed_export_stores_nothing_leaves_nothing_and_the_retry_works(small, tmp_path, capsys):
    (tmp_path / "afile").write_text("", encoding="utf-8")
    (tmp_path / "adir.jsonl").mkdir()
    (tmp_path / "blocked.README.md").mkdir()  # the card cannot be written: the records and NOTICE were
    cases = [(tmp_path / "afile/sub.jsonl", f"--out {tmp_path}/afile/sub.jsonl: {tmp_path}/afile is a file"),
             (tmp_path / "adir.jsonl", f"cannot write the export {tmp_path}/adir.jsonl: Is a directory"),
             (tmp_path / "blocked.jsonl", f"cannot write the export {tmp_path}/blocked.jsonl: Is a directory "
                                          f"({tmp_path}/blocked.README.md)")]
    if Path("/dev/full").exists():  # a full disk: every write fails with ENOSPC
        (tmp_path / "full.jsonl").symlink_to("/dev/full")
        cases.append((tmp_path / "full.jsonl", f"cannot write the export {tmp_path}/full.jsonl: No space left on "
                                               f"device; subset 'failexp' was not stored"))
    for out, says in cases:
        assert run_cli("subset", "--name", "failexp", "--random", "5", "--out", str(out), "--db", str(small)) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"jcurate: error: {says}") and err.count("\n") == 1, err
        assert subset_row(small, "failexp") is None and members(small, "failexp") == []
    left = {p.name for p in tmp_path.iterdir()} - {"small.duckdb", "small.duckdb.wal"}
    assert left <= {"adir.jsonl", "afile", "blocked.README.md", "full.jsonl"}, "what the exports wrote is removed"
    assert run_cli("subset", "--name", "failexp", "--random", "5", "--out", str(tmp_path / "ok.jsonl"),
                   "--db", str(small)) == 0
    assert subset_row(small, "failexp")[0] == 5 and (tmp_path / "ok.README.md").is_file()
    # --replace with an export that fails: the subset stays as it was
    before = members(small, "failexp")
    assert run_cli("subset", "--name", "failexp", "--random", "7", "--replace", "--out", str(tmp_path / "adir.jsonl"),
                   "--db", str(small)) == 2
    assert members(small, "failexp") == before and subset_row(small, "failexp")[3] == str(tmp_path / "ok.jsonl")


@pytest.mark.parametrize("flags, says", [
    (["--top-k", "0"], "argument --top-k: a number of records, at least 1, got 0"),
    (["--top-k", "-5"], "argument --top-k: a number of records, at least 1, got -5"),
    (["--random", "0"], "argument --random: a number of records, at least 1, got 0"),
    (["--random", "5", "--out", "OUT/a.csv"], "--out OUT/a.csv: a subset is exported as .jsonl, .parquet, or a folder"),
])
def test_bad_sizes_and_export_names_are_refused_before_any_work(small, tmp_path, capsys, flags, says):
    flags = [f.replace("OUT", str(tmp_path)) for f in flags]
    says = says.replace("OUT", str(tmp_path))
    try:
        rc = run_cli("subset", "--name", "bad", *flags, "--db", str(small))
    except SystemExit as e:  # argparse
        rc = e.code
    assert rc == 2 and says in capsys.readouterr().err
    assert subset_row(small, "bad") is None and not (tmp_path / "a.csv").exists()


@pytest.mark.parametrize("command", [["subset", "--name", "x", "--top-k", "5"], ["sql", "SELECT 1"],
                                     ["licenses", "check", "--subset", "x"], ["serve"], ["judge", "--sample", "3"],
                                     ["classifier", "score"], ["compare", "a", "b"]])
def test_a_missing_store_is_said_and_not_created(tmp_path, capsys, command):
    db = tmp_path / "missing.duckdb"
    assert run_cli(*command, "--db", str(db)) == 2
    assert capsys.readouterr().err == f"jcurate: error: no store at {db}: run `jcurate run` first (or pass --db)\n"
    assert not db.exists()


def test_a_reader_that_closes_the_pipe_ends_the_command_quietly(small):
    """`jcurate sql … | head`: the reader closes the pipe before the output is written."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    proc = subprocess.Popen([sys.executable, "-m", "jcurate.cli", "sql", "SELECT range AS n FROM range(100000)",
                             "--db", str(small)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == "", err


def test_an_experiment_refuses_arms_of_unequal_size_before_training(small, tmp_path):
    """Top-k ranks only scored records (20 pass the commercial filter), random and longest draw from all
    23: with k 100 the arms would differ."""
    from core.errors import JcurateError
    from eval.experiment import load_experiment_config, run_experiment

    (tmp_path / "exp.yaml").write_text(f"db: {small}\nk: 100\nscore: label\nlicense_use: commercial\n"
                                       f"out_dir: {tmp_path / 'runs'}\n", encoding="utf-8")
    logged = []
    with pytest.raises(JcurateError, match=r"the arms differ in size \(topk-vs-random-topk 20, topk-vs-random-random "
                                           r"23, topk-vs-random-longest 23 records; k 100\).* Nothing was trained: set "
                                           r"k to 20"):
        run_experiment(load_experiment_config(tmp_path / "exp.yaml"), log=logged.append)
    assert "[topk] warning: subset 'topk-vs-random-topk': asked for 100, only 20 kept records" in "\n".join(logged)
    con = duckdb.connect(str(small), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM train_runs").fetchone()[0] == 0
    finally:
        con.close()
    (tmp_path / "exp.yaml").write_text(f"db: {small}\nk: 0\n", encoding="utf-8")
    with pytest.raises(JcurateError, match="k is the number of records in each arm: at least 1, got 0"):
        load_experiment_config(tmp_path / "exp.yaml")
