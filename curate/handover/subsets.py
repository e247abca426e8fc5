"""``jcurate subset``: license-filtered, top-k or random subsets of a run's kept records.

The selection is SQL over the store (``record_fate`` for what was kept, ``record_license``
for each record's effective license, ``scores`` or the source's own labels for ranking);
the subset, its criteria and its members go back into the store, and the export carries
``record_id``, ``source_id`` and the effective ``license`` of every record, with the subset's
NOTICE and a Hugging Face dataset card (``licenses.dataset_card``) beside it or inside its folder.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from core.errors import JcurateError, first_line
from licenses.catalogue import Catalogue
from licenses.rules import LADDER, USE_RANK
from store.connection import connect, transaction
from store.rows import insert_row, insert_rows
from store.runs import resolve_run


@dataclass
class SubsetCriteria:
    name: str
    run_id: str | None = None  # default: the latest run
    license_use: str | None = None  # commercial | non-commercial | academic
    no_share_alike: bool = False
    exclude_generated_by: tuple[str, ...] = ()
    top_k: int | None = None
    per_source: bool = False  # top-k from each source in proportion to its share of the eligible records
    quota_min_score: float | None = None  # with per_source: shares counted over records scoring at least this
    # (the CLI's and the experiment's default top-k: per source, quotas over records scoring DEFAULT_QUOTA_MIN_SCORE)
    score: str | None = None  # a scorer in `scores` ("label": the quality labels sources ship); top-k default below
    random: int | None = None
    seed: int = 0
    diversity: float | None = None  # skip a record closer than this cosine distance to one already selected
    embedding_backend: str = "use"
    embedding_model: str | None = None


# the default top-k of `jcurate subset` and `jcurate experiment`: each source's quota in proportion to its eligible
# records scoring 4 or more, the label scale's "correct and follows the instruction" (every scorer here is on that
# 1-5 scale); chosen by the selection benchmark against a rule written before its runs (docs/licenses.md)
DEFAULT_QUOTA_MIN_SCORE = 4.0


def subset_exists(con, name: str) -> bool:
    return con.execute("SELECT 1 FROM subsets WHERE name = ?", [name]).fetchone() is not None


def check_size_asked(c: SubsetCriteria) -> None:
    for flag, k in (("--top-k", c.top_k), ("--random", c.random)):
        if k is not None and k < 1:
            raise JcurateError(f"{flag} is the number of records to take: at least 1, got {k}")


# what `--out` may name: the export's form follows from it (curate.handover.subsets.write_export)
EXPORT_FORMS = ".jsonl, .parquet, or a folder (a path without an extension: a Hugging Face datasets folder)"


def export_form(out: Path) -> str:
    """How an export to ``out`` is written: ``jsonl``, ``parquet`` or ``folder``. Checked before any
    work: a name the exporter does not write (``a.csv`` would have been a datasets folder named
    ``a.csv``) and a path under a file are refused."""
    if out.suffix in (".jsonl", ".parquet"):
        form = out.suffix[1:]
    elif not out.suffix or out.is_dir():
        form = "folder"
    else:
        raise JcurateError(f"--out {out}: a subset is exported as {EXPORT_FORMS}; '{out.suffix}' is none of those")
    blocking = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise JcurateError(f"--out {out}: {blocking} is a file, not a folder: pick another --out")
    return form


def known_exclusions(con, c: SubsetCriteria, catalogue: Catalogue) -> tuple[SubsetCriteria, list[str]]:
    """``--exclude-generated-by`` values checked against what they are matched with: the generating
    models and their licenses of the store's sources, the catalogue's license ids and hub models. A
    value in another case is taken in the known spelling where only one matches (a note says so); a
    value that matches nothing is refused, since it would exclude nothing."""
    if not c.exclude_generated_by:
        return c, []
    in_store = con.execute("""SELECT DISTINCT generated_by_model, generated_by_license FROM current_sources
                              WHERE generated_by_model IS NOT NULL OR generated_by_license IS NOT NULL
                              ORDER BY ALL""").fetchall()
    known = {v for row in in_store for v in row if v} | set(catalogue.licenses)
    known |= {m for lic in catalogue.licenses.values() for m in lic.hub_models}
    values, notes = [], []
    for value in c.exclude_generated_by:
        if value in known:
            values.append(value)
            continue
        same = sorted({k for k in known if k.lower() == value.lower()})
        if len(same) > 1:
            raise JcurateError(f"--exclude-generated-by {value}: which one? {' or '.join(same)} (the case decides)")
        if not same:
            listed = "; ".join(f"{m} ({lic})" if m and lic else (m or lic) for m, lic in in_store) or "none"
            raise JcurateError(f"--exclude-generated-by {value}: no generating model or license of that name, so it "
                               f"would exclude nothing. The store's generating models (their licenses): {listed}; "
                               f"or a license id of `jcurate licenses list`")
        values.append(same[0])
        notes.append(f"--exclude-generated-by {value}: taken as {same[0]}")
    return dataclasses.replace(c, exclude_generated_by=tuple(values)), notes


def size_note(c: SubsetCriteria, run_id: str, n: int, eligible: int) -> str | None:
    """Why a subset has fewer records than the ``k`` it asked for (None where it has them): the pool
    of kept records that match its criteria was smaller, or ``--diversity`` skipped records. Stored in
    ``subsets.size_note``; the CLI warns with it, the NOTICE and the dataset card state it."""
    asked = c.top_k if c.top_k is not None else c.random
    if asked is None or n >= asked:
        return None
    criteria = [f"license use {c.license_use}" if c.license_use else "any license",
                "no share-alike" if c.no_share_alike else None,
                f"not generated by or under {', '.join(c.exclude_generated_by)}" if c.exclude_generated_by else None,
                f"a `{c.score}` score" if c.top_k is not None and c.score else None]
    pool = f"kept records of run {run_id} match the criteria ({', '.join(x for x in criteria if x)})"
    walk = f"the diversity walk (cosine distance {c.diversity}) kept {n}"
    if eligible < asked:
        why = f"only {eligible} {pool}" + (f" and {walk} of them" if c.diversity is not None else "")
    else:
        why = f"{eligible} {pool}, of which {walk}"
    return f"asked for {asked}, {why}: the subset has {n}"


def default_score(con, run_id: str) -> str:
    """The ranking ``--top-k`` uses without ``--score``: the store's classifier where it scored this
    run's kept records (it learned this store's own labels), else the shipped scorer."""
    for scorer in ("classifier", "shipped"):
        if con.execute("""SELECT 1 FROM scores s JOIN record_fate f ON f.record_id = s.record_id AND f.run_id = ?
                          WHERE f.kept AND s.scorer = ? LIMIT 1""", [run_id, scorer]).fetchone():
            return scorer
    raise JcurateError(f"--top-k needs scores and no kept record of run {run_id} has any: name one with --score, "
                       f"or score the run (`jcurate classifier score`, or re-run with scoring.shipped: true)")


def select_members(con, c: SubsetCriteria, run_id: str) -> list[tuple[str, float | None]]:
    """(record_id, score) of the run's kept records, in rank order."""
    if c.top_k is not None and c.random is not None:
        raise JcurateError("--top-k and --random are alternatives: pick one")
    if c.per_source and c.diversity is not None:
        raise JcurateError("--diversity walks one ranking over all sources; per-source quotas are an alternative: "
                           "pick one")
    if c.quota_min_score is not None and not (c.per_source and c.top_k is not None):
        raise JcurateError("--quota-min-score sets the per-source quotas of a top-k: add --per-source and --top-k N")
    if c.top_k is not None and not c.score:
        raise JcurateError("--top-k needs --score NAME (a scorer in the store: shipped, classifier, judge, label)")
    where = ["f.run_id = $run", "f.kept"]
    params: dict = {"run": run_id}
    if c.license_use:
        if c.license_use not in LADDER:
            raise JcurateError(f"--license-use must be one of {', '.join(LADDER)}, got {c.license_use!r}")
        # every license that governs the record (source and generating model) must be admitted
        levels = [u for u, rank in USE_RANK.items() if u != "unspecified" and rank <= LADDER[c.license_use]]
        where.append("ls.use IN $levels AND (lm.use IS NULL OR lm.use IN $levels)")
        params["levels"] = levels
    if c.no_share_alike:
        where.append("NOT ls.share_alike AND NOT coalesce(lm.share_alike, false)")
    for i, excluded in enumerate(c.exclude_generated_by):
        where.append(f"coalesce(rl.generated_by_model, '') <> $ex{i} AND coalesce(rl.model_license, '') <> $ex{i}")
        params[f"ex{i}"] = excluded
    score_sql = "NULL::DOUBLE"
    order = "rl.record_id"
    if c.score:
        if not con.execute("SELECT 1 FROM scores WHERE scorer = ? LIMIT 1", [c.score]).fetchone():
            known = [r[0] for r in con.execute("SELECT DISTINCT scorer FROM scores").fetchall()]
            raise JcurateError(f"no scores named {c.score!r} in the store (scorers: {', '.join(known) or 'none yet'})")
        score_sql, order = "sc.score", "sc.score DESC, md5(rl.record_id)"  # ties: no source favoured
        where.append("sc.score IS NOT NULL")
        params["scorer"] = c.score
    if c.random is not None:
        order = "md5(rl.record_id || ':' || $seed)"
        params["seed"] = str(c.seed)
    limit = c.top_k if c.top_k is not None else c.random
    scores_join = ""
    if c.score:
        scores_join = """LEFT JOIN (SELECT record_id, arg_max(score, created_at) AS score FROM scores
                                    WHERE scorer = $scorer GROUP BY record_id) sc ON sc.record_id = rl.record_id"""
    stratified = c.per_source and c.top_k is not None
    sql = f"""
        SELECT rl.record_id, {score_sql} AS score, rl.source_id
        FROM record_fate f
        JOIN record_license rl USING (record_id)
        JOIN licenses ls ON ls.license_id = rl.source_license
        LEFT JOIN licenses lm ON lm.license_id = rl.model_license
        {scores_join}
        WHERE {' AND '.join(where)}
        ORDER BY {order}
        {f'LIMIT {int(limit)}' if limit is not None and c.diversity is None and not stratified else ''}"""
    rows = con.execute(sql, params).fetchall()
    if stratified:
        rows = per_source_top(rows, c.top_k, c.quota_min_score)
    return [(r[0], r[1]) for r in rows]


def per_source_top(rows: list[tuple], k: int, min_score: float | None = None) -> list[tuple]:
    """The best of each source, ``k`` in all, each source's quota in proportion to its share of
    ``rows`` (largest remainder): a scorer that is not calibrated across datasets then ranks only
    within each, and the subset keeps the pool's mix. ``rows``: (record_id, score, source_id) in rank
    order; the result keeps that order.

    With ``min_score`` the shares are counted only over the records scoring at least that: the quotas
    follow the mix of what the scorer rates good, so a source it rates poor throughout (chit-chat, span
    answers, for an instruction scorer) gets a small quota or none, while a large source of good records
    keeps its share (where a global top-k would take most of ``k`` from the one source the scorer
    favours). Where a source holds fewer records than its quota, the places left go to the best of the
    rest in rank order, so the result has ``k`` records whenever ``rows`` has.

    >>> rows = [("a1", 5, "a"), ("b1", 4, "b"), ("a2", 3, "a"), ("a3", 2, "a"), ("b2", 1, "b"), ("a4", 0, "a")]
    >>> [r[0] for r in per_source_top(rows, 3)]
    ['a1', 'b1', 'a2']
    >>> [r[0] for r in per_source_top(rows, 2, min_score=3)]
    ['a1', 'b1']
    >>> [r[0] for r in per_source_top(rows, 3, min_score=4.5)]
    ['a1', 'a2', 'a3']
    >>> [r[0] for r in per_source_top([("a1", 5, "a"), ("b1", 4, "b"), ("b2", 3, "b"), ("b3", 2, "b")], 3, 5)]
    ['a1', 'b1', 'b2']
    """
    sizes: dict[str, int] = {}
    for r in rows:
        if min_score is None or (r[1] is not None and r[1] >= min_score):
            sizes[r[2]] = sizes.get(r[2], 0) + 1
    if not sizes:
        raise JcurateError(f"no eligible record scores {min_score} or more: lower --quota-min-score, or take the "
                           f"global top-k (--global)")
    total = sum(sizes.values())
    exact = {src: k * n / total for src, n in sizes.items()}
    quota = {src: int(q) for src, q in exact.items()}
    for src in sorted(exact, key=lambda s: (-(exact[s] - quota[s]), s))[:k - sum(quota.values())]:
        quota[src] += 1
    taken: dict[str, int] = {}
    chosen = []
    for i, r in enumerate(rows):
        if taken.get(r[2], 0) < quota.get(r[2], 0):
            taken[r[2]] = taken.get(r[2], 0) + 1
            chosen.append(i)
    if len(chosen) < k:  # a source short of its quota: the best of the rest fill its places
        picked = set(chosen)
        chosen += [i for i in range(len(rows)) if i not in picked][:k - len(chosen)]
    return [rows[i] for i in sorted(chosen)]


def _diverse(con, members: list[tuple[str, float | None]], c: SubsetCriteria) -> list[tuple[str, float | None]]:
    from curate.scoring.embeddings import Embedder, cached_embeddings, diverse_selection

    if not 0 < c.diversity < 1:
        raise JcurateError(f"--diversity is a cosine distance between 0 and 1, got {c.diversity}")
    texts = dict((r[0], (r[1], r[2])) for r in con.execute(
        """SELECT record_id, content_hash, concat_ws('\n', instruction, input, output) FROM records
           WHERE record_id IN (SELECT unnest(?))""", [[m[0] for m in members]]).fetchall())
    ranked = [(rid, *texts[rid]) for rid, _ in members]
    vectors = cached_embeddings(con, Embedder(c.embedding_backend, c.embedding_model), [(h, t) for _, h, t in ranked])
    limit = c.top_k if c.top_k is not None else c.random
    return [members[i] for i in diverse_selection(ranked, vectors, c.diversity, limit)]


def export_rows(con, subset: str) -> list[dict]:
    rows = con.execute(
        """SELECT m.rank, m.record_id, rec.source_id, rl.license, rl.source_license, rl.model_license,
                  rec.generated_by, rec.instruction, rec.input, rec.output, rec.messages, m.score
           FROM subset_members m JOIN records rec USING (record_id) JOIN record_license rl USING (record_id)
           WHERE m.subset = ? ORDER BY m.rank""", [subset]).fetchall()
    cols = ["rank", "record_id", "source_id", "license", "source_license", "model_license", "generated_by",
            "instruction", "input", "output", "messages", "score"]
    out = []
    for r in rows:
        d = dict(zip(cols, r))
        d["messages"] = json.loads(d["messages"]) if d["messages"] else None
        out.append(d)
    return out


def write_export(rows: list[dict], path: Path) -> tuple[Path, Path]:
    """Writes the rows; returns where the subset's NOTICE and dataset card go: inside an export
    folder (``NOTICE.md``, ``README.md``), beside a file (``<stem>.NOTICE.md``, ``<stem>.README.md``),
    so two exports into one folder never overwrite each other's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    beside = (path.with_name(f"{path.stem}.NOTICE.md"), path.with_name(f"{path.stem}.README.md"))
    if path.suffix == ".jsonl":
        with open(path, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        return beside
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist([{**r, "messages": json.dumps(r["messages"], ensure_ascii=False)
                                       if r["messages"] else None} for r in rows])
        pq.write_table(table, path)
        return beside
    import datasets

    datasets.disable_progress_bars()
    datasets.Dataset.from_list(
        [{**r, "messages": json.dumps(r["messages"], ensure_ascii=False) if r["messages"] else None} for r in rows]
    ).save_to_disk(str(path))
    return path / "NOTICE.md", path / "README.md"


def create_subset(db: str | Path, criteria: SubsetCriteria, catalogue: Catalogue, out: Path | None = None,
                  replace: bool = False) -> dict:
    """Selects the subset, stores it and writes its export, all or nothing: an export that fails leaves
    no subset in the store (a ``replace``d one stays as it was) and removes what it had written, so the
    same command can be run again. ``result["notes"]``: lines to show the user (a subset short of the k
    it asked for, an exclusion value taken in its catalogue spelling)."""
    if not Path(db).is_file():  # a writing connection would create an empty store
        raise JcurateError(f"no store at {db}: run `jcurate run` first (or pass --db)")
    check_size_asked(criteria)
    if out is not None:
        export_form(Path(out))
    con = connect(db)
    try:
        if subset_exists(con, criteria.name) and not replace:
            raise JcurateError(f"a subset named {criteria.name!r} exists already (pass --replace to rebuild it)")
        run_id = resolve_run(con, criteria.run_id)
        criteria, notes = known_exclusions(con, criteria, catalogue)
        if criteria.top_k is not None and not criteria.score:
            criteria = dataclasses.replace(criteria, score=default_score(con, run_id))
        members = select_members(con, criteria, run_id)
        eligible = len(members)
        if criteria.diversity is not None:
            members = _diverse(con, members, criteria)
        if not members:
            raise JcurateError(f"no kept record matches the criteria of subset {criteria.name!r}")
        note = size_note(criteria, run_id, len(members), eligible)
        result = {"name": criteria.name, "run_id": run_id, "n_records": len(members), "score": criteria.score,
                  "size_note": note, "notes": notes + ([f"subset {criteria.name!r}: {note}"] if note else [])}
        with transaction(con):
            con.execute("DELETE FROM subset_members WHERE subset = ?", [criteria.name])
            con.execute("DELETE FROM subsets WHERE name = ?", [criteria.name])
            insert_row(con, "subsets", dict(
                name=criteria.name, run_id=run_id, created_at=datetime.now(timezone.utc),
                criteria=json.dumps(asdict(criteria)), n_records=len(members), size_note=note,
                export_path=str(out) if out else None))
            insert_rows(con, "subset_members", [dict(subset=criteria.name, record_id=rid, rank=rank, score=score)
                                                for rank, (rid, score) in enumerate(members, start=1)])
            if out is not None:  # in the transaction: a failed export rolls the subset back
                result.update(export_subset(con, criteria.name, Path(out), catalogue))
        return result
    finally:
        con.close()


def export_subset(con, name: str, out: Path, catalogue: Catalogue) -> dict:
    """Writes the subset's records, NOTICE and dataset card. An ``OSError`` (a folder that cannot be
    made, no permission, a full disk) becomes one line naming the path, after what this export had
    created is removed (files that were there before it are not restored)."""
    from licenses.dataset_card import dataset_card
    from licenses.notice import subset_notice

    created = export_leftovers(out)
    try:
        rows = export_rows(con, name)
        notice_path, card_path = write_export(rows, out)
        notice_path.write_text(subset_notice(con, name, catalogue), encoding="utf-8")
        card_path.write_text(dataset_card(con, name, catalogue), encoding="utf-8")
    except BaseException as e:
        for path in created:
            remove_path(path)
        if not isinstance(e, OSError):
            raise
        where = f" ({e.filename})" if getattr(e, "filename", None) and str(e.filename) != str(out) else ""
        raise JcurateError(f"cannot write the export {out}: {e.strerror or first_line(e)}{where}; subset {name!r} "
                           f"was not stored: fix --out (or free space) and run the same command again") from None
    return {"export": str(out), "notice": str(notice_path), "card": str(card_path)}


def export_leftovers(out: Path) -> list[Path]:
    """What an export to ``out`` may create that is not there yet: the topmost folder above ``out``
    that does not exist (all it writes lies under it), else ``out`` and the NOTICE and card beside it."""
    top = None
    for folder in out.parents:
        if folder.exists():
            break
        top = folder
    if top is not None:
        return [top]
    return [p for p in (out, out.with_name(f"{out.stem}.NOTICE.md"), out.with_name(f"{out.stem}.README.md"))
            if not p.exists()]


def remove_path(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass  # best effort: the export's own error is what the user needs to see
