"""The provenance page: server-rendered HTML, no JavaScript, every value escaped.

``/`` has a search box (a record id or a text fragment), the sources x licenses x
kept/dropped table of the latest run and the subsets with their obligations;
``/records/ID`` shows one record's provenance; ``/subsets/NAME`` a subset and its NOTICE.md.
"""

from __future__ import annotations

import json
from html import escape
from urllib.parse import quote

from jcurate.service import provenance
from store.runs import latest_run_id

STYLE = """
body { font-family: system-ui, 'Hiragino Sans', 'Noto Sans CJK JP', sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.kept { color: #16651e; font-weight: bold; } .dropped { color: #a11; font-weight: bold; }
pre { background: #f7f7f7; padding: .5rem; white-space: pre-wrap; max-width: 60rem; }
input[type=search] { width: 28rem; padding: .3rem; }
nav a { margin-right: 1rem; }
"""


def _page(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="ja"><head><meta charset="utf-8"><title>{escape(title)} · jcurate</title>'
            f"<style>{STYLE}</style></head><body><nav><a href=\"/\">jcurate provenance</a>"
            f'<a href="/openapi.json">API (OpenAPI)</a></nav><h1>{escape(title)}</h1>{body}</body></html>')


def _v(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, (dict, list)):
        return escape(json.dumps(value, ensure_ascii=False))
    return escape(str(value))


def _table(rows: list[dict], columns: list[str], render=None) -> str:
    if not rows:
        return "<p>none</p>"
    render = render or {}
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{render[c](r) if c in render else _v(r.get(c))}</td>" for c in columns)
                   + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fate(kept) -> str:
    if kept is None:
        return "–"
    return '<span class="kept">kept</span>' if kept else '<span class="dropped">dropped</span>'


def _record_link(record_id: str) -> str:
    return f'<a href="/records/{quote(record_id, safe="")}">{escape(record_id)}</a>'


def _search_form(q: str | None) -> str:
    return ('<form method="get" action="/" role="search"><label for="q">Record id or text fragment </label>'
            f'<input type="search" id="q" name="q" value="{escape(q or "")}" placeholder="jcurate-alpaca:qa-0001 / 長針">'
            ' <button type="submit">Search</button></form>')


def home(con, catalogue, q: str | None) -> str:
    parts = [_search_form(q)]
    if q:
        results = provenance.search(con, q.strip(), limit=100) if q.strip() else []
        shown = f"first {len(results)}" if len(results) == 100 else str(len(results))
        parts.append(f"<h2>Results for “{escape(q)}” ({shown})</h2>")
        parts.append(_table(results, ["record_id", "source_id", "license", "fate", "dropped_at", "reason", "preview"],
                            {"record_id": lambda r: _record_link(r["record_id"]), "fate": lambda r: _fate(r["kept"])}))
    run = latest_run_id(con)
    parts.append(f"<h2>Sources × licenses in the latest run <small>({_v(run)})</small></h2>")
    parts.append(_table(provenance.sources_overview(con),
                        ["source_id", "name", "source_license", "generated_by_model", "effective_license", "records",
                         "kept", "dropped", "dropped_by_stage"],
                        {"dropped_by_stage": lambda r: escape(" · ".join(f"{k} {v}" for k, v in r["dropped_by_stage"].items()))
                         or "–"}))
    subsets = provenance.subsets(con, catalogue)
    parts.append("<h2>Subsets and their obligations</h2>")
    parts.append(_table(subsets, ["name", "n_records", "licenses", "commercial", "redistribute", "obligations"], {
        "name": lambda r: f'<a href="/subsets/{quote(r["name"], safe="")}">{escape(r["name"])}</a>',
        "licenses": lambda r: _v(", ".join(r["obligations"]["licenses"])),
        "commercial": lambda r: "yes" if r["obligations"]["commercial"] else "<b>no</b>",
        "redistribute": lambda r: "yes" if r["obligations"]["redistribute"] else "<b>no</b>",
        "obligations": lambda r: "<br>".join(escape(x) for x in r["obligations"]["reasons"]) or "–",
    }))
    return _page("Provenance", "".join(parts))


def record(record_id: str, found: dict | None) -> str:
    if found is None:
        return _page("Record not found", f"<p>No record <code>{escape(record_id)}</code> in the store.</p>"
                                         + _search_form(record_id))
    rec, src, lic, fate = found["record"], found["source"] or {}, found["license"] or {}, found["fate"] or {}
    parts = [_search_form(None), "<h2>Where it came from</h2><table>"]
    rows = [
        ("record id", _v(rec["record_id"])),
        ("source", f'<span id="source">{_v(rec["source_id"])}</span> — {_v(src.get("name"))}'),
        ("file, row", f'{_v(rec["file"])}, row {_v(rec["row"])}'),
        ("source URL", _v(src.get("url"))),
        ("source license", _v(lic.get("source_license"))),
        ("generated by", f'{_v(src.get("generated_by_model"))} ({_v(lic.get("model_license"))})'
                         if src.get("generated_by_model") else "–"),
        ("effective license", f'<span id="license">{_v(lic.get("license"))}</span> — {_v(lic.get("name"))} '
                              f'(use: {_v(lic.get("use"))})'),
        ("attribution", _v(src.get("attribution"))),
        ("fate in the latest run that read it",
         f'{_fate(fate.get("kept"))} {_v(fate.get("run_id"))}'
         + (f' — at <b>{_v(fate.get("dropped_at"))}</b>: {_v(fate.get("reason"))} ({_v(fate.get("value"))})'
            if fate and not fate.get("kept") else "")),
    ]
    parts += [f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows]
    parts.append("</table>")
    parts.append("<h2>Decisions</h2>")
    parts.append(_table(found["decisions"], ["run_id", "stage", "kept", "reason", "value"],
                        {"kept": lambda d: _fate(d["kept"])}))
    parts.append("<h2>Scores</h2>")
    parts.append(_table(found["scores"], ["scorer", "model", "prompt_version", "score", "created_at"]))
    cluster = found["dup_cluster"]
    parts.append("<h2>Duplicate cluster</h2>")
    if cluster:
        parts.append(f"<p>{_v(cluster['stage'])} cluster {_record_link(cluster['cluster_id'])} in run "
                     f"{_v(cluster['run_id'])}</p>")
        parts.append(_table(cluster["members"], ["record_id", "stage", "is_survivor"],
                            {"record_id": lambda m: _record_link(m["record_id"])}))
    else:
        parts.append("<p>none</p>")
    parts.append("<h2>Subsets</h2>")
    parts.append(_table(found["subsets"], ["name", "rank", "score"], {
        "name": lambda s: f'<a href="/subsets/{quote(s["name"], safe="")}">{escape(s["name"])}</a>'}))
    parts.append("<h2>Text</h2>")
    parts.append(f"<pre>{_v(rec['text'])}</pre>")
    return _page(f"Record {rec['record_id']}", "".join(parts))


def subset(name: str, found: dict | None, notice: str | None) -> str:
    if found is None:
        return _page("Subset not found", f"<p>No subset <code>{escape(name)}</code>.</p>")
    ob = found["obligations"]
    parts = [
        f"<p>{_v(found['n_records'])} records from run {_v(found['run_id'])}, created {_v(found['created_at'])}.</p>",
        f"<p>Commercial use: <b>{'yes' if ob['commercial'] else 'no'}</b> · Redistribution: "
        f"<b>{'yes' if ob['redistribute'] else 'no'}</b></p>",
        "<h2>Criteria</h2>", f"<pre>{_v(found['criteria'])}</pre>",
        "<h2>Per source and license</h2>", _table(found["per_source"], ["source_id", "license", "records"]),
        "<h2>NOTICE.md</h2>", f"<pre>{escape(notice or '')}</pre>",
    ]
    return _page(f"Subset {name}", "".join(parts))
