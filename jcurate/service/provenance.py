"""Provenance lookups shared by the HTTP API and the browser page: plain SQL over the store.

Every function takes a read-only DuckDB connection and returns JSON-ready dicts.
"""

from __future__ import annotations

import base64
import json
import math
import unicodedata
import uuid
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from licenses.catalogue import Catalogue
from licenses.notice import subset_licenses, subset_notice
from licenses.rules import check


def jsonable(v):
    """A DuckDB value as JSON: timestamps as ISO text, NaN/inf as null, bytes as base64."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, (datetime, date, time)):
        return v.isoformat()
    if isinstance(v, Decimal):
        return jsonable(float(v))
    if isinstance(v, (timedelta, uuid.UUID)):
        return str(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(v)).decode("ascii")
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    return str(v)


def _rows(con, sql: str, params=None) -> list[dict]:
    cur = con.execute(sql, params or [])
    cols = [d[0] for d in cur.description]
    return [{c: jsonable(v) for c, v in zip(cols, row)} for row in cur.fetchall()]


def _json(v):
    return json.loads(v) if isinstance(v, str) else v


def record(con, record_id: str, catalogue: Catalogue) -> dict | None:
    """A record with its source, effective license, decisions of every run, scores, dup cluster and subsets."""
    found = _rows(con, """SELECT record_id, source_id, file, "row", instruction, input, output, messages, text,
                                 content_hash, generated_by, label, signals, first_run_id, last_run_id
                          FROM records WHERE record_id = ?""", [record_id])
    if not found:
        return None
    rec = found[0]
    rec["messages"], rec["signals"] = _json(rec["messages"]), _json(rec["signals"])
    source = _rows(con, """SELECT source_id, name, path, format, url, license_id, generated_by_model,
                                  generated_by_license, attribution, run_id AS declared_in_run
                           FROM current_sources WHERE source_id = ?""", [rec["source_id"]])
    lic = _rows(con, "SELECT source_license, model_license, license FROM record_license WHERE record_id = ?",
                [record_id])
    license_info = None
    if lic:
        effective = catalogue.licenses.get(lic[0]["license"])
        license_info = {**lic[0], "name": effective and effective.name, "url": effective and effective.url,
                        "use": effective and effective.use,
                        "share_alike": effective and effective.share_alike}
    decisions = _rows(con, """SELECT d.run_id, d.stage, d.stage_order, d.kept, d.reason, d.value
                              FROM decisions d JOIN runs r USING (run_id) WHERE d.record_id = ?
                              ORDER BY r.finished_at, d.stage_order""", [record_id])
    fate = _rows(con, """SELECT f.run_id, f.kept, f.dropped_at, f.reason, f.value
                         FROM record_fate f JOIN runs r USING (run_id) WHERE f.record_id = ?
                         ORDER BY r.finished_at DESC LIMIT 1""", [record_id])
    scores = _rows(con, """SELECT scorer, model, prompt_version, score, run_id, created_at FROM scores
                           WHERE record_id = ? ORDER BY created_at, scorer""", [record_id])
    cluster = None
    mine = _rows(con, """SELECT c.run_id, c.cluster_id, c.stage, c.is_survivor FROM dup_clusters c
                         JOIN runs r USING (run_id) WHERE c.record_id = ? ORDER BY r.finished_at DESC LIMIT 1""",
                 [record_id])
    if mine:
        cluster = {**mine[0], "members": _rows(
            con, """SELECT record_id, stage, is_survivor FROM dup_clusters WHERE run_id = ? AND cluster_id = ?
                    ORDER BY is_survivor DESC, record_id""", [mine[0]["run_id"], mine[0]["cluster_id"]])}
    subsets = _rows(con, """SELECT m.subset AS name, m.rank, m.score FROM subset_members m
                            WHERE m.record_id = ? ORDER BY m.subset""", [record_id])
    return {"record": rec, "source": source[0] if source else None, "license": license_info,
            "fate": fate[0] if fate else None, "decisions": decisions, "scores": scores,
            "dup_cluster": cluster, "subsets": subsets,
            "duplicate_of": duplicate_of(con, rec, fate[0]) if fate else None}


def duplicate_of(con, rec: dict, fate: dict) -> dict | None:
    """For a record dropped as a duplicate: the survivor it lost to and the similarity that decided,
    recomputed as the run computed it (its near_dedup settings): per part Jaccard, or identical content."""
    if fate["kept"] or fate["dropped_at"] not in ("exact_dedup", "near_dedup") or not fate["value"]:
        return None
    survivor_id = str(fate["value"]).split()[0]
    found = _rows(con, "SELECT record_id, source_id, instruction, input, output, messages, text, content_hash "
                       "FROM records WHERE record_id = ?", [survivor_id])
    if not found:
        return None
    survivor = found[0]
    survivor["messages"] = _json(survivor["messages"])
    result = {"stage": fate["dropped_at"], "survivor": survivor}
    if fate["dropped_at"] == "exact_dedup":
        return {**result, "similarity": {"content": "identical after normalisation"}}
    from curate.config import PipelineConfig
    from curate.dedup.near_duplicates import PartShingles, RecordParts, jaccard
    from curate.text.tokenizers import make_tokenizer

    stored = con.execute("SELECT config FROM runs WHERE run_id = ?", [fate["run_id"]]).fetchone()
    near = PipelineConfig().near_dedup
    if stored and stored[0]:
        for key, value in (json.loads(stored[0]).get("near_dedup") or {}).items():
            if hasattr(near, key):
                setattr(near, key, value)
    tokenizer = make_tokenizer(near.tokens)
    mine, theirs = (PartShingles.of(RecordParts.of(r["instruction"], r["input"], r["output"], r["messages"]),
                                    tokenizer, near.n_grams) for r in (rec, survivor))
    similarity = {part: round(jaccard(getattr(mine, part), getattr(theirs, part)), 3)
                  for part in ("prompt", "context", "answer")}
    return {**result, "similarity": similarity, "min_jaccard": near.min_jaccard,
            "measure": f"{near.n_grams}-gram {near.tokens} Jaccard per part"}


def search(con, query: str, limit: int = 50) -> list[dict]:
    """Records whose id equals ``query``, whose id or text contains it (case-insensitive), with fate in the
    latest run; the record whose id equals it comes first.

    The fragment is NFKC-normalised like the stored text, so ｶﾀｶﾅ or ＡＩ find カタカナ and AI."""
    pattern, id_pattern = (_like_pattern(unicodedata.normalize("NFKC", query)), _like_pattern(query))
    return _rows(con, """
        SELECT r.record_id, r.source_id, l.license, f.kept, f.dropped_at, f.reason,
               left(replace(r.text, chr(10), ' '), 160) AS preview
        FROM records r
        LEFT JOIN record_license l USING (record_id)
        LEFT JOIN record_fate f ON f.record_id = r.record_id AND f.run_id = (SELECT run_id FROM latest_run)
        WHERE r.record_id = $q OR r.record_id ILIKE $i ESCAPE '\\' OR r.text ILIKE $p ESCAPE '\\'
        ORDER BY (r.record_id = $q) DESC, r.record_id
        LIMIT $n""", {"q": query, "p": pattern, "i": id_pattern, "n": limit})


def _like_pattern(fragment: str) -> str:
    """``%fragment%`` for ILIKE with ``\\`` as the escape: a ``%`` or ``_`` in the fragment is itself."""
    return "%" + fragment.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


SEARCH_LIMIT = 50  # results of a search, the API's default and the page's


def search_results(con, query: str, limit: int = SEARCH_LIMIT) -> dict:
    """``search`` with its limit and whether more records match than it shows (``truncated``)."""
    rows = search(con, query, limit + 1)
    return {"results": rows[:limit], "limit": limit, "truncated": len(rows) > limit}


def sources_overview(con) -> list[dict]:
    """Sources x effective licenses x kept/dropped counts in the latest run, with drops per stage."""
    rows = _rows(con, """
        SELECT s.source_id, s.name, s.license_id AS source_license, s.generated_by_model,
               l.license AS effective_license, count(*) AS records,
               count(*) FILTER (WHERE f.kept) AS kept, count(*) FILTER (WHERE NOT f.kept) AS dropped
        FROM record_fate f
        JOIN records r ON r.record_id = f.record_id
        JOIN current_sources s ON s.source_id = r.source_id
        JOIN record_license l ON l.record_id = f.record_id
        WHERE f.run_id = (SELECT run_id FROM latest_run)
        GROUP BY ALL ORDER BY s.source_id, effective_license""")
    stages = _rows(con, """
        SELECT r.source_id, l.license, f.dropped_at, count(*) AS n
        FROM record_fate f JOIN records r ON r.record_id = f.record_id
        JOIN record_license l ON l.record_id = f.record_id
        WHERE f.run_id = (SELECT run_id FROM latest_run) AND NOT f.kept
        GROUP BY ALL ORDER BY r.source_id, n DESC""")
    for row in rows:
        row["dropped_by_stage"] = {s["dropped_at"]: s["n"] for s in stages
                                   if (s["source_id"], s["license"]) == (row["source_id"], row["effective_license"])}
    return rows


DROP_PAGE = 50


def unknown_drops_filter(con, source_id: str | None, stage: str | None) -> str | None:
    """Why ``/drops`` cannot answer for this source or stage (naming the known ones), or None: a source the
    latest run did not read, or a stage the pipeline does not have, is an error, not "0 dropped"."""
    from curate.running.pipeline import STAGES

    if stage and stage not in STAGES:
        return f"unknown stage {stage!r}; the stages: {', '.join(STAGES)}"
    if source_id:
        latest = "FROM record_fate f JOIN records r USING (record_id) WHERE f.run_id = (SELECT run_id FROM latest_run)"
        if not _rows(con, f"SELECT 1 AS hit {latest} AND r.source_id = ? LIMIT 1", [source_id]):
            known = [row["source_id"] for row in _rows(con, f"SELECT DISTINCT r.source_id {latest} ORDER BY 1")]
            return f"unknown source {source_id!r}; the latest run's sources: {', '.join(known) or 'none'}"
    return None


def drops(con, source_id: str | None, stage: str | None, reason: str | None = None, page: int = 1,
          sample: int | None = None, seed: int = 0) -> dict:
    """The latest run's drops of a source at a stage (and reason): the reasons with their counts, the total,
    and one page of records in record id order, or ``sample`` of them drawn at random (``seed``), each with
    its text first, the reason and the value that decided. What an audit reads."""
    where = ["f.run_id = (SELECT run_id FROM latest_run)", "NOT f.kept"]
    params: dict = {}
    if source_id:
        where.append("r.source_id = $source")
        params["source"] = source_id
    if stage:
        where.append("f.dropped_at = $stage")
        params["stage"] = stage
    reasons = _rows(con, f"""SELECT f.reason, count(*) AS n FROM record_fate f JOIN records r USING (record_id)
                             WHERE {' AND '.join(where)} GROUP BY 1 ORDER BY 2 DESC, 1""", params)
    if reason:
        where.append("f.reason = $reason")
        params["reason"] = reason
    total = _rows(con, f"""SELECT count(*) AS n FROM record_fate f JOIN records r USING (record_id)
                           WHERE {' AND '.join(where)}""", params)[0]["n"]
    if sample:
        order, limit, offset = "hash(r.record_id || ':' || $seed)", max(1, min(int(sample), 500)), 0
        params["seed"] = str(seed)
    else:
        order, limit, offset = "r.record_id", DROP_PAGE, (max(1, page) - 1) * DROP_PAGE
    rows = _rows(con, f"""
        SELECT r.record_id, r.source_id, f.dropped_at AS stage, f.reason, f.value, r.instruction, r.input, r.output,
               r.messages
        FROM record_fate f JOIN records r USING (record_id)
        WHERE {' AND '.join(where)} ORDER BY {order} LIMIT {int(limit)} OFFSET {int(offset)}""", params)
    for row in rows:
        messages = json.loads(row.pop("messages")) if row.get("messages") else None
        if messages:
            answers = [m.get("content", "") for m in messages if m.get("role") == "assistant"]
            row["answer"], row["prompt"] = (answers[-1] if answers else ""), ""
        else:
            row["answer"] = row.pop("output") or ""
            row["prompt"] = "\n".join(x for x in (row.pop("instruction"), row.pop("input")) if x)
        for k in ("instruction", "input", "output"):
            row.pop(k, None)
    return {"source_id": source_id, "stage": stage, "reason": reason, "total": total, "reasons": reasons,
            "page": None if sample else max(1, page), "per_page": DROP_PAGE, "sample": limit if sample else None,
            "seed": seed if sample else None, "records": rows}


SCORE_BINS, SCORE_LO, SCORE_HI = 16, 1.0, 5.0


def source_charts(con) -> list[dict]:
    """Per source in the latest run: kept and dropped-by-stage counts, and a histogram of the kept records'
    scores (the store's classifier where it scored them, else the shipped scorer) for the page's charts.

    The histogram is counted exactly in SQL (`SCORE_BINS` bins over 1-5): no sample, so a bar's count is the
    number of kept records whose score falls in it, and `n_scored` is the number of kept records scored."""
    fates = _rows(con, """
        SELECT r.source_id, CASE WHEN f.kept THEN 'kept' ELSE f.dropped_at END AS fate, count(*) AS n
        FROM record_fate f JOIN records r USING (record_id)
        WHERE f.run_id = (SELECT run_id FROM latest_run) GROUP BY ALL ORDER BY 1, 2""")
    out: dict[str, dict] = {}
    for row in fates:
        out.setdefault(row["source_id"], {"source_id": row["source_id"], "fates": {}, "bins": [0] * SCORE_BINS,
                                          "n_scored": 0, "scorer": None})
        out[row["source_id"]]["fates"][row["fate"]] = row["n"]
    width = (SCORE_HI - SCORE_LO) / SCORE_BINS
    for scorer in ("classifier", "shipped"):
        rows = _rows(con, f"""
            SELECT r.source_id,
                   least({SCORE_BINS - 1}, greatest(0, floor((s.score - {SCORE_LO}) / {width})))::INTEGER AS bin,
                   count(*) AS n
            FROM scores s JOIN record_fate f ON f.record_id = s.record_id AND s.run_id = f.run_id
            JOIN records r ON r.record_id = s.record_id
            WHERE f.run_id = (SELECT run_id FROM latest_run) AND f.kept AND s.scorer = ? AND isfinite(s.score)
            GROUP BY ALL""", [scorer])
        if rows:
            for row in rows:
                if row["source_id"] in out:
                    chart = out[row["source_id"]]
                    chart["bins"][row["bin"]] += row["n"]
                    chart["n_scored"] += row["n"]
                    chart["scorer"] = scorer
            break
    return list(out.values())


def _verdict(con, name: str, catalogue: Catalogue) -> dict:
    licenses = subset_licenses(con, name, catalogue)
    verdict = check(licenses, None).to_dict()
    verdict["licenses"] = [lic.id for lic in licenses]
    return verdict


_SUBSETS = "SELECT name, run_id, created_at, n_records, criteria, export_path FROM subsets"


def subsets(con, catalogue: Catalogue) -> list[dict]:
    """Every subset with its criteria and what its licenses oblige (commercial use, redistribution, reasons)."""
    rows = _rows(con, _SUBSETS + " ORDER BY name")
    for row in rows:
        row["criteria"] = _json(row["criteria"])
        row["obligations"] = _verdict(con, row["name"], catalogue)
    return rows


def subset(con, name: str, catalogue: Catalogue) -> dict | None:
    """A subset with its criteria, counts per source and license, and obligations; None if there is none."""
    found = _rows(con, _SUBSETS + " WHERE name = ?", [name])
    if not found:
        return None
    row = found[0]
    row["criteria"] = _json(row["criteria"])
    row["per_source"] = _rows(con, """
        SELECT rec.source_id, l.license, count(*) AS records FROM subset_members m
        JOIN records rec USING (record_id) JOIN record_license l USING (record_id)
        WHERE m.subset = ? GROUP BY ALL ORDER BY records DESC, rec.source_id""", [name])
    row["per_license"] = _rows(con, """
        SELECT l.license, count(*) AS records FROM subset_members m JOIN record_license l USING (record_id)
        WHERE m.subset = ? GROUP BY ALL ORDER BY records DESC, l.license""", [name])
    row["obligations"] = _verdict(con, name, catalogue)
    return row


def notice(con, name: str, catalogue: Catalogue) -> str:
    return subset_notice(con, name, catalogue)
