"""The one judge cache: a judge's score for what it was shown, keyed by (hash, judge model, prompt version).

Record judging (``jcurate judge``, the service) keys by the record's ``content_hash``;
evaluation grading keys by the sha256 of the grading prompt. Failed judgements (no score)
are not cached, so they are tried again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class CachedJudgement:
    prompt_hash: str
    model: str
    prompt_version: str
    score: float | None
    raw: str | None = None


def cached_scores(con, model: str, prompt_version: str, hashes: list[str]) -> dict[str, float]:
    """Scores already in the cache for these hashes ."""
    if not hashes:
        return {}
    return dict(con.execute(
        """SELECT prompt_hash, any_value(score) FROM judge_cache
           WHERE model = ? AND prompt_version = ? AND score IS NOT NULL AND prompt_hash IN (SELECT unnest(?))
           GROUP BY prompt_hash""", [model, prompt_version, list(hashes)]).fetchall())


def cache_judgements(con, judgements: list[CachedJudgement]) -> int:
    """Store the scored judgements (replacing an older entry for the same key); returns how many."""
    scored = [j for j in judgements if j.score is not None]
    if not scored:
        return 0
    con.execute("CREATE TEMP TABLE IF NOT EXISTS judge_cache_new (prompt_hash VARCHAR, model VARCHAR, "
                "prompt_version VARCHAR, score DOUBLE, raw JSON)")
    con.execute("DELETE FROM judge_cache_new")
    con.executemany("INSERT INTO judge_cache_new (prompt_hash, model, prompt_version, score, raw) VALUES (?, ?, ?, ?, ?)",
                    [(j.prompt_hash, j.model, j.prompt_version, j.score, j.raw) for j in scored])
    con.execute("""DELETE FROM judge_cache c USING judge_cache_new n
                   WHERE c.prompt_hash = n.prompt_hash AND c.model = n.model AND c.prompt_version = n.prompt_version""")
    con.execute("INSERT INTO judge_cache BY NAME SELECT * FROM judge_cache_new")
    return len(scored)


def raw_json(raw: str, error: str | None, limit: int = 4000) -> str:
    return json.dumps({"raw": raw[:limit], "error": error}, ensure_ascii=False)
