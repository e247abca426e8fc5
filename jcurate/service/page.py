"""The provenance page: server-rendered HTML and inline SVG, no JavaScript, every value escaped.

``/`` has a search box (a record id or a text fragment), per source a chart of kept and
dropped-by-stage records and of its score distribution, the sources x licenses x
kept/dropped table of the latest run and the subsets with their obligations;
``/records/ID`` shows one record: its text first, then, for a duplicate, the survivor's text
beside it with the differing parts marked and the similarity that decided, then its
provenance; ``/subsets/NAME`` a subset and its NOTICE.md.
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
.side { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; max-width: 90rem; }
.side pre { max-width: none; margin: 0; }
mark { background: #ffe08a; } mark.gone { background: #f6c1c1; }
.charts { display: flex; flex-wrap: wrap; gap: 1.5rem; }
.chart { border: 1px solid #ddd; padding: .5rem; } .chart h3 { margin: 0 0 .3rem; font-size: 1rem; }
.legend span { display: inline-block; margin-right: .6rem; font-size: .8rem; }
.legend i { display: inline-block; width: .7rem; height: .7rem; margin-right: .2rem; }
"""
# one colour per fate, the same in every chart and legend
COLOURS = {"kept": "#2e8b57", "read": "#6c757d", "quality": "#e07b39", "language": "#8e6cc0",
           "exact_dedup": "#3f7fbf", "near_dedup": "#72b0e0", "decontamination": "#c0392b"}


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
        found = provenance.search_results(con, q.strip()) if q.strip() else {"results": [], "truncated": False}
        results = found["results"]
        shown = (f"the first {len(results)}; more match (GET /v1/records?q=…&amp;limit=500 gives up to 500)"
                 if found["truncated"] else str(len(results)))
        parts.append(f"<h2>Results for “{escape(q)}” ({shown})</h2>")
        parts.append(_table(results, ["record_id", "source_id", "license", "fate", "dropped_at", "reason", "preview"],
                            {"record_id": lambda r: _record_link(r["record_id"]), "fate": lambda r: _fate(r["kept"])}))
    run = latest_run_id(con)
    parts.append(f"<h2>Per source in the latest run <small>({_v(run)})</small></h2>")
    parts.append(_charts(provenance.source_charts(con)))
    parts.append(f"<h2>Sources × licenses in the latest run <small>({_v(run)})</small></h2>")
    parts.append(_table(provenance.sources_overview(con),
                        ["source_id", "name", "source_license", "generated_by_model", "effective_license", "records",
                         "kept", "dropped", "dropped_by_stage"],
                        {"dropped_by_stage": lambda r: " · ".join(
                            f'<a href="{_drops_url(r["source_id"], k)}">{escape(k)} {v}</a>'
                            for k, v in r["dropped_by_stage"].items()) or "–"}))
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
    parts = [_search_form(None), "<h2>Text</h2>"]
    dup = found.get("duplicate_of")
    if dup:
        parts.append(_duplicate(rec, dup))
    else:
        parts.append(f'<pre id="text">{_v(rec["text"])}</pre>')
    parts.append("<h2>Where it came from</h2><table>")
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
    return _page(f"Record {rec['record_id']}", "".join(parts))


def _marked(a: str, b: str) -> tuple[str, str]:
    """Both texts escaped, with the characters that differ marked (``difflib`` on characters)."""
    from difflib import SequenceMatcher

    matcher = SequenceMatcher(None, a, b, autojunk=False)
    left, right = [], []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            left.append(escape(a[i1:i2]))
            right.append(escape(b[j1:j2]))
            continue
        if i2 > i1:
            left.append(f"<mark>{escape(a[i1:i2])}</mark>")
        if j2 > j1:
            right.append(f'<mark class="gone">{escape(b[j1:j2])}</mark>')
    return "".join(left), "".join(right)


def _duplicate(rec: dict, dup: dict) -> str:
    survivor = dup["survivor"]
    limit = 6000  # a character diff of two long texts would hold the page up
    mine, theirs = _marked((rec["text"] or "")[:limit], (survivor["text"] or "")[:limit])
    sim = dup["similarity"]
    if "content" in sim:
        decided = f"exact duplicate: {escape(sim['content'])}"
    else:
        decided = (f"near duplicate: {escape(dup['measure'])} — prompt {sim['prompt']}, context {sim['context']}, "
                   f"answer {sim['answer']} (each must reach {dup['min_jaccard']})")
    return (f'<p id="duplicate">Dropped at <b>{escape(dup["stage"])}</b> as a duplicate of '
            f'{_record_link(survivor["record_id"])} ({escape(survivor["source_id"])}), which was kept. '
            f'<span id="similarity">{decided}</span>. Marked: what differs.</p>'
            f'<div class="side"><div><h3>this record</h3><pre id="text">{mine}</pre></div>'
            f'<div><h3>survivor {escape(survivor["record_id"])}</h3><pre id="survivor">{theirs}</pre></div></div>')


def _drops_url(source: str | None, stage: str | None, reason: str | None = None, **more) -> str:
    query = {"source": source, "stage": stage, "reason": reason, **more}
    return "/drops?" + "&amp;".join(f"{k}={quote(str(v), safe='')}" for k, v in query.items() if v not in (None, ""))


def drops_not_found(message: str) -> str:
    return _page("Drops not found", f"<p>{escape(message)}.</p>")


def drops(found: dict) -> str:
    """A run's drops of a source at a stage, a page at a time or a random sample: the record's text first,
    then the reason and the value that decided; reading an audit sample is a click."""
    src, stage, reason = found["source_id"], found["stage"], found["reason"]
    title = "Drops: " + " · ".join(x for x in (src or "every source", stage or "every stage", reason) if x)
    parts = ["<p>Reasons: " + " · ".join(
        f'<a href="{_drops_url(src, stage, r["reason"])}">{escape(str(r["reason"]))} {r["n"]}</a>'
        for r in found["reasons"]) + f' · <a href="{_drops_url(src, stage)}">all</a></p>']
    seed = (found["seed"] or 0) + 1
    parts.append(f'<p id="views">{found["total"]} dropped. '
                 f'<a id="sample" href="{_drops_url(src, stage, reason, sample=50, seed=seed)}">a random sample of 50</a>'
                 f' · <a href="{_drops_url(src, stage, reason, page=1)}">in record order</a></p>')
    if found["sample"]:
        parts.append(f"<p>Random sample of {len(found['records'])} (seed {found['seed']}).</p>")
    else:
        page, per = found["page"], found["per_page"]
        pages = max(1, -(-found["total"] // per))
        nav = [f"page {page} of {pages}"]
        if page > 1:
            nav.insert(0, f'<a id="prev" href="{_drops_url(src, stage, reason, page=page - 1)}">previous</a>')
        if page < pages:
            nav.append(f'<a id="next" href="{_drops_url(src, stage, reason, page=page + 1)}">next</a>')
        parts.append('<p class="pager">' + " · ".join(nav) + "</p>")
    items = []
    for r in found["records"]:
        text = r["answer"] if len(r["answer"]) <= 1500 else r["answer"][:1500] + " …"
        items.append(f'<tr><td><pre class="answer">{escape(text)}</pre>'
                     f'<details><summary>prompt</summary><pre>{escape(r["prompt"][:3000])}</pre></details></td>'
                     f'<td>{_v(r["stage"])}<br><b>{_v(r["reason"])}</b></td><td class="value">{_v(r["value"])}</td>'
                     f"<td>{_record_link(r['record_id'])}</td></tr>")
    parts.append('<table id="drops"><thead><tr><th>answer (text first)</th><th>stage / reason</th>'
                 "<th>value that decided</th><th>record</th></tr></thead><tbody>" + "".join(items) + "</tbody></table>"
                 if items else "<p>none</p>")
    return _page(title, "".join(parts))


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


def _legend() -> str:
    return '<p class="legend">' + "".join(f'<span><i style="background:{c}"></i>{escape(k)}</span>'
                                          for k, c in COLOURS.items()) + "</p>"


def _fate_bar(fates: dict[str, int], width: int = 320, height: int = 18) -> str:
    total = sum(fates.values()) or 1
    x, rects = 0.0, []
    for fate in COLOURS:
        n = fates.get(fate, 0)
        if not n:
            continue
        w = width * n / total
        rects.append(f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="{height}" fill="{COLOURS[fate]}">'
                     f"<title>{escape(fate)}: {n}</title></rect>")
        x += w
    return (f'<svg class="fate-bar" width="{width}" height="{height}" role="img" '
            f'aria-label="kept and dropped by stage">{"".join(rects)}</svg>')


def _histogram(counts: list[int], width: int = 320, height: int = 70) -> str:
    """Bars of exact per-bin counts (`provenance.SCORE_BINS` bins over 1-5), each titled with its range and count."""
    if not any(counts):
        return "<p><small>no scores</small></p>"
    lo, hi, bins = provenance.SCORE_LO, provenance.SCORE_HI, len(counts)
    top = max(counts)
    bw = width / bins
    bars = "".join(f'<rect x="{i * bw + 1:.1f}" y="{height - 14 - (height - 14) * c / top:.1f}" width="{bw - 2:.1f}" '
                   f'height="{(height - 14) * c / top:.1f}" fill="#4a78b5"><title>{lo + i * (hi - lo) / bins:.2f}–'
                   f'{lo + (i + 1) * (hi - lo) / bins:.2f}: {c}</title></rect>' for i, c in enumerate(counts))
    axis = "".join(f'<text x="{(v - lo) / (hi - lo) * width:.0f}" y="{height - 2}" font-size="10" '
                   f'text-anchor="{"start" if v == 1 else "end" if v == 5 else "middle"}">{v}</text>' for v in (1, 2, 3, 4, 5))
    return (f'<svg class="score-histogram" width="{width}" height="{height}" role="img" '
            f'aria-label="score distribution">{bars}{axis}</svg>')


def _charts(sources: list[dict]) -> str:
    if not sources:
        return "<p>none</p>"
    cards = []
    for src in sources:
        fates = src["fates"]
        kept = fates.get("kept", 0)
        dropped = ", ".join(f"{k} {v}" for k, v in fates.items() if k != "kept") or "none dropped"
        cards.append(f'<div class="chart source-chart"><h3>{escape(src["source_id"])}</h3>'
                     f"<p><small>{kept} kept of {sum(fates.values())}; {escape(dropped)}</small></p>"
                     f"{_fate_bar(fates)}<p><small>{escape(src['scorer'] or 'score')} of the kept records "
                     f"({src['n_scored']})</small></p>{_histogram(src['bins'])}</div>")
    return _legend() + '<div class="charts">' + "".join(cards) + "</div>"
