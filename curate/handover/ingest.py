"""Loading one finished run into the store: its shards, decisions, duplicate groups and sources.

Only the main process writes the store, from the Parquet shards a run leaves behind, in one
transaction per run (workers never open DuckDB). Re-running adds a run; records are keyed
by ``record_id`` and updated in place, decisions are kept per run.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from core.errors import JcurateError
from curate.handover.declarations import Change, refuse_changes
from licenses.catalogue import Catalogue, sync_licenses
from store.connection import connect
from store.ids import new_id
from store.rows import insert_row, insert_rows
from store.runs import git_commit, package_versions

INGEST_MEMORY_LIMIT = "1GB"


def _ingest_connection(db: str | Path):
    con = connect(db)
    # DuckDB may use 80% of RAM by default and an upsert of a large run holds its rows until COMMIT
    # (a 60k-record run peaked at 741 MB): past this limit it spills to disk instead
    con.execute(f"SET memory_limit = '{INGEST_MEMORY_LIMIT}'")
    return con


def _parquet_view(con, name: str, files: list[str]) -> None:
    # a view, not a table: each statement streams the shards again instead of holding every record's
    # text in memory at once (a 60k-record run's ingest peaked at 884 MB with a table)
    con.execute(f"CREATE TEMP VIEW {name} AS SELECT * FROM read_parquet({json.dumps(files)}, union_by_name=true)")


def load_records(con, run_id: str, files: list[str]) -> None:
    """The records of ``files`` (every record of the run once) into ``records``, in ``con``'s transaction;
    a record id twice is an error that names a few."""
    _parquet_view(con, "run_records", files)
    dups = con.execute(
        "SELECT record_id, count(*) FROM run_records GROUP BY record_id HAVING count(*) > 1 LIMIT 3").fetchall()
    if dups:
        raise JcurateError(
            f"record ids are not unique (e.g. {', '.join(d[0] for d in dups)}), though the reading drops a repeated "
            f"id as a `read` drop (duplicate_id): a defect of jcurate; nothing was stored, the run's shards are kept")
    insert_records(con, run_id, "run_records")
    con.execute("DROP VIEW run_records")


class EarlyRecords:
    """The records part of ``ingest_run`` (most of its time: every record's texts, compressed), started
    once the filter stage has ended, on a thread, while the later stages run: DuckDB works with the
    GIL released, on the cores the dedup plan leaves idle (it is one task) or, with one worker, beside
    the stages running in this process. The records are all known then: the filter stage's drops
    (``filter_drops``) and the filtered shards, which the later stages only split into kept and dropped.
    Its transaction stays open until ``ingest_run`` commits the rest of the run in it, so the store
    still holds a run entirely or not at all (``abort`` rolls it back); the store is locked from the
    filter stage's end, not from the ingest's start."""

    def __init__(self, db: str | Path, out: Path, filter_drops: tuple[str, ...]):
        import threading

        self.db, self.out, self.filter_drops = db, out, filter_drops
        self.run_id = new_id("run")
        self.con = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._load, name="early-records", daemon=True)

    def files(self) -> list[str]:
        shards = [*self.out.glob("work/filtered/*.parquet")]
        for stage in self.filter_drops:
            shards += self.out.glob(f"dropped/{stage}/*.parquet")
        return [str(p) for p in sorted(shards)]

    def start(self) -> None:
        self.thread.start()

    def _load(self) -> None:
        try:
            files = self.files()
            if not files:
                raise JcurateError(f"{self.out}: no filtered or dropped shards to ingest")
            self.con = _ingest_connection(self.db)
            # DuckDB draws a progress bar on the terminal for a statement over 2 s: not between a stage's lines
            self.con.execute("SET enable_progress_bar = false")
            self.con.execute("BEGIN TRANSACTION")
            load_records(self.con, self.run_id, files)
        except BaseException as e:  # raised by ``finish``, in the main thread
            self.error = e

    def finish(self):
        """Waits for the load; returns its connection, in the open transaction (or raises its error)."""
        self.thread.join()
        if self.error is not None:
            self.abort()
            raise self.error
        con, self.con = self.con, None  # the caller's now: it commits or rolls back, and closes it
        return con

    def abort(self) -> None:
        """Rolls the load back and closes its connection (a later stage failed, or the load did); after
        ``finish`` nothing is left to do."""
        if self.thread.is_alive():
            self.thread.join()
        if self.con is not None:
            try:
                self.con.execute("ROLLBACK")
            except duckdb.Error:
                pass  # no transaction open: BEGIN never ran, or the failed statement ended it
            self.con.close()
            self.con = None


def shard_files(out: Path) -> list[str]:
    """The run's kept and dropped Parquet shards: every record of the run once."""
    return [str(p) for p in sorted(out.glob("kept/*.parquet")) + sorted(out.glob("dropped/*/*.parquet"))]


def check_manifest_covers_shards(out: Path, sources, sources_file: str | Path) -> None:
    """Refuses a manifest that lacks a source the run's shards hold: its records would be stored without a
    license. Reads only the shards' ``source_id`` column."""
    files = shard_files(out)
    if not files:
        return  # ingest_run names the empty folder
    con = duckdb.connect()
    try:
        held = {r[0] for r in con.execute(
            f"SELECT DISTINCT source_id FROM read_parquet({json.dumps(files)}, union_by_name=true)").fetchall()}
    finally:
        con.close()
    missing = sorted(held - {s.id for s in sources} - {None})
    if missing:
        raise JcurateError(f"{out}: its shards hold source(s) {', '.join(map(repr, missing))} that the manifest "
                           f"{sources_file} lacks; nothing was stored. Pass the run's own manifest with --sources")


def refuse_a_stored_folder(con, out: Path, folder_id: str | None) -> None:
    """The same run folder ingested twice would record the run twice (its decisions and sources doubled)."""
    stored = folder_id and con.execute("SELECT run_id FROM runs WHERE run_folder_id = ?", [folder_id]).fetchone()
    if stored:
        raise JcurateError(f"run folder {out} was ingested already as run {stored[0]} in this store; nothing done")


def ingest_run(db: str | Path, out: Path, sources, catalogue: Catalogue, *, config: dict, report: dict,
               sources_file: str, executor: str = "local", workers: int = 1, started_at: datetime | None = None,
               stages: tuple[str, ...] = (), early: EarlyRecords | None = None, relicense=()) -> str:
    """Loads one finished run (``out/kept``, ``out/dropped``, the dedup plan, the shipped scores the
    workers gave the kept records) in one transaction. Where the kept shards carry shipped scores,
    ``report["scoring"]["shipped"]`` says how many were stored (and the stored report holds it).
    ``early``: the run's records are being loaded already (``EarlyRecords``), in the transaction this
    completes. A source the store holds under another declaration is refused unless ``relicense`` names
    it (``curate.handover.declarations``); ``report["relicensed"]`` lists those it changed."""
    files = shard_files(out)
    if not files:
        if early is not None:
            early.abort()
        raise JcurateError(f"{out}: no kept or dropped shards to ingest")
    if early is not None:
        run_id, con = early.run_id, early.finish()
    else:
        run_id, con = new_id("run"), _ingest_connection(db)
        con.execute("BEGIN TRANSACTION")
    from curate.running.pipeline import run_folder_id  # here: the pipeline's imports are heavy

    folder_id = run_folder_id(out)
    try:
        refuse_a_stored_folder(con, out, folder_id)
        if early is None:
            load_records(con, run_id, files)
        _parquet_view(con, "shard", files)
        sync_licenses(con, catalogue)
        changes = {c.source_id: c for c in refuse_changes(con, sources, db, sources_file, relicense)}
        now = datetime.now(timezone.utc)
        insert_rows(con, "sources", [dict(
            run_id=run_id, source_id=s.id, name=s.name, path=s.path, format=s.format, url=s.url, license_id=s.license,
            generated_by_model=s.generated_by.model if s.generated_by else None,
            generated_by_license=s.generated_by.license if s.generated_by else None,
            attribution=s.attribution, fields=json.dumps(s.fields), hub_id=s.hub_id,
            hub_revision=s.hub_revision,
            relicensed_from_run=changes[s.id].stored_run if s.id in changes else None) for s in sources])
        if changes:
            report["relicensed"] = [relicense_records(con, c) for c in changes.values()]
        # what became of each record (the decisions view: a row per stage it went through); no stages, no decisions
        insert_rows(con, "run_stages", [dict(run_id=run_id, stage=s, stage_order=i) for i, s in enumerate(stages)])
        if stages:
            con.execute(
                """INSERT INTO record_outcomes (run_id, record_id, dropped_at, dropped_order, reason, value)
                   SELECT $run, s.record_id, s.stage, l.stage_order, s.reason, s.value
                   FROM shard s LEFT JOIN run_stages l ON l.run_id = $run AND l.stage = s.stage""",
                {"run": run_id},
            )
        # quality labels a source ships are scores like any other (scorer 'label'), latest run wins
        con.execute("DELETE FROM scores WHERE scorer = 'label' AND record_id IN (SELECT record_id FROM shard)")
        con.execute(
            """INSERT INTO scores (record_id, content_hash, scorer, model, prompt_version, score, raw, run_id,
                                  created_at)
               SELECT record_id, content_hash, 'label', 'source:' || source_id, NULL, label, NULL, $run, $now
               FROM shard WHERE label IS NOT NULL""",
            {"run": run_id, "now": now},
        )
        plan = out / "work/dedup_plan.parquet"
        if plan.is_file():
            con.execute(
                f"""INSERT INTO dup_clusters (run_id, cluster_id, record_id, stage, is_survivor)
                    SELECT $run, cluster_id, record_id, stage, false FROM read_parquet('{plan}')
                    UNION ALL
                    SELECT DISTINCT $run, cluster_id, cluster_id, 'survivor', true FROM read_parquet('{plan}')""",
                {"run": run_id},
            )
        shipped = store_shipped_scores(con, run_id, now)
        if shipped:
            report.setdefault("scoring", {})["shipped"] = shipped
        insert_row(con, "runs", dict(
            run_id=run_id, started_at=started_at or now, finished_at=now, out_dir=str(out),
            sources_file=sources_file, executor=executor, workers=workers, config=json.dumps(config),
            versions=json.dumps(package_versions()), git_commit=git_commit(), n_read=report["read"],
            n_kept=report["kept"], report=json.dumps(report), run_folder_id=folder_id))
        con.execute("DROP VIEW shard")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.close()
    return run_id


def relicense_records(con, change: Change) -> dict:
    """The stored records of a relicensed source name its new generating model (``records.generated_by``
    agrees with the model ``record_license`` reports); returns the change and the subsets holding them."""
    con.execute("UPDATE records SET generated_by = ? WHERE source_id = ?",
                [change.declared.generated_by_model, change.source_id])
    subsets = [r[0] for r in con.execute(
        """SELECT DISTINCT m.subset FROM subset_members m JOIN records r USING (record_id)
           WHERE r.source_id = ? ORDER BY 1""", [change.source_id]).fetchall()]
    return {**change.to_dict(), "subsets": subsets}


RECORD_FIELDS = ("source_id", "file", "row", "instruction", "input", "output", "messages", "text", "content_hash",
                 "generated_by", "label", "signals")


def insert_records(con, run_id: str, view: str = "shard") -> None:
    """The run's records into ``records``, keyed by ``record_id``: a record stored by an earlier run is
    updated in place (its ``first_run_id`` kept). Only where some are stored already is it an upsert:
    an ``INSERT … ON CONFLICT`` checks every row against the key and made the commit slower, twice the
    plain insert on a 60k-record run (1.5 vs 0.6 s), and a first run of new data stores none."""
    columns = ", ".join(f'"{c}"' for c in RECORD_FIELDS)
    select = f"SELECT record_id, {columns}, $run AS first_run_id, $run AS last_run_id FROM {view}"
    stored = con.execute(f"SELECT EXISTS (SELECT 1 FROM {view} s JOIN records r USING (record_id))").fetchone()[0]
    if not stored:
        con.execute(f"INSERT INTO records BY NAME {select}", {"run": run_id})
        return
    updates = ", ".join(f'"{c}" = excluded."{c}"' for c in (*RECORD_FIELDS, "last_run_id"))
    con.execute(f"INSERT INTO records BY NAME {select} ON CONFLICT (record_id) DO UPDATE SET {updates}",
                {"run": run_id})


def store_shipped_scores(con, run_id: str, now: datetime) -> dict | None:
    """The shipped scores ``curate.scoring.shipped_scorer.ShippedScoreStep`` wrote with the kept records, as
    scores of scorer ``shipped`` (replacing that model's earlier scores of the same records, as
    ``curate.scoring.kept_scores.store_kept_scores`` does). None where the shards carry none (the step was off)."""
    if "shipped_score" not in {row[0] for row in con.execute("DESCRIBE shard").fetchall()}:
        return None
    scored = "FROM shard WHERE stage IS NULL AND shipped_score IS NOT NULL"
    models = [row[0] for row in con.execute(f"SELECT DISTINCT shipped_model {scored} ORDER BY 1").fetchall()]
    if not models:
        return None
    con.execute(f"DELETE FROM scores WHERE scorer = 'shipped' AND model IN (SELECT DISTINCT shipped_model {scored}) "
                f"AND record_id IN (SELECT record_id {scored})")
    con.execute(
        f"""INSERT INTO scores (record_id, content_hash, scorer, model, prompt_version, score, raw, run_id, created_at)
            SELECT record_id, content_hash, 'shipped', shipped_model, NULL, shipped_score, NULL, $run, $now {scored}""",
        {"run": run_id, "now": now})
    n = con.execute(f"SELECT count(*) {scored}").fetchone()[0]
    return {"scorer": "shipped", "model": models[0] if len(models) == 1 else models, "scored": n}
