"""The LLM judge: the openai backend against a real local server, the transformers backend, vLLM (GPU)."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil

import duckdb
import pytest

from curate.scoring.judge import PROMPT_VERSION, OpenAIJudge, TransformersJudge, build_prompt, expected_score, run_judge

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                reason="the judge needs the 'judge' extra: uv sync --extra judge")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from train.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="module")
def server(tiny_model):
    from tests.openai_server import ModelServer

    with ModelServer(str(tiny_model)) as s:
        yield s


def test_expected_score_pools_spellings_and_renormalises():
    assert expected_score({"5": 0.0}) == 5.0
    assert math.isclose(expected_score({"2": math.log(0.25), " 2": math.log(0.25), "4": math.log(0.5), "x": 0.0}), 3.0)
    assert expected_score({"yes": 0.0}) is None


def judge_for(server, **kw) -> OpenAIJudge:
    return OpenAIJudge(server.base_url, "tiny", top_logprobs=1000, backoff=0.01, **kw)


def test_openai_backend_reads_logprobs(server):
    results = judge_for(server).judge([build_prompt("日本の首都は？", "東京です。"), build_prompt("1+1は？", "2です。")])
    for r in results:
        assert r.error is None and 1.0 <= r.score <= 5.0
        assert "top_logprobs" in r.raw
    again = judge_for(server).judge([build_prompt("日本の首都は？", "東京です。")])
    assert again[0].score == pytest.approx(results[0].score)


def test_openai_backend_retries_429(server):
    before = server.requests
    server.fail_next = 2
    (r,) = judge_for(server, max_retries=3).judge([build_prompt("質問", "回答")])
    assert r.error is None and 1 <= r.score <= 5
    assert server.requests - before == 3  # two 429s, then success


def test_openai_backend_timeout_and_malformed_are_failed_judgements(server):
    server.slow_seconds = 1.5
    slow, bad = judge_for(server, timeout=0.3, max_retries=1).judge(
        [build_prompt("[[SLOW]] 質問", "回答"), build_prompt("[[MALFORMED]] 質問", "回答")])
    assert slow.score is None and "gave up after 2 attempts" in slow.error and "Timeout" in slow.error
    assert bad.score is None and bad.error.startswith("malformed response")


def test_run_judge_stores_scores_and_caches(server, default_run, tmp_path):
    db = tmp_path / "store.duckdb"
    shutil.copy(default_run[1], db)
    judge = judge_for(server, concurrency=4)
    before = server.requests
    first = run_judge(db, judge, sample=12, seed=1, log=lambda m: None)
    assert first["judged"] == 12 and first["failed"] == 0
    assert server.requests - before == 12
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT r.source_id, s.score, s.model, s.prompt_version, s.raw FROM scores s "
                       "JOIN records r USING (record_id) WHERE scorer = 'judge'").fetchall()
    con.close()
    assert len(rows) == 12 and all(1 <= r[1] <= 5 and r[2] == "tiny" and r[3] == PROMPT_VERSION for r in rows)
    assert len({r[0] for r in rows}) == 5, "the sample is stratified over every source"
    assert "top_logprobs" in json.loads(rows[0][4])["raw"]
    second = run_judge(db, judge, sample=12, seed=1, log=lambda m: None)
    assert second["judged"] == 0 and second["cached"] == 12
    assert server.requests - before == 12, "a re-run makes no new request"


def test_transformers_backend_is_deterministic_and_in_range(tiny_model):
    judge = TransformersJudge(str(tiny_model), device="cpu", batch_size=3)
    prompts = [build_prompt(f"質問{i}", f"回答{i}です。") for i in range(5)]
    a, b = judge.judge(prompts), judge.judge(prompts)
    assert all(1.0 <= r.score <= 5.0 for r in a)
    assert [r.score for r in a] == [r.score for r in b]
    single = judge.judge(prompts[:1])
    assert single[0].score == pytest.approx(a[0].score, abs=1e-4), "batching with padding does not change a score"


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is GPU-only (extra 'vllm'); CI has no GPU")
def test_vllm_backend(tiny_model):  # pragma: no cover - runs on the GPU machine
    from curate.scoring.judge import VLLMJudge

    judge = VLLMJudge(str(tiny_model), gpu_memory_utilization=0.3, max_model_len=2048)
    results = judge.judge([build_prompt("日本の首都は？", "東京です。")])
    assert results[0].error is None, results[0].error
    assert 1 <= results[0].score <= 5
