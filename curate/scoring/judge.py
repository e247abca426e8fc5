"""The LLM judge: one interface, four backends (OpenAI-compatible server, vLLM, transformers, llama.cpp).

The score is never read from free text with a regex. Every backend asks for a single
token after a Japanese rubric and reads the probabilities of the tokens "1".."5": the
expected value under those probabilities is the score (log-sum-exp over the spellings of
each digit; renormalised over the five). A server that returns no logprobs can be asked
for a constrained choice (vLLM's ``structured_outputs: {"choice": [...]}``); then the one
token it must return is the score (llama.cpp's server: a ``grammar``). Results are cached in the store's ``scores`` table by
(content hash, judge model, prompt version): a re-run makes no new call.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from core.errors import JcurateError

PROMPT_VERSION = "ja-rubric-v1"
SCORE_TOKENS = ("1", "2", "3", "4", "5")

RUBRIC_V1 = """あなたは日本語の指示データの品質を評価する審査員です。以下の指示と応答を読み、応答の品質を1〜5の整数で採点してください。

評価の観点:
- 有用性: ユーザーの役に立つか
- 正確性: 内容に誤りがないか
- 指示への追従: 指示された形式・分量・条件を守っているか
- 日本語の自然さ: 文法・語彙・敬語が自然か

採点基準（ELYZA-tasks-100 に準拠）:
5: 正しく、指示をすべて満たし、非常に有用
4: 正しく、指示を満たしている
3: 部分的に正しい、または指示の一部を満たしていない
2: 誤っているが、方向性は合っている
1: 誤っている、無関係、または回答になっていない
減点: 不自然な日本語は -1、部分的なハルシネーション（事実と異なる内容）は -1（最低1点）。

# 指示
{instruction}

# 応答
{output}

数字1文字のみで答えてください。点数:"""  # noqa: E501 (the rubric is what the judge reads; its version is in PROMPT_VERSION)


def build_prompt(instruction: str, output: str) -> str:
    return RUBRIC_V1.format(instruction=instruction.strip(), output=output.strip())


def expected_score(logprobs: dict[str, float], choices: tuple[str, ...] = SCORE_TOKENS) -> float | None:
    """Expected value over the score tokens from {token: logprob}; spellings (" 3", "3\\n") are pooled."""
    pooled: dict[str, list[float]] = {d: [] for d in choices}
    for token, lp in logprobs.items():
        t = token.strip().replace("▁", "").replace("Ġ", "")
        if t in pooled and lp is not None and math.isfinite(lp):
            pooled[t].append(lp)
    mass = {}
    for digit, lps in pooled.items():
        if lps:
            m = max(lps)
            mass[digit] = math.exp(m) * sum(math.exp(x - m) for x in lps)
    total = sum(mass.values())
    if total <= 0:
        return None
    return sum(int(d) * p for d, p in mass.items()) / total


@dataclass
class Judgement:
    score: float | None
    raw: str
    error: str | None = None


class JudgeBackend:
    model: str

    def judge(self, prompts: list[str], choices: tuple[str, ...] = SCORE_TOKENS) -> list[Judgement]:
        raise NotImplementedError  # pragma: no cover - interface


@dataclass
class OpenAIJudge(JudgeBackend):
    """Any OpenAI-compatible chat-completions server (vllm serve, OpenAI, ...).

    The API key comes from the environment variable named by ``api_key_env``.
    """

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    timeout: float = 60.0
    max_retries: int = 4
    backoff: float = 0.5
    logprobs: bool = True
    constrained_choice: bool = False  # vLLM structured outputs or a llama.cpp grammar, for servers without logprobs
    top_logprobs: int = 20  # OpenAI allows up to 20; vLLM serves more when started with --max-logprobs
    extra_body: dict = field(default_factory=dict)

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def unreachable(self, timeout: float = 5.0) -> str | None:
        """Why the server cannot be reached (``GET {base_url}/models``, one try), or None when it answers.

        Any HTTP answer counts as reachable, an error status too (a server that lists no models, a key
        it refuses): the judgements then fail with the server's own message. Only no answer at all
        (nothing listening, a wrong host, a timeout, a malformed URL) is a reason."""
        url = self.base_url.rstrip("/") + "/models"
        try:
            req = urllib.request.Request(url, headers=self._headers(), method="GET")
            with urllib.request.urlopen(req, timeout=min(timeout, self.timeout)):
                return None
        except urllib.error.HTTPError:
            return None
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as e:
            return f"{type(e).__name__}: {getattr(e, 'reason', e)}"

    def _request(self, prompt: str, choices: tuple[str, ...] = SCORE_TOKENS) -> dict:
        body = {"model": self.model, "messages": [{"role": "user", "content": prompt}],
                "max_tokens": 1, "temperature": 0.0, **self.extra_body}
        if self.logprobs:
            body.update(logprobs=True, top_logprobs=self.top_logprobs)
        if self.constrained_choice:  # vLLM reads the first, llama.cpp's server the second; each ignores the other
            body["structured_outputs"] = {"choice": list(choices)}
            body["grammar"] = "root ::= " + " | ".join(json.dumps(c) for c in choices)
        url = self.base_url.rstrip("/") + "/chat/completions"
        req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=self._headers(), method="POST")
        last, last_body = "no attempt", ""
        for attempt in range(self.max_retries + 1):
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return {"status": resp.status, "text": resp.read().decode("utf-8", errors="replace")}
            except urllib.error.HTTPError as e:
                body = e.read().decode("utf-8", errors="replace")
                if e.code != 429 and e.code < 500:
                    return {"status": e.code, "text": body}
                last, last_body = f"HTTP {e.code}: {' '.join(body.split())[:300]}", body
                wait = float(e.headers.get("Retry-After") or self.backoff * 2 ** attempt)
            except (TimeoutError, urllib.error.URLError, OSError) as e:
                last = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
                wait = self.backoff * 2 ** attempt
            if attempt < self.max_retries:
                time.sleep(wait * (1 + 0.1 * random.random()))
        return {"status": None, "text": last_body,
                "error": f"gave up after {self.max_retries + 1} attempts ({last})"}

    @staticmethod
    def parse(response: dict, choices: tuple[str, ...] = SCORE_TOKENS) -> Judgement:
        if response.get("error"):
            return Judgement(None, response.get("text", ""), response["error"])
        text = response["text"]
        if response["status"] != 200:
            return Judgement(None, text, f"HTTP {response['status']}")
        try:
            data = json.loads(text)
            choice = data["choices"][0]
        except (json.JSONDecodeError, KeyError, IndexError, TypeError) as e:
            return Judgement(None, text, f"malformed response ({type(e).__name__}: {e})")
        content = (choice.get("logprobs") or {}).get("content") or []
        if content:
            top = {t["token"]: t["logprob"] for t in content[0].get("top_logprobs") or [] if "token" in t}
            top.setdefault(content[0].get("token", ""), content[0].get("logprob"))
            score = expected_score(top, choices)
            if score is not None:
                return Judgement(score, text)
        message = ((choice.get("message") or {}).get("content") or "").strip()
        if message in choices:  # a constrained choice: the whole answer is one of the scores
            return Judgement(float(message), text)
        return Judgement(None, text, f"no score: neither logprobs over {choices[0]}-{choices[-1]} nor a "
                                     f"constrained answer")

    def judge(self, prompts: list[str], choices: tuple[str, ...] = SCORE_TOKENS) -> list[Judgement]:
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            return [self.parse(r, choices) for r in pool.map(lambda p: self._request(p, choices), prompts)]


class TransformersJudge(JudgeBackend):
    """A causal LM on transformers, CPU or GPU: one forward pass, the next-token logits of "1".."5"."""

    def __init__(self, model: str, device: str | None = None, batch_size: int = 8, dtype: str = "auto"):
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as e:
            raise JcurateError(f"the transformers judge needs the 'judge' extra: uv sync --extra judge ({e})") from None
        self.model = model
        self.torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.lm = AutoModelForCausalLM.from_pretrained(model, dtype=dtype).to(self.device).eval()
        self.batch_size = batch_size
        self._vocab = {tok: self.tokenizer.convert_tokens_to_string([tok]).strip()
                       for tok in self.tokenizer.get_vocab()}
        self._choice_ids: dict[tuple, dict[str, list[int]]] = {}

    def choice_ids(self, choices: tuple[str, ...]) -> dict[str, list[int]]:
        """Token ids spelling each score; a score with no single token (e.g. "10" in digit-split vocabularies)
        cannot be read in one step and is left out."""
        if choices not in self._choice_ids:
            vocab = self.tokenizer.get_vocab()
            ids = {c: [vocab[t] for t, text in self._vocab.items() if text == c] for c in choices}
            if not any(ids.values()):
                raise JcurateError(f"judge model {self.model}: its vocabulary has no token for {', '.join(choices)}")
            self._choice_ids[choices] = {c: v for c, v in ids.items() if v}
        return self._choice_ids[choices]

    def _render(self, prompt: str) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                      add_generation_prompt=True)
        return prompt

    def judge(self, prompts: list[str], choices: tuple[str, ...] = SCORE_TOKENS) -> list[Judgement]:
        torch = self.torch
        digit_ids = self.choice_ids(choices)
        out: list[Judgement] = []
        for i in range(0, len(prompts), self.batch_size):
            batch = [self._render(p) for p in prompts[i:i + self.batch_size]]
            enc = self.tokenizer(batch, return_tensors="pt", padding=True).to(self.device)
            with torch.no_grad():
                logits = self.lm(**enc).logits[:, -1, :].float()
            logp = torch.log_softmax(logits, dim=-1)
            for row in logp:
                per_digit = {d: torch.logsumexp(row[ids], dim=0).item() for d, ids in digit_ids.items()}
                score = expected_score(per_digit, choices)
                out.append(Judgement(score, json.dumps({"logprobs": per_digit})))
        return out


class LlamaCppJudge(JudgeBackend):
    """llama.cpp in process (llama-cpp-python, CPU): a GGUF, the score tokens' logits at the last position only.

    Why beside the server: llama.cpp's server returns logprobs only with ``--logits_all``, which computes
    the whole vocabulary at every prompt position (~5 s per record for Gemma 3 270M on 2 cores). Here
    the context keeps the longest token prefix shared with the previous prompt (the rubric) and
    evaluates the rest, with logits for the last token only.
    """

    def __init__(self, model: str, chat_format: str | None = "gemma", n_ctx: int = 4096, n_threads: int | None = None):
        try:
            from llama_cpp import Llama, llama_chat_format
        except ImportError as e:
            raise JcurateError(f"the llama_cpp judge needs the judge-server group: uv sync --group judge-server ({e})"
                               ) from None
        import numpy as np

        from curate.scoring.llama_server import resolve_gguf

        self.np = np
        self.model = model
        self.n_ctx = n_ctx
        # llama-cpp-python's default is half the cores (1 of 2 here): a judge has the machine to itself
        threads = n_threads or os.cpu_count() or 1
        self.llm = Llama(model_path=str(resolve_gguf(model)), n_ctx=n_ctx, n_threads=threads,
                         n_threads_batch=threads, logits_all=False, verbose=False)
        if chat_format:
            formatter = getattr(llama_chat_format, "format_" + chat_format.replace("-", "_"), None)
            if formatter is None:
                raise JcurateError(f"judge.chat_format {chat_format!r}: llama_cpp has no such chat format")
            self.render = lambda prompt: formatter(messages=[{"role": "user", "content": prompt}]).prompt
        else:  # the GGUF's own template
            template = self.llm.metadata.get("tokenizer.chat_template")
            if not template:
                raise JcurateError(f"judge model {model}: the GGUF has no chat template; set judge.chat_format")
            jinja = llama_chat_format.Jinja2ChatFormatter(template, eos_token="", bos_token="")
            self.render = lambda prompt: jinja(messages=[{"role": "user", "content": prompt}]).prompt
        self._choice_ids: dict[tuple, dict[str, list[int]]] = {}

    def choice_ids(self, choices: tuple[str, ...]) -> dict[str, list[int]]:
        """The single tokens spelling each score, bare or after a space."""
        if choices not in self._choice_ids:
            ids = {}
            for c in choices:
                spelled = {t[0] for s in (c, " " + c) if len(t := self.llm.tokenize(s.encode(), add_bos=False)) == 1}
                if spelled:
                    ids[c] = sorted(spelled)
            if not ids:
                raise JcurateError(f"judge model {self.model}: its vocabulary has no token for {', '.join(choices)}")
            self._choice_ids[choices] = ids
        return self._choice_ids[choices]

    def close(self) -> None:
        """Frees the model and context now, not at interpreter exit (where llama.cpp's teardown may abort)."""
        self.llm.close()

    def last_logits(self, tokens: list[int]):
        llm = self.llm
        cached = llm.input_ids[:llm.n_tokens].tolist()
        keep = 0
        for a, b in zip(cached, tokens[:-1]):  # at least the last token is evaluated, for its logits
            if a != b:
                break
            keep += 1
        llm.n_tokens = keep
        llm.eval(tokens[keep:])
        return self.np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),)).astype("float64")

    def judge(self, prompts: list[str], choices: tuple[str, ...] = SCORE_TOKENS) -> list[Judgement]:
        np = self.np
        ids = self.choice_ids(choices)
        out = []
        for prompt in prompts:
            tokens = self.llm.tokenize(self.render(prompt).encode("utf-8"), add_bos=True, special=True)
            if len(tokens) >= self.n_ctx:
                out.append(Judgement(None, "", f"prompt of {len(tokens)} tokens does not fit judge.n_ctx "
                                               f"{self.n_ctx}"))
                continue
            try:
                logits = self.last_logits(tokens)
            except Exception as e:  # a failed decode is a failed judgement, not a failed run
                self.llm.n_tokens = 0
                out.append(Judgement(None, "", f"llama.cpp: {type(e).__name__}: {e}"))
                continue
            top = logits.max()
            lse = top + np.log(np.exp(logits - top).sum())
            per_digit = {d: float(np.logaddexp.reduce(logits[i]) - lse) for d, i in ids.items()}
            score = expected_score(per_digit, choices)
            out.append(Judgement(score, json.dumps({"logprobs": per_digit}),
                                 None if score is not None else "no probability over the scores"))
        return out


class VLLMJudge(JudgeBackend):
    """In-process ``vllm.LLM`` (GPU): one generated token with its top logprobs."""

    def __init__(self, model: str, **llm_kwargs):
        try:
            from vllm import LLM, SamplingParams
        except ImportError as e:
            raise JcurateError(f"the vllm judge needs the 'vllm' extra and a GPU: uv sync --extra vllm ({e})") from None
        self.model = model
        self.llm = LLM(model=model, **llm_kwargs)
        self.params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=20)

    def judge(self, prompts: list[str], choices: tuple[str, ...] = SCORE_TOKENS) -> list[Judgement]:
        messages = [[{"role": "user", "content": p}] for p in prompts]
        results = self.llm.chat(messages, self.params, use_tqdm=False)
        out = []
        for r in results:
            lps = r.outputs[0].logprobs[0] if r.outputs[0].logprobs else {}
            top = {lp.decoded_token: lp.logprob for lp in lps.values()}
            score = expected_score(top, choices)
            out.append(Judgement(score, json.dumps(top, ensure_ascii=False),
                                 None if score is not None else "no logprob over the scores in the top 20"))
        return out


def make_judge(cfg) -> JudgeBackend:
    """A backend from a ``JudgeConfig``."""
    if not cfg.model:
        raise JcurateError("config key 'judge.model': name the judge model")
    if cfg.backend == "openai":
        return OpenAIJudge(cfg.base_url, cfg.model, api_key_env=cfg.api_key_env, concurrency=cfg.concurrency,
                           timeout=cfg.timeout, max_retries=cfg.max_retries, logprobs=cfg.logprobs,
                           constrained_choice=cfg.constrained_choice, top_logprobs=cfg.top_logprobs)
    if cfg.backend == "transformers":
        return TransformersJudge(cfg.model, device=cfg.device, batch_size=cfg.batch_size)
    if cfg.backend == "llama_cpp":
        return LlamaCppJudge(cfg.model, chat_format=cfg.chat_format, n_ctx=cfg.n_ctx)
    return VLLMJudge(cfg.model)


def check_judge_answers(backend: JudgeBackend, config_name: str, outcome: str = "nothing was judged") -> None:
    """Refuses a judge server that does not answer, before any record is sent: otherwise every record
    would be retried ``max_retries`` times with backoff (~1 s each) and stored as a failed judgement.
    Backends in process (transformers, vllm, llama_cpp) have nothing to check."""
    if not isinstance(backend, OpenAIJudge):
        return
    if reason := backend.unreachable():
        raise JcurateError(f"the judge server at {backend.base_url} does not answer ({reason}); {outcome}. "
                           f"Start it (e.g. `jcurate judge-server`) or fix judge.base_url in {config_name}")


@dataclass(frozen=True)
class JudgeItem:
    """A kept record as the judge sees it: the prompt side and the answer."""

    record_id: str
    content_hash: str
    source_id: str
    prompt: str
    output: str


def sample_records(con, run_id: str, sample: int | None, seed: int) -> list[JudgeItem]:
    """Kept records of a run, all or a per-source stratified sample."""
    rows = [JudgeItem(*r) for r in con.execute(
        """SELECT r.record_id, r.content_hash, r.source_id,
                  concat_ws('\n\n', nullif(r.instruction, ''), nullif(r.input, '')) AS prompt, r.output
           FROM record_fate f JOIN records r USING (record_id)
           WHERE f.run_id = ? AND f.kept
           ORDER BY md5(r.record_id || ':' || ?)""", [run_id, str(seed)]).fetchall()]
    if sample is None or sample >= len(rows):
        return rows
    by_source: dict[str, list[JudgeItem]] = {}
    for r in rows:
        by_source.setdefault(r.source_id, []).append(r)
    quota = {s: max(1, round(sample * len(rs) / len(rows))) for s, rs in by_source.items()}
    while sum(quota.values()) > sample:  # rounding up can overshoot: trim the largest
        quota[max(quota, key=quota.get)] -= 1
    return [r for s, rs in sorted(by_source.items()) for r in rs[:quota[s]]]


def run_judge(db, backend: JudgeBackend, sample: int | None, seed: int = 0, run_id: str | None = None,
              log=print, batch: int = 32) -> dict:
    """Judges a sample (or all) kept records; cached by (content hash, model, prompt version) in the store's
    judge cache, and written as ``scores`` rows (scorer ``judge``)."""
    from datetime import datetime, timezone

    from store.cache import CachedJudgement, cache_judgements, cached_scores, raw_json
    from store.connection import connect, transaction
    from store.rows import insert_rows
    from store.runs import resolve_run

    con = connect(db)
    try:
        run_id = resolve_run(con, run_id)
        records = sample_records(con, run_id, sample, seed)
        cached = cached_scores(con, backend.model, PROMPT_VERSION, sorted({r.content_hash for r in records}))
        todo = [r for r in records if r.content_hash not in cached]
        log(f"judge {backend.model} ({PROMPT_VERSION}): {len(records)} records, {len(records) - len(todo)} cached, "
            f"{len(todo)} to judge")
        now = datetime.now(timezone.utc)

        def score_row(r: JudgeItem, score, raw: str) -> dict:
            return dict(record_id=r.record_id, content_hash=r.content_hash, scorer="judge", model=backend.model,
                        prompt_version=PROMPT_VERSION, score=score, raw=raw, run_id=run_id, created_at=now)

        def store(items: list[JudgeItem], rows: list[dict], judgements: list[CachedJudgement]) -> None:
            with transaction(con):
                con.execute("DELETE FROM scores WHERE scorer = 'judge' AND model = ? AND prompt_version = ? AND "
                            "record_id IN (SELECT unnest(?))", [backend.model, PROMPT_VERSION,
                                                                 [r.record_id for r in items]])
                insert_rows(con, "scores", rows)
                cache_judgements(con, judgements)

        # cached scores also apply to records that share the content hash
        done = [r for r in records if r.content_hash in cached]
        if done:
            store(done, [score_row(r, cached[r.content_hash], json.dumps({"cached": True})) for r in done], [])
        start = time.perf_counter()
        results: list[Judgement] = []
        # each batch is stored as soon as it is judged: a run stopped midway (the server gone, the process
        # killed) keeps what it finished, and a re-run judges only the rest (failed judgements are not cached)
        for i in range(0, len(todo), batch):
            items = todo[i:i + batch]
            judged = backend.judge([build_prompt(r.prompt, r.output) for r in items])
            store(items, [score_row(r, j.score, raw_json(j.raw, j.error)) for r, j in zip(items, judged)],
                  [CachedJudgement(r.content_hash, backend.model, PROMPT_VERSION, j.score, raw_json(j.raw, j.error))
                   for r, j in zip(items, judged)])
            results += judged
            secs = time.perf_counter() - start
            log(f"  judged {len(results)}/{len(todo)} ({len(results) / secs:.2f} records/s, "
                f"{sum(j.score is None for j in results)} failed)")
        secs = time.perf_counter() - start
        failed = [j.error for j in results if j.score is None]
        summary = {"records": len(records), "judged": len(todo), "cached": len(records) - len(todo),
                   "failed": len(failed), "seconds": round(secs, 3),
                   "records_per_second": round(len(todo) / secs, 2) if todo and secs > 0 else None}
        if failed:
            log(f"  {len(failed)} failed judgements (recorded with their reason), e.g. {failed[0]}")
        return summary
    finally:
        con.close()
