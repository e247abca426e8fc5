"""Training data for SFT: a stored subset or a JSONL file, as chat ``messages``.

Single-turn records become [system?] + user (instruction, then input) + assistant (output);
multi-turn records keep their turns. The eval split is deterministic (hash of record id).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from core.errors import JcurateError
from core.jsonl import read_json_lines
from curate.handover.subsets import export_rows
from store.connection import connect
from train.config import DataConfig


def to_messages(record: dict, system_prompt: str | None = None) -> list[dict]:
    turns = record.get("messages")
    if isinstance(turns, str):
        turns = json.loads(turns)
    if turns:
        messages = [{"role": t["role"], "content": t["content"]} for t in turns]
    else:
        user = record["instruction"] + (f"\n\n{record['input']}" if record.get("input") else "")
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": record["output"]}]
    if system_prompt and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def load_records(cfg: DataConfig) -> list[dict]:
    """The training records: the stored subset (checked to exist, one read-only look at the store) or the file."""
    if cfg.subset:
        return _subset_records(cfg.db, cfg.subset)
    rows = []
    for lineno, row in read_json_lines(cfg.file, "training file"):
        if not isinstance(row, dict) or not row.get("messages") and not ("instruction" in row and "output" in row):
            raise JcurateError(f"{cfg.file} line {lineno}: needs 'messages' or 'instruction' and 'output'")
        row.setdefault("record_id", f"{Path(cfg.file).name}:{lineno}")
        rows.append(row)
    return rows


def _subset_records(db: str, subset: str) -> list[dict]:
    if not Path(db).is_file():
        raise JcurateError(f"config key 'data.db': no store at {db}")
    con = connect(db, read_only=True)
    try:
        if not con.execute("SELECT 1 FROM subsets WHERE name = ?", [subset]).fetchone():
            known = [r[0] for r in con.execute("SELECT name FROM subsets ORDER BY created_at DESC LIMIT 10").fetchall()]
            raise JcurateError(f"config key 'data.subset': no subset named {subset!r} in {db} "
                               f"(subsets: {', '.join(known) or 'none; build one with jcurate subset'})")
        return export_rows(con, subset)
    finally:
        con.close()


def split(records: list[dict], cfg: DataConfig) -> tuple[list[dict], list[dict]]:
    """(train, eval) as {"messages": [...]} rows."""
    train, evaluation = [], []
    for r in records:
        h = int(hashlib.md5(f"{cfg.seed}:{r['record_id']}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (evaluation if h < cfg.eval_fraction else train).append({"messages": to_messages(r, cfg.system_prompt)})
    if not train:
        raise JcurateError("no training records left after the eval split")
    return train, evaluation
