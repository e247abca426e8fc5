"""Which records a subset selects, and in which order, pinned on a fixed small store; and what
``jcurate subset`` says when it cannot give what was asked (a short pool, an exclusion that matches
nothing, an export that fails, a bad flag, a missing store).

The store is built row by row (no pipeline run), so the pins below change only when the selection
code does: a benchmark trains on these selections, and they must not move under it.
"""

from __future__ import annotations

from datetime import datetime, timezone

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
                        scores.append(dict(record_id=rid, scorer="label", score=float((i * 37 + row) % 5 + 1),
                                           created_at=datetime(2026, 1, 2, tzinfo=timezone.utc)))
                    scores.append(dict(record_id=rid, scorer="classifier", score=round((i * 0.737) % 5, 3),
                                       created_at=datetime(2026, 1, 3, tzinfo=timezone.utc)))
                    if i % 3 == 0:  # an older score the newer one replaces
                        scores.append(dict(record_id=rid, scorer="classifier", score=4.99,
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
