"""Scoring a run's kept records into the store: the one loop the classifier and the shipped scorer share.

A scorer is a name (``scores.scorer``), a model id (``scores.model``) and a function from a batch
of kept records to their scores. Re-scoring the same run with the same model replaces its rows,
so re-runs stay idempotent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from store.connection import transaction
from store.rows import insert_rows


@dataclass(frozen=True)
class KeptRecord:
    """A kept record as scorers read it."""

    record_id: str
    content_hash: str
    text: str
    instruction: str | None
    input: str | None
    output: str | None
    messages: list | None


def answer_text(r: KeptRecord) -> str:
    """The answer a record trains: its output, or a conversation's last assistant turn."""
    if r.messages:
        turns = [m.get("content") or "" for m in r.messages if m.get("role") == "assistant"]
        return turns[-1] if turns else ""
    return r.output or ""


def answer_lengths(records: list[KeptRecord]) -> list[float]:
    """Characters of the answer each record trains: what a longest-k selection ranks by."""
    return [float(len(answer_text(r))) for r in records]


def kept_records(con, run_id: str, batch: int = 5000, after: str = "") -> list[KeptRecord]:
    """Up to ``batch`` kept records of the run with ids after ``after``, in id order (a page: the
    caller inserts between pages, which a pending DuckDB result would not survive)."""
    rows = con.execute(
        """SELECT r.record_id, r.content_hash, r.text, r.instruction, r.input, r.output, r.messages
           FROM record_fate f JOIN records r USING (record_id)
           WHERE f.run_id = ? AND f.kept AND r.record_id > ? ORDER BY r.record_id LIMIT ?""",
        [run_id, after, batch]).fetchall()
    return [KeptRecord(*row[:6], json.loads(row[6]) if row[6] else None) for row in rows]


def store_kept_scores(con, run_id: str, scorer: str, model: str, score: Callable[[list[KeptRecord]], list[float]],
                      batch: int = 5000) -> tuple[int, float]:
    """Scores every kept record of ``run_id`` and replaces that model's scores of them.
    Returns (records scored, seconds spent scoring)."""
    now = datetime.now(timezone.utc)
    spent, scored, after = 0.0, 0, ""
    with transaction(con):
        con.execute("DELETE FROM scores WHERE scorer = ? AND model = ? AND record_id IN "
                    "(SELECT record_id FROM record_fate WHERE run_id = ? AND kept)", [scorer, model, run_id])
        while chunk := kept_records(con, run_id, batch, after):  # a page at a time: memory does not grow with the run
            start = time.perf_counter()
            values = score(chunk)
            spent += time.perf_counter() - start
            insert_rows(con, "scores", [
                dict(record_id=r.record_id, content_hash=r.content_hash, scorer=scorer, model=model,
                     score=float(v), run_id=run_id, created_at=now) for r, v in zip(chunk, values)])
            scored, after = scored + len(chunk), chunk[-1].record_id
    return scored, spent
