"""``jcurate serve``, started for real on 127.0.0.1 against a store from the default run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import httpx
import pytest

from benchmarks.service.loadtest import hammer_while, run_load, start_server
from core.net import free_port
from store.query import run_query
from tests.conftest import run_cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _cjk_font() -> bool:
    """Whether fontconfig has a CJK font (fonts-noto-cjk): without one, screenshots show boxes."""
    try:
        return "CJK" in subprocess.run(["fc-list", ":lang=ja"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def store(default_run, tmp_path_factory):
    """A copy of the default run's store with two subsets (the service never writes it)."""
    _, db = default_run
    copy = tmp_path_factory.mktemp("serve") / "store.duckdb"
    shutil.copy(db, copy)
    assert run_cli("subset", "--db", str(copy), "--name", "top50-commercial", "--license-use", "commercial",
                   "--top-k", "50", "--score", "classifier") == 0
    assert run_cli("subset", "--db", str(copy), "--name", "random50", "--random", "50") == 0
    return copy


def _serve(db, *extra, log_path=None):
    port = free_port()
    log = open(log_path, "wb") if log_path else None
    proc = start_server(str(db), port, *extra, log=log)
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def server(store, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve-log") / "serve.log"
    proc, url = _serve(store, "--sql-timeout", "2", "--max-batch", "64", log_path=log)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server, timeout=60) as c:
        yield c


# kept for queries with parameters, which store.query.run_query does not take; every other query uses run_query
def _query(db, sql, params):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def test_security_headers(client):
    page = client.get("/")
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert client.get("/v1/sources").headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in client.get("/docs").headers, "Swagger UI loads its scripts from a CDN"


def test_healthz(client, store):
    h = client.get("/healthz").json()
    run_id = run_query(store, "SELECT run_id FROM latest_run")[1][0][0]
    assert h["status"] == "ok" and h["run_id"] == run_id
    assert h["indexed_records"] > 1000 and h["classifier"].startswith("clf-")


def test_score_decisions_and_duplicates(client, store):
    kept_id, instruction, output = run_query(store, """
        SELECT r.record_id, r.instruction, r.output FROM records r JOIN record_fate f USING (record_id)
        WHERE f.kept AND r.source_id = 'jcurate-alpaca' AND length(r.output) > 120 ORDER BY r.record_id LIMIT 1""")[1][0]
    near_variant = output[:-8] + "。以上です。"  # a few characters changed: a near, not an exact, copy
    records = [
        {"id": "copy", "instruction": instruction, "output": output},
        {"id": "variant", "instruction": instruction, "output": near_variant},
        {"id": "zh", "instruction": "请介绍一下北京的历史和文化。", "output": "北京是中国的首都，有三千多年的建城史。"},
        {"id": "bad", "instruction": "出力がありません"},
        {"id": "chat", "messages": [{"role": "human", "content": "おすすめの勉強法を教えてください。"},
                                     {"role": "gpt", "content": "毎日少しずつ復習し、声に出して説明してみることです。"}]},
        {"id": "leak", "instruction": json.loads(Path("data/eval/elyza_style.jsonl").read_text(encoding="utf-8")
                                                 .splitlines()[0])["input"],
         "output": "評価セットの問題文をそのまま学習データに入れた例です。"},
        {"id": "truncated", "instruction": "東京について説明してください。",
         "output": "東京は日本の首都であり、政治と経済の中心地です。人口は約1400万人で、世界でも有数の"},
    ]
    r = client.post("/v1/score", json={"records": records})
    assert r.status_code == 200, r.text
    res = {x["id"]: x for x in r.json()["results"]}
    assert [x["index"] for x in r.json()["results"]] == list(range(len(records)))

    copy = res["copy"]
    assert copy["verdict"] == {"kept": False, "dropped_at": "exact_dedup", "reason": "duplicate_of_stored"}
    assert copy["duplicates"]["exact"][0]["record_id"] == kept_id
    assert copy["duplicates"]["exact"][0]["kept_in_run"] is True

    variant = res["variant"]
    assert variant["duplicates"]["exact"] == []
    near = {h["record_id"]: h["jaccard"] for h in variant["duplicates"]["near"]}
    assert kept_id in near and 0.5 <= near[kept_id] < 1.0
    assert variant["verdict"]["dropped_at"] == "near_dedup"

    hidden = client.post("/v1/score", json={"records": [records[1]], "near_duplicates": 0}).json()["results"][0]
    assert hidden["duplicates"]["near"] == [] and hidden["verdict"]["dropped_at"] == "near_dedup"

    zh = res["zh"]
    assert zh["verdict"]["dropped_at"] == "language"
    assert zh["decisions"][2]["reason"] == "not_japanese_script" and "kana=0" in zh["decisions"][2]["value"]

    bad = res["bad"]
    assert bad["verdict"] == {"kept": False, "dropped_at": "read", "reason": "malformed_record"}
    assert "records[3]" in bad["decisions"][0]["value"] and "'output'" in bad["decisions"][0]["value"]
    assert bad["classifier"] is None

    chat = res["chat"]
    assert chat["verdict"]["kept"] is True
    assert chat["normalised"]["messages"][0]["role"] == "user"

    assert res["truncated"]["verdict"] == {"kept": False, "dropped_at": "quality", "reason": "truncated_output"}
    leak = res["leak"]["decisions"][-1]
    assert leak["stage"] == "decontamination" and leak["kept"] is False and leak["value"] == "elyza_style#1: whole prompt"
    assert [d["stage"] for d in chat["decisions"]] == ["read", "quality", "language", "exact_dedup", "near_dedup",
                                                      "decontamination"]


def test_score_classifier_matches_the_cli_classifier(client, store):
    from curate.scoring.classifier import QualityClassifier

    path = run_query(store, "SELECT path FROM classifier_models ORDER BY trained_at DESC LIMIT 1")[1][0][0]
    rows = run_query(store, "SELECT instruction, output FROM records WHERE source_id = 'jcurate-labelled' "
                         "AND messages IS NULL ORDER BY record_id LIMIT 8")[1]
    records = [{"instruction": i, "output": o} for i, o in rows]
    results = client.post("/v1/score", json={"records": records}).json()["results"]
    expected = QualityClassifier(path).score([x["normalised"]["text"] for x in results])
    assert [x["classifier"]["score"] for x in results] == pytest.approx(expected.tolist(), abs=1e-4)


def test_score_shipped_is_the_score_the_run_stored(client, store):
    """The same kept records, single-turn and conversations, as the run stored them: same shipped score."""
    rows = run_query(store, """SELECT r.instruction, r.input, r.output, r.messages, s.score FROM records r
                            JOIN scores s ON s.record_id = r.record_id AND s.scorer = 'shipped'
                            QUALIFY row_number() OVER (PARTITION BY r.messages IS NULL ORDER BY r.record_id) <= 6""")[1]
    assert any(m for *_, m, _ in rows) and any(not m for *_, m, _ in rows)
    records = [{"messages": json.loads(m)} if m else {"instruction": i, "input": x, "output": o}
               for i, x, o, m, _ in rows]
    answer = client.post("/v1/score", json={"records": records}).json()
    assert answer["shipped_scorer"] == "jquality@v5"
    assert [r["shipped"]["score"] for r in answer["results"]] == pytest.approx([s for *_, s in rows], abs=1e-4)


def test_score_accepts_sharegpt_turns_like_the_run(client, store):
    """ShareGPT `{from, value}` turns, as `jcurate run` reads them: the same decisions and scores as the
    same conversations in `{role, content}` form, and the score the run stored for them."""
    rows = run_query(store, """SELECT r.messages, s.score FROM records r
                            JOIN scores s ON s.record_id = r.record_id AND s.scorer = 'shipped'
                            WHERE r.messages IS NOT NULL ORDER BY r.record_id LIMIT 4""")[1]
    assert rows
    speaker = {"user": "human", "assistant": "gpt", "system": "system"}
    chat = [{"messages": json.loads(m)} for m, _ in rows]
    sharegpt = [{"messages": [{"from": speaker[t["role"]], "value": t["content"]} for t in rec["messages"]]}
                for rec in chat]
    as_chat = client.post("/v1/score", json={"records": chat})
    as_sharegpt = client.post("/v1/score", json={"records": sharegpt})
    assert as_sharegpt.status_code == 200, as_sharegpt.text
    a, b = as_chat.json()["results"], as_sharegpt.json()["results"]
    for x, y in zip(a, b, strict=True):
        assert y["verdict"] == x["verdict"] and y["decisions"] == x["decisions"]
        assert y["shipped"] == x["shipped"] and y["classifier"] == x["classifier"]
        assert y["normalised"] == x["normalised"]
    assert [r["shipped"]["score"] for r in b] == pytest.approx([s for _, s in rows], abs=1e-4)
    # a turn with neither form's role is still refused, naming the field
    r = client.post("/v1/score", json={"records": [{"messages": [{"speaker": "human", "value": "x"}]}]})
    assert r.status_code == 422 and "role" in json.dumps(r.json())


def test_score_limits_and_bad_bodies(client):
    one = {"instruction": "日本の首都はどこですか。", "output": "東京です。"}
    r = client.post("/v1/score", json={"records": [one] * 65})
    assert r.status_code == 413 and "65 records" in r.json()["detail"] and "64" in r.json()["detail"]
    long = {"instruction": "説明してください。", "output": "あ" * 25_000}
    r = client.post("/v1/score", json={"records": [one, long]})
    assert r.status_code == 413 and "records[1]" in r.json()["detail"] and "--max-text-chars" in r.json()["detail"]
    r = client.post("/v1/score", content=b'{"records": [', headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = client.post("/v1/score", json={"records": [{"instruction": 5, "output": "x"}]})
    assert r.status_code == 422 and "instruction" in json.dumps(r.json())
    r = client.post("/v1/score", content=b'{"records": [{"instruction": "\\ud800", "output": "x"}]}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 422 and "surrogate" in r.json()["detail"]
    r = client.post("/v1/score", json={"records": [one], "judge": True})
    assert r.status_code == 422 and "judge" in r.json()["detail"]
    r = client.post("/v1/score", content=b"x" * (9 * 1024 * 1024), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "--max-body-bytes" in r.json()["detail"]

    def chunks():  # no Content-Length: the limit holds on the bytes read
        for _ in range(100):
            yield b"x" * (1024 * 1024)
    r = client.post("/v1/score", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in r.request.headers
    assert r.status_code == 413 and "--max-body-bytes" in r.json()["detail"]
    chunked_ok = client.post("/v1/score", content=iter([json.dumps({"records": [one]}).encode()]),
                             headers={"content-type": "application/json"})
    assert chunked_ok.status_code == 200, chunked_ok.text


def test_a_record_with_both_forms_is_a_422_naming_it(client):
    """instruction/output and messages together: which would be scored is not the user's guess to make."""
    both = {"instruction": "日本の首都は?", "output": "東京です。",
            "messages": [{"role": "user", "content": "日本の首都は?"}, {"role": "assistant", "content": "東京です。"}]}
    ok = {"instruction": "日本の首都は?", "output": "東京です。"}
    r = client.post("/v1/score", json={"records": [ok, both]})
    assert r.status_code == 422
    detail = r.json()["detail"][0]
    assert detail["loc"][:3] == ["body", "records", 1] and "not both" in detail["msg"]


def test_a_body_not_in_utf8_is_a_422_naming_the_encoding(client):
    """A Shift-JIS body (a Japanese user's legacy encoding) is refused as documented, naming the byte."""
    body = json.dumps({"records": [{"instruction": "日本の首都はどこですか。", "output": "東京です。"}]},
                      ensure_ascii=False)
    for path in ("/v1/score", "/v1/sql"):
        r = client.post(path, content=body.encode("shift_jis"), headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text
        assert "not valid UTF-8" in r.json()["detail"] and "Shift-JIS" in r.json()["detail"]
    # UTF-16, which JSON parsers detect, still reads
    r = client.post("/v1/score", content=body.encode("utf-16"), headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json()["results"][0]["verdict"]


def test_a_bad_rows_record_is_found_by_its_encoded_id(client, store):
    """A malformed row's id holds '#' (``jcurate-alpaca:#line-65``), which a URL would cut as a fragment:
    percent-encoded, the API finds it, with the reason it was dropped."""
    from urllib.parse import quote

    rid = run_query(store, "SELECT record_id FROM record_fate WHERE dropped_at = 'read' AND record_id LIKE '%#line-%' "
                        "ORDER BY record_id LIMIT 1")[1][0][0]
    r = client.get(f"/v1/records/{quote(rid, safe='')}")
    assert r.status_code == 200 and r.json()["record"]["record_id"] == rid
    assert r.json()["fate"]["dropped_at"] == "read"
    assert client.get(f"/v1/records/{rid}").status_code == 404  # unencoded: the path ends at the '#'


def test_record_provenance(client, store):
    # a near duplicate: dropped, with its cluster and the record kept in its place
    rid, survivor = run_query(store, "SELECT record_id, value FROM record_fate WHERE dropped_at = 'near_dedup' "
                                  "ORDER BY record_id LIMIT 1")[1][0]
    r = client.get(f"/v1/records/{rid}")
    assert r.status_code == 200
    body = r.json()
    src, lic = _query(store, "SELECT source_id, license FROM record_license WHERE record_id = ?", [rid])[0]
    assert body["record"]["record_id"] == rid and body["source"]["source_id"] == src
    assert body["license"]["license"] == lic and body["license"]["url"].startswith("https://")
    assert body["fate"]["kept"] is False and body["fate"]["dropped_at"] == "near_dedup"
    assert [d["stage"] for d in body["decisions"]][:2] == ["read", "quality"]
    members = {m["record_id"]: m["is_survivor"] for m in body["dup_cluster"]["members"]}
    assert members[rid] is False and members[survivor] is True

    # a model-generated record: the effective license is the model's terms; scores and subsets are listed
    gm = run_query(store, """SELECT m.record_id FROM subset_members m JOIN records r USING (record_id)
                          WHERE m.subset = 'random50' AND r.source_id = 'jcurate-synthetic' LIMIT 1""")[1]
    if gm:
        body = client.get(f"/v1/records/{gm[0][0]}").json()
        assert body["license"]["source_license"] == "CC-BY-4.0" and body["license"]["license"] == "Gemma"
        assert "random50" in [s["name"] for s in body["subsets"]]
        assert {s["scorer"] for s in body["scores"]} >= {"classifier"}

    r = client.get("/v1/records/no-such:record")
    assert r.status_code == 404 and "no-such:record" in r.json()["detail"]


def test_search(client, store):
    hits = client.get("/v1/records", params={"q": "鎌倉幕府"}).json()["results"]
    texts = dict(run_query(store, "SELECT record_id, text FROM records")[1])
    assert hits and all("鎌倉幕府" in texts[h["record_id"]] for h in hits)
    assert any(h["source_id"] == "jcurate-synthetic" and h["license"] == "Gemma" for h in hits)
    assert client.get("/v1/records", params={"q": "100%_no_such_text"}).json()["results"] == []
    # full-width digits are NFKC-folded like the stored text: １１９２ finds 1192
    wide = {h["record_id"] for h in client.get("/v1/records", params={"q": "（１１９２）"}).json()["results"]}
    assert wide and all("(1192)" in texts[r] for r in wide)


def test_search_finds_a_record_by_a_part_of_its_id(client, store):
    """A user who remembers part of an id (a source's prefix cut off, a row number) finds the record; the record
    whose id equals the query comes first."""
    record_id = run_query(store, "SELECT max(record_id) FROM records WHERE record_id LIKE 'jcurate-synthetic:%'")[1][0][0]
    part = record_id.split(":", 1)[1][1:]  # no source, first character cut
    hits = [h["record_id"] for h in client.get("/v1/records", params={"q": part, "limit": 500}).json()["results"]]
    texts = dict(run_query(store, "SELECT record_id, text FROM records")[1])
    assert record_id in hits and all(part.lower() in (h + texts[h]).lower() for h in hits)
    assert client.get("/v1/records", params={"q": record_id}).json()["results"][0]["record_id"] == record_id


def test_search_says_when_more_records_match_than_it_shows(client, store):
    """The API and the page show the same first 50, and both say when more match; a wider limit shows all."""
    counts = {q: _query(store, "SELECT count(*) FROM records WHERE text ILIKE ?", [f"%{q}%"])[0][0]
              for q in ("東京", "日本", "説明", "です。", "ます。", "。")}
    q, matching = next((q, n) for q, n in counts.items() if 50 < n <= 500)
    first = client.get("/v1/records", params={"q": q}).json()
    assert len(first["results"]) == first["limit"] == 50 and first["truncated"] is True
    every = client.get("/v1/records", params={"q": q, "limit": 500}).json()
    assert len(every["results"]) == matching and every["truncated"] is False
    assert every["results"][:50] == first["results"]
    html = client.get("/", params={"q": q}).text
    assert "(the first 50; more match" in html and html.count('href="/records/') >= 50
    few = client.get("/v1/records", params={"q": "鎌倉幕府"}).json()
    assert few["truncated"] is False and len(few["results"]) < 50


def test_sources_overview_counts_every_record(client, store):
    rows = client.get("/v1/sources").json()["sources"]
    n_read = run_query(store, "SELECT n_read FROM latest_run")[1][0][0]
    assert sum(r["records"] for r in rows) == n_read
    for r in rows:
        assert r["kept"] + r["dropped"] == r["records"]
        assert sum(r["dropped_by_stage"].values()) == r["dropped"]


def test_subsets(client, store):
    names = {s["name"]: s for s in client.get("/v1/subsets").json()["subsets"]}
    assert {"top50-commercial", "random50"} <= set(names)
    assert names["random50"]["n_records"] == 50 and "reasons" in names["random50"]["obligations"]
    top = client.get("/v1/subsets/top50-commercial").json()
    assert top["n_records"] == 50 and sum(x["records"] for x in top["per_source"]) == 50
    assert top["obligations"]["commercial"] is True and "CC-BY-NC-SA-4.0" not in top["obligations"]["licenses"]
    notice = client.get("/v1/subsets/top50-commercial/notice")
    assert notice.status_code == 200 and notice.headers["content-type"].startswith("text/markdown")
    assert notice.text.startswith("# NOTICE: subset `top50-commercial`")
    assert client.get("/v1/subsets/nope").status_code == 404
    assert client.get("/v1/subsets/nope/notice").status_code == 404


def test_sql_read_only_limits_and_errors(client, store):
    runs_before = run_query(store, "SELECT count(*) FROM runs")[1][0][0]
    r = client.post("/v1/sql", json={"query": "SELECT record_id FROM records ORDER BY record_id", "max_rows": 5})
    body = r.json()
    assert r.status_code == 200 and body["row_count"] == 5 and body["truncated"] is True and body["columns"] == ["record_id"]
    for write in ("CREATE TABLE t (a INT)", "INSERT INTO runs (run_id) VALUES ('x')", "DELETE FROM records",
                  "UPDATE records SET label = 5"):
        r = client.post("/v1/sql", json={"query": write})
        assert r.status_code == 403 and "read-only" in r.json()["detail"], write
    target = Path(store).parent / "leak.csv"
    r = client.post("/v1/sql", json={"query": f"COPY (SELECT * FROM records) TO '{target}'"})
    assert r.status_code == 403 and not target.exists()
    assert client.post("/v1/sql", json={"query": "SELECT * FROM read_csv('/etc/passwd')"}).status_code == 403
    r = client.post("/v1/sql", json={"query": "SELECT count(*) FROM range(10000000000) a, range(100) b"})
    assert r.status_code == 408 and "time limit" in r.json()["detail"]
    r = client.post("/v1/sql", content=b'{"query": ', headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = client.post("/v1/sql", json={"query": "SELEC 1"})
    assert r.status_code == 400 and "syntax" in r.json()["detail"].lower()
    r = client.post("/v1/sql", json={"query": "SELECT 'nan'::DOUBLE AS x, now() AS t"})
    assert r.status_code == 200 and r.json()["rows"][0][0] is None
    assert run_query(store, "SELECT count(*) FROM runs")[1][0][0] == runs_before  # nothing was written


def test_sql_runs_one_select_with_locked_settings_and_a_byte_cap(store):
    """DuckDB's parser types the statement (no keyword filter): one SELECT or EXPLAIN; the connection
    itself is read-only with external access off, so a SELECT cannot read files either."""
    from jcurate.service.store_access import QueryError, run_sql

    for query, status, words in [
        ("SELECT 1; SELECT 2", 422, "one statement per request, got 2"),
        ("SET memory_limit='100GB'", 403, "not SET"),
        ("SET threads=64; SELECT 1", 422, "one statement"),
        ("CREATE TEMP TABLE t AS SELECT 1", 403, "not CREATE"),
        ("SELECT * FROM read_csv('/etc/passwd')", 403, "read-only"),
    ]:
        with pytest.raises(QueryError) as e:
            run_sql(str(store), query, 10, 5.0)
        assert e.value.status == status and words in e.value.message, (query, e.value.message)
    capped = run_sql(str(store), "SELECT repeat('x', 1000) FROM range(100000)", 100_000, 10.0, max_bytes=50_000)
    assert capped["truncated_by"] == "bytes" and 40 <= capped["row_count"] < 50


def test_token(store, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    proc, url = _serve(store, "--token-file", str(token_file))
    try:
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}, "no store path or contents without the token"
        full = httpx.get(f"{url}/healthz", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        assert full["db"] == str(store) and full["run_id"]
        for method, path, kw in (("GET", "/v1/subsets", {}), ("POST", "/v1/sql", {"json": {"query": "SELECT 1"}}),
                                 ("GET", "/", {}), ("POST", "/v1/score", {"json": {"records": []}})):
            r = httpx.request(method, url + path, **kw)
            assert r.status_code == 401, path
            assert httpx.request(method, url + path, headers={"Authorization": "Bearer wrong"}, **kw).status_code == 401
            ok = httpx.request(method, url + path, headers={"Authorization": f"Bearer {TOKEN}"}, **kw)
            assert ok.status_code == 200, path
        # the page: ?token= once sets a cookie
        with httpx.Client(base_url=url, follow_redirects=True) as c:
            assert c.get("/", params={"token": TOKEN}).status_code == 200
            assert c.get("/v1/sources").status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_taken_or_impossible_port_is_refused_before_loading(server, store):
    """`jcurate serve` on the port a server already holds, or on one out of range: one line, rc 2, at once
    (the index is not loaded and no ready URL is printed)."""
    taken = server.rsplit(":", 1)[1]
    for port, expected in ((taken, f"--port {taken}: address 127.0.0.1:{taken} is already in use"),
                           ("70000", "--port 70000: out of range; pick a port from 1 to 65535")):
        done = subprocess.run([sys.executable, "-m", "jcurate.cli", "serve", "--db", str(store), "--port", port],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0] and "loading" not in done.stderr, done.stderr
    assert httpx.get(server + "/healthz").status_code == 200


def test_non_loopback_needs_a_token(store, capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("JCURATE_TOKEN", raising=False)
    assert run_cli("serve", "--db", str(store), "--host", "0.0.0.0") == 2
    assert "not a loopback address" in capsys.readouterr().err
    (tmp_path / "empty").write_text("\n", encoding="utf-8")
    assert run_cli("serve", "--db", str(store), "--token-file", str(tmp_path / "empty")) == 2
    assert "the file is empty" in capsys.readouterr().err
    assert run_cli("serve", "--db", str(store), "--token-file", str(tmp_path / "absent")) == 2
    assert "cannot read it" in capsys.readouterr().err
    assert run_cli("serve", "--db", str(store) + ".missing") == 2


def test_schemathesis_finds_no_server_error(server):
    """Property-based requests generated from /openapi.json; the check fails on any 5xx."""
    exe = Path(sys.executable).with_name("schemathesis")
    out = subprocess.run([str(exe), "run", f"{server}/openapi.json", "--checks", "not_a_server_error",
                          "--max-examples", "25", "--seed", "1", "--no-color"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    import re

    counts = re.search(r"(\d+) generated, (\d+) passed", out.stdout)
    assert counts and counts.group(1) == counts.group(2) and int(counts.group(1)) > 100, out.stdout[-2000:]


def test_drops_of_a_source_and_stage_are_a_click_away(client, store):
    """Audit in the browser: each stage's drop count on the home page links to that run's drops of the
    source, a page at a time or as a random sample, the answer first with the reason and the value."""
    source, stage, n = run_query(store, """SELECT r.source_id, f.dropped_at, count(*) FROM record_fate f
                                        JOIN records r USING (record_id)
                                        WHERE f.run_id = (SELECT run_id FROM latest_run) AND NOT f.kept
                                        GROUP BY ALL ORDER BY 3 DESC, 1, 2 LIMIT 1""")[1][0]
    home = client.get("/").text
    assert f"/drops?source={source}&amp;stage={stage}" in home
    api = client.get("/v1/drops", params={"source": source, "stage": stage}).json()
    assert api["total"] == n and sum(r["n"] for r in api["reasons"]) == n
    expected = _query(store, """SELECT r.record_id, f.reason, f.value FROM record_fate f JOIN records r USING (record_id)
                                WHERE f.run_id = (SELECT run_id FROM latest_run) AND r.source_id = ? AND f.dropped_at = ?
                                ORDER BY r.record_id LIMIT 50""", [source, stage])
    assert [(r["record_id"], r["reason"], r["value"]) for r in api["records"]] == [tuple(e) for e in expected]
    html = client.get("/drops", params={"source": source, "stage": stage}).text
    first = api["records"][0]
    assert first["record_id"] in html and "value that decided" in html
    assert html.index("answer (text first)") < html.index("value that decided")
    # one reason, and a random sample: the same records whatever the page, another seed another draw
    reason = api["reasons"][0]["reason"]
    by_reason = client.get("/v1/drops", params={"source": source, "stage": stage, "reason": reason}).json()
    assert by_reason["total"] == api["reasons"][0]["n"] and {r["reason"] for r in by_reason["records"]} == {reason}
    a = client.get("/v1/drops", params={"source": source, "stage": stage, "sample": 5, "seed": 1}).json()
    b = client.get("/v1/drops", params={"source": source, "stage": stage, "sample": 5, "seed": 1}).json()
    assert a["records"] == b["records"] and len(a["records"]) == min(5, n)
    assert client.get("/drops", params={"source": source, "stage": stage, "sample": 5}).status_code == 200
    assert client.get("/v1/drops", params={"sample": 0}).status_code == 422
    # every drop of the run, paged: the pages cover each record once
    total = run_query(store, "SELECT count(*) FROM record_fate WHERE run_id = (SELECT run_id FROM latest_run) "
                             "AND NOT kept")[1][0][0]
    seen = []
    for k in range(1, total // 50 + 2):
        seen += [r["record_id"] for r in client.get("/v1/drops", params={"page": k}).json()["records"]]
    assert len(seen) == len(set(seen)) == total


def _chart_counts(html: str) -> dict[str, list[tuple[float, int]]]:
    """Per source card on the home page: its histogram bars as (bin start, count), read from the bars' titles."""
    import re

    charts = {}
    for card in html.split('<div class="chart source-chart">')[1:]:
        source = re.search(r"<h3>(.*?)</h3>", card).group(1)
        charts[source] = [(float(lo), int(n)) for lo, n in re.findall(r"<title>([0-9.]+)–[0-9.]+: (\d+)</title>", card)]
    return charts


def test_score_charts_count_every_kept_record_exactly(store, tmp_path):
    """The home page's score histograms count all of the latest run's kept, scored records, also in a
    store whose score rows (other scorers, other runs) far outnumber them: no sample hides bars' records."""
    db = tmp_path / "many-scores.duckdb"
    shutil.copy(store, db)
    con = duckdb.connect(str(db))
    # 40 judge rows per record: ~40x more score rows than kept records, as a store with judges and reruns has
    con.execute("""INSERT INTO scores (record_id, scorer, score, run_id)
                   SELECT record_id, 'judge', 3.0, 'older-run' FROM records, range(40)""")
    con.close()
    kept_scored = dict(run_query(db, """
        SELECT r.source_id, count(*) FROM record_fate f JOIN records r USING (record_id)
        JOIN scores s ON s.record_id = f.record_id AND s.run_id = f.run_id AND s.scorer = 'classifier'
        WHERE f.run_id = (SELECT run_id FROM latest_run) AND f.kept GROUP BY 1""")[1])
    top = dict(run_query(db, """
        SELECT r.source_id, count(*) FROM record_fate f JOIN records r USING (record_id)
        JOIN scores s ON s.record_id = f.record_id AND s.run_id = f.run_id AND s.scorer = 'classifier'
        WHERE f.run_id = (SELECT run_id FROM latest_run) AND f.kept AND s.score >= 4.75 GROUP BY 1""")[1])
    assert run_query(db, "SELECT count(*) FROM scores")[1][0][0] > 20_000 and kept_scored
    proc, url = _serve(db)
    try:
        html = httpx.get(url + "/", timeout=60).text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    charts = _chart_counts(html)
    assert {s: sum(n for _, n in bars) for s, bars in charts.items() if bars} == kept_scored
    assert {s: sum(n for lo, n in bars if lo >= 4.75) for s, bars in charts.items() if s in top} == top
    for n in kept_scored.values():
        assert f"classifier of the kept records ({n})" in html


def test_drops_of_an_unknown_source_or_stage_are_a_404_naming_the_known_ones(client, store):
    sources = [s for (s,) in run_query(store, """SELECT DISTINCT r.source_id FROM record_fate f JOIN records r
                                             USING (record_id) WHERE f.run_id = (SELECT run_id FROM latest_run)
                                             ORDER BY 1""")[1]]
    for params, named in (({"source": "nope", "stage": "quality"}, ["nope", *sources]),
                          ({"source": sources[0], "stage": "bogus"}, ["bogus", "read", "near_dedup"]),
                          ({"stage": "bogus"}, ["bogus", "decontamination"])):
        api = client.get("/v1/drops", params=params)
        assert api.status_code == 404 and all(n in api.json()["detail"] for n in named), api.text
        html = client.get("/drops", params=params)
        assert html.status_code == 404 and all(n in html.text for n in named)
    # a known source at a known stage with no drops is still an answer: 0 dropped
    assert client.get("/v1/drops", params={"source": sources[0], "stage": "decontamination"}).status_code == 200


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)")
def test_page_in_headless_chromium(server, store):
    from playwright.sync_api import sync_playwright

    rid, src, lic = run_query(store, """SELECT l.record_id, l.source_id, l.license FROM record_license l
                                     JOIN records r USING (record_id)
                                     WHERE r.source_id = 'jcurate-synthetic' ORDER BY l.record_id LIMIT 1""")[1][0]
    fragment = _query(store, "SELECT substr(instruction, 1, 8) FROM records WHERE record_id = ?", [rid])[0][0]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page()
            page.goto(server + "/")
            assert "Sources × licenses" in page.inner_text("body")
            assert "top50-commercial" in page.inner_text("body")
            # search by a text fragment, then open the record
            page.fill("#q", fragment)
            page.click("button[type=submit]")
            page.wait_for_selector(f"a:text-is('{rid}')")
            page.click(f"a:text-is('{rid}')")
            page.wait_for_selector("#license")
            assert page.inner_text("#source") == src
            assert page.inner_text("#license") == lic == "Gemma"
            # search by record id
            page.fill("#q", rid)
            page.press("#q", "Enter")
            page.wait_for_selector(f"a:text-is('{rid}')")
            page.goto(server + "/subsets/top50-commercial")
            assert "NOTICE: subset" in page.inner_text("pre:last-of-type")
            # audit in the browser: from a stage's count on the home page to its drops, then a random sample
            page.goto(server + "/")
            page.locator("a[href^='/drops?']").first.click()
            page.wait_for_selector("#drops")
            assert page.locator("#drops tbody tr").count() >= 1
            page.click("#sample")
            page.wait_for_selector("#drops")
            assert "Random sample of" in page.inner_text("body")
        finally:
            browser.close()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)")
@pytest.mark.skipif(not _cjk_font(), reason="no CJK font (.ci/run installs fonts-noto-cjk): screenshots would show boxes")
def test_page_at_a_glance_screenshots(server, store, tmp_path):
    """The record page shows the text first and a near duplicate beside its survivor with the
    differences marked and the similarity; the home page a chart per source (inline SVG, no CDN)."""
    from playwright.sync_api import sync_playwright

    n_sources = run_query(store, "SELECT count(DISTINCT source_id) FROM records")[1][0][0]
    near, survivor = run_query(store, """SELECT record_id, value FROM record_fate WHERE dropped_at = 'near_dedup'
                                      AND run_id = (SELECT run_id FROM latest_run) ORDER BY record_id LIMIT 1""")[1][0]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu",
                                                                    "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(server + "/")
            assert page.locator("svg.fate-bar").count() == n_sources
            assert page.locator("svg.score-histogram").count() == n_sources
            assert page.locator("svg.fate-bar rect").count() >= n_sources
            home = tmp_path / "home.png"
            page.screenshot(path=str(home), full_page=True)
            page.goto(server + f"/records/{near}")
            body = page.inner_text("body")
            assert body.index("this record") < body.index("Where it came from"), "the text comes first"
            assert "near duplicate" in page.inner_text("#similarity") and "answer" in page.inner_text("#similarity")
            assert page.inner_text("#duplicate").count(survivor) == 1
            assert page.locator("#text mark").count() + page.locator("#survivor mark").count() > 0
            box_text, box_survivor = page.locator("#text").bounding_box(), page.locator("#survivor").bounding_box()
            assert box_survivor["x"] > box_text["x"] + box_text["width"] * 0.9, "side by side"
            record = tmp_path / "record.png"
            page.screenshot(path=str(record), full_page=True)
            # the drops of the stage with the most, in Japanese: a CJK font draws it (fonts-noto-cjk)
            page.goto(server + "/")
            page.locator("a[href^='/drops?']").first.click()
            page.wait_for_selector("#drops")
            assert any("\u3040" <= ch <= "\u9fff" for ch in page.inner_text("#drops")), "Japanese text on the page"
            drops = tmp_path / "drops.png"
            page.screenshot(path=str(drops), full_page=True)
        finally:
            browser.close()
    for shot in (home, record, drops):
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_bounded_load(server, store):
    rows = run_query(store, "SELECT instruction, output FROM records WHERE messages IS NULL AND output <> '' "
                         "ORDER BY record_id LIMIT 160")[1]
    batches = [[{"instruction": i + "?", "output": o} for i, o in rows[k:k + 16]] for k in range(0, 160, 16)]
    result = run_load(server, batches, requests=500, clients=8, time_limit=300)
    print(json.dumps(result))
    assert result["errors"] == 0 and result["ok"] == 500 and result["records"] == 500 * 16
    assert result["p50_ms"] > 0 and result["p99_ms"] >= result["p50_ms"] and result["records_per_s"] > 0


def test_worker_processes(store):
    proc, url = _serve(store, "--workers", "2")
    try:
        batch = {"records": [{"instruction": "日本の首都はどこですか。", "output": "東京です。首都機能が集まっています。"}]}
        for _ in range(4):
            r = httpx.post(f"{url}/v1/score", json=batch, timeout=60)
            assert r.status_code == 200 and r.json()["results"][0]["verdict"]["kept"] is True
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_judge_when_asked_and_configured(store, tmp_path):
    """The judge: a real OpenAI-compatible HTTP server (tiny model) named in --config; cached by content hash."""
    pytest.importorskip("torch")
    from tests.openai_server import ModelServer
    from train.tiny import build_tiny_model

    with ModelServer(str(build_tiny_model(tmp_path / "tiny"))) as model_server:
        config = tmp_path / "judge.yaml"
        config.write_text(f"judge:\n  backend: openai\n  model: tiny\n  base_url: {model_server.base_url}\n"
                          f"  top_logprobs: 1000\n  max_retries: 1\n", encoding="utf-8")
        proc, url = _serve(store, "--config", str(config))
        try:
            batch = {"records": [{"instruction": "日本の首都はどこですか。", "output": "東京です。"},
                                 {"instruction": "1+1は?", "output": "2です。"}], "judge": True}
            first = httpx.post(f"{url}/v1/score", json=batch, timeout=120).json()["results"]
            assert model_server.requests == 2
            for r in first:
                assert r["judge"]["model"] == "tiny" and r["judge"]["prompt_version"] == "ja-rubric-v1"
                assert 1.0 <= r["judge"]["score"] <= 5.0
            again = httpx.post(f"{url}/v1/score", json=batch, timeout=120).json()["results"]
            assert model_server.requests == 2  # served from the cache
            assert [r["judge"]["score"] for r in again] == [r["judge"]["score"] for r in first]
            no_judge = httpx.post(f"{url}/v1/score", json={**batch, "judge": False}, timeout=120).json()["results"]
            assert all(r["judge"] is None for r in no_judge)
            assert httpx.get(f"{url}/healthz").json()["judge"] == "tiny"
            model_server.__exit__(None, None, None)  # the judge's server stops while the service runs
            fresh = {"records": [{"instruction": "富士山の高さは?", "output": "3776メートルです。"}], "judge": True}
            gone = httpx.post(f"{url}/v1/score", json=fresh, timeout=120)  # not 200 with a failed judgement per record
            assert gone.status_code == 503 and model_server.base_url in gone.json()["detail"]
            assert "nothing was judged" in gone.json()["detail"] and "judge=false" in gone.json()["detail"]
            assert httpx.post(f"{url}/v1/score", json={**fresh, "judge": False}, timeout=120).status_code == 200
            cached = httpx.post(f"{url}/v1/score", json=batch, timeout=120)  # judged before: from the cache
            assert cached.status_code == 200 and [r["judge"]["score"] for r in cached.json()["results"]] == \
                [r["judge"]["score"] for r in first]
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def test_writers_wait_for_a_reader_instead_of_failing(store, tmp_path):
    """A service request holds a read-only connection for a moment; `jcurate subset` waits for it."""
    from store.connection import connect

    holder = subprocess.Popen([sys.executable, "-c", (
        "import duckdb, sys, time\n"
        f"con = duckdb.connect({str(store)!r}, read_only=True)\n"
        "print('ready', flush=True)\n"
        "time.sleep(2)\n")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "ready"
    con = connect(store)  # would raise 'Could not set lock' at once without the wait
    con.close()
    holder.wait(timeout=30)


def test_scorer_follows_a_newer_run(default_run, store, tmp_path):
    import time

    from jcurate.service.scoring import LiveScorer

    out, _ = default_run
    db = tmp_path / "live.duckdb"
    shutil.copy(store, db)
    live = LiveScorer(db, reload_interval=0.01)
    old = live.scorer.run_id
    time.sleep(0.05)
    live.get()  # nothing new: the check finds the same run
    for _ in range(100):
        if not live._reloading.locked():
            break
        time.sleep(0.1)
    assert live.reloads == 0 and live.last_error is None

    shutil.copytree(out, tmp_path / "out")
    state = tmp_path / "out/work/run.json"  # as a later run of the same inputs leaves it: a folder the store lacks
    state.write_text(json.dumps({**json.loads(state.read_text()), "run_folder_id": "folder-a-later-run"}))
    assert run_cli("ingest", "--out", str(tmp_path / "out"), "--db", str(db)) == 0
    new = run_query(db, "SELECT run_id FROM latest_run")[1][0][0]
    assert new != old
    time.sleep(0.05)
    assert live.get().run_id == old  # the old scorer answers while the new one is built
    for _ in range(600):
        if live.reloads:
            break
        time.sleep(0.1)
    assert live.get().run_id == new and live.describe()["reloads"] == 1


def test_health_checks_and_lookups_alone_notice_a_newer_run(store, tmp_path):
    """No score request at all: /healthz and GETs are requests too, so the service moves to a newer run."""
    db = tmp_path / "reload.duckdb"
    shutil.copy(store, db)
    old = run_query(db, "SELECT run_id FROM latest_run")[1][0][0]
    proc, url = _serve(db, "--reload-interval", "0.2")
    try:
        assert httpx.get(url + "/healthz", timeout=30).json()["run_id"] == old
        assert run_cli("run", "--out", str(tmp_path / "out"), "--db", str(db), "--workers", "1") == 0
        new = run_query(db, "SELECT run_id FROM latest_run")[1][0][0]
        assert new != old
        seen = old
        for _ in range(300):
            httpx.get(url + "/v1/sources", timeout=30)
            seen = httpx.get(url + "/healthz", timeout=30).json()["run_id"]
            if seen == new:
                break
            time.sleep(0.2)
        assert seen == new
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_no_5xx_while_the_service_reloads_and_a_run_writes_the_store(store, tmp_path):
    """A short reload interval and a `jcurate run` writing the store meanwhile: every answer is a
    200 or the documented 503 (store being written), never a 500 or a reset."""

    db = tmp_path / "store.duckdb"
    shutil.copy(store, db)
    proc, url = _serve(db, "--reload-interval", "0.2")
    rid = run_query(db, "SELECT record_id FROM records ORDER BY record_id LIMIT 1")[1][0][0]
    writer: list[int] = []  # the run's exit status
    try:
        statuses = hammer_while(url, rid, lambda: writer.append(run_cli("run", "--out", str(tmp_path / "out"),
                                                                         "--db", str(db))))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert writer == [0]
    assert statuses and set(statuses) <= {200, 503}, sorted(statuses, key=str)
    assert statuses[200] > 10
