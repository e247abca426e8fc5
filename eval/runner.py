"""``jcurate eval``: generate answers on eval sets and grade them with the judge, and/or measure how
likely the model finds the reference answers (judge-free, ``eval.likelihood``); store both per item.

Without a judge model (``judge.model: null``) nothing is generated: the run measures the
reference NLL only, which needs no judge and no server."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from core.config import from_dict, load_yaml
from core.errors import JcurateError
from curate.config import JudgeConfig
from curate.scoring.judge import make_judge
from eval.generate import GenerationConfig, make_generator
from eval.grade import (
    ELYZA_CHOICES,
    ELYZA_PROMPT_VERSION,
    MT_BENCH_CHOICES,
    MT_BENCH_PROMPT_VERSION,
    elyza_prompt,
    mt_bench_prompt,
)
from eval.tasks import EvalItem, load_tasks
from store.cache import CachedJudgement, cache_judgements, cached_scores, raw_json
from store.ids import new_id
from store.rows import insert_row, insert_rows


@dataclass
class EvalConfig:
    eval_files: list[str] = field(default_factory=lambda: ["data/eval/elyza_style.jsonl",
                                                           "data/eval/mt_bench_style.jsonl"])
    train_run: str | None = None  # a train run in the store: its base model and adapter
    model: str | None = None  # or a base model (hub id or folder) ...
    adapter: str | None = None  # ... with an optional PEFT adapter folder
    backend: str = "auto"  # auto (vLLM on a GPU when installed, else transformers) | transformers | vllm
    limit: int | None = None  # items per eval file
    db: str = "jcurate.duckdb"
    reference_nll: bool = True  # mean per-token NLL of each reference answer (items that have one)
    nll_max_tokens: int = 1024  # prompt + reference, per item (a long prompt loses its start)
    nll_batch_size: int = 4
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)


def load_eval_config(path: str | Path | None, **overrides) -> EvalConfig:
    data = {}
    if path is not None:
        data = load_yaml(path, "eval config") or {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        cfg = from_dict(EvalConfig, data)
        if cfg.judge.model:
            cfg.judge.validate("judge")
        elif not cfg.reference_nll:
            raise JcurateError("nothing to measure: name a judge (judge.model) or keep reference_nll: true")
    except JcurateError as e:
        raise JcurateError(f"{path or 'eval config'}: {e}") from None
    return cfg


def _resolve_model(con, cfg: EvalConfig) -> tuple[str, str | None, str | None]:
    if cfg.train_run:
        row = con.execute("SELECT base_model, output_path, method, subset FROM train_runs WHERE train_run_id = ?",
                          [cfg.train_run]).fetchone()
        if not row:
            raise JcurateError(f"no train run {cfg.train_run!r} in {cfg.db}")
        base, out, method, subset = row
        return (out, None, subset) if method == "full" else (base, out, subset)
    if not cfg.model:
        raise JcurateError("the eval config names neither 'train_run' nor 'model'")
    return cfg.model, cfg.adapter, None


def decontamination_overlap(con, subset: str, eval_files: list[str], n_grams: int = 13,
                            items: list[EvalItem] | None = None) -> int:
    """Training records of the subset whose instruction side shares an n-gram with an eval prompt:
    the prompts of ``items`` (the rows the eval uses, bad rows skipped), else of the files."""
    import tempfile

    from curate.config import DecontaminationConfig
    from curate.decont.decontaminate import loaded_decont_filter
    from curate.records import make_document

    with tempfile.TemporaryDirectory(prefix="jcurate-eval-prompts-") as folder:
        if items is not None:
            prompts = Path(folder) / "eval-prompts.jsonl"
            prompts.write_text("".join(json.dumps({"turns": it.turns}, ensure_ascii=False) + "\n" for it in items),
                               encoding="utf-8")
            eval_files = [str(prompts)]
        filt = loaded_decont_filter(eval_files, DecontaminationConfig(eval_files=list(eval_files), n_grams=n_grams))
    rows = con.execute("""SELECT r.record_id, r.source_id, r.instruction, r.input, r.output, r.messages
                          FROM subset_members m JOIN records r USING (record_id) WHERE m.subset = ?""",
                       [subset]).fetchall()
    hits = 0
    for rid, sid, ins, inp, out, msgs in rows:
        doc = make_document(record_id=rid, source_id=sid, instruction=ins or "", input_=inp or "", output=out or "",
                            messages=json.loads(msgs) if msgs else None)
        hits += filt.filter(doc) is not True
    return hits


@dataclass(frozen=True)
class GradedAnswer:
    item_id: str
    turn: int  # 0-based
    category: str | None
    answer: str
    score: float | None
    rationale: str


@dataclass(frozen=True)
class GradingJob:
    item: EvalItem
    turn: int
    prompt: str
    choices: tuple
    prompt_version: str


def _grade(judge, items: list[EvalItem], answers: dict[str, list[str]], con) -> list[GradedAnswer]:
    """One graded answer per turn, through the store's judge cache."""
    jobs: list[GradingJob] = []
    for item in items:
        ans = answers[item.item_id]
        if item.shape == "elyza":
            jobs.append(GradingJob(item, 0, elyza_prompt(item.turns[0], item.reference[0] if item.reference else "",
                                                         item.eval_aspect, ans[0]), ELYZA_CHOICES, ELYZA_PROMPT_VERSION))
        else:
            for t in range(len(item.turns)):
                jobs.append(GradingJob(item, t, mt_bench_prompt(item.turns, ans, t, item.reference), MT_BENCH_CHOICES,
                                       MT_BENCH_PROMPT_VERSION))
    results = []
    for choices, version in ((ELYZA_CHOICES, ELYZA_PROMPT_VERSION), (MT_BENCH_CHOICES, MT_BENCH_PROMPT_VERSION)):
        group = [j for j in jobs if j.prompt_version == version]
        if not group:
            continue
        hashes = [hashlib.sha256(j.prompt.encode()).hexdigest() for j in group]
        cached = cached_scores(con, judge.model, version, hashes)
        todo = [(j, h) for j, h in zip(group, hashes) if h not in cached]
        graded = judge.judge([j.prompt for j, _ in todo], choices) if todo else []
        cache_judgements(con, [CachedJudgement(h, judge.model, version, g.score, raw_json(g.raw, g.error, 2000))
                               for (_, h), g in zip(todo, graded)])
        fresh = {h: g for (_, h), g in zip(todo, graded)}
        for job, h in zip(group, hashes):
            g = fresh.get(h)
            results.append(GradedAnswer(
                item_id=job.item.item_id, turn=job.turn, category=job.item.category,
                answer=answers[job.item.item_id][job.turn], score=cached.get(h) if g is None else g.score,
                rationale="cached" if g is None else (g.error or g.raw[:2000])))
    return results


def _generate(generator, items: list[EvalItem], cfg: EvalConfig, log) -> dict[str, list[str]]:
    answers: dict[str, list[str]] = {it.item_id: [] for it in items}
    convs = {it.item_id: [] for it in items}
    for turn in range(max(len(it.turns) for it in items)):
        active = [it for it in items if turn < len(it.turns)]
        for it in active:
            convs[it.item_id].append({"role": "user", "content": it.turns[turn]})
        outs = generator.generate([convs[it.item_id] for it in active], cfg.generation)
        for it, text in zip(active, outs):
            answers[it.item_id].append(text)
            convs[it.item_id].append({"role": "assistant", "content": text})
        log(f"generated turn {turn + 1} for {len(active)} item(s)")
    return answers


def _reference_nll(generator, model: str, adapter: str | None, items: list[EvalItem], cfg: EvalConfig, log):
    """Reference NLL per item id, on the generator's own model where it is a transformers one."""
    import time

    from eval.generate import load_causal_lm
    from eval.likelihood import reference_nll, reference_pairs

    pairs = reference_pairs(items)
    if not pairs:
        log("reference NLL: no eval item has a reference answer")
        return {}
    if generator is not None and hasattr(generator, "lm"):
        lm, tokenizer, device = generator.lm, generator.tokenizer, generator.device
    else:
        lm, tokenizer, device = load_causal_lm(model, adapter)
    start = time.perf_counter()
    results = reference_nll(lm, tokenizer, pairs, batch_size=cfg.nll_batch_size, max_tokens=cfg.nll_max_tokens,
                            device=device)
    secs = time.perf_counter() - start
    tokens = sum(r.tokens for r in results)
    log(f"reference NLL: {len(results)} item(s), {tokens} reference tokens in {secs:.1f} s; "
        f"mean {sum(r.nll for r in results) / len(results):.4f} nats/token")
    return {f"{r.item_id}#t1": r for r in results}


def load_items(cfg: EvalConfig, log=print) -> tuple[list[EvalItem], list[EvalItem]]:
    """(every usable item of the eval files, the first ``limit`` of each file's); two files whose items
    share ids (the file's name without its folder, and the row's id) are refused: results are stored
    and paired by that id."""
    usable, items, files = [], [], {}
    for f in cfg.eval_files:
        loaded = load_tasks(f, warn=log)
        usable += loaded
        loaded = loaded[: cfg.limit or None]
        stem = Path(f).stem
        if stem in files:
            raise JcurateError(f"eval files {files[stem]} and {f} have the same name {stem!r}: their items' ids "
                               f"would collide (results are stored by file name and row id); rename one")
        files[stem] = f
        items += loaded
    return usable, items


def run_eval(cfg: EvalConfig, log=print) -> dict:
    from store.connection import connect

    usable, items = load_items(cfg, log)
    con = connect(cfg.db)
    try:
        model, adapter, subset = _resolve_model(con, cfg)
        overlap = None
        if subset:
            overlap = decontamination_overlap(con, subset, cfg.eval_files, items=usable)
            log(f"decontamination check: {overlap} training record(s) of subset {subset} overlap the eval set"
                + (" (expected 0: the pipeline drops them)" if overlap == 0 else " -- these inflate the scores"))
        judge = make_judge(cfg.judge) if cfg.judge.model else None
        generator = make_generator(model, adapter, cfg.backend) if judge else None
        graded = _grade(judge, items, _generate(generator, items, cfg, log), con) if judge else []
        if not judge:
            log("no judge configured (judge.model): nothing generated, reference NLL only")
        nll = _reference_nll(generator, model, adapter, items, cfg, log) if cfg.reference_nll else {}
        shapes = {it.item_id: it.shape for it in items}
        rows: dict[str, dict] = {}
        for g in graded:
            rows[f"{g.item_id}#t{g.turn + 1}"] = dict(category=g.category, answer=g.answer, score=g.score,
                                                      judge_model=judge.model, rationale=g.rationale,
                                                      shape=shapes[g.item_id])
        categories = {it.item_id: it.category for it in items}
        for key, r in nll.items():
            rows.setdefault(key, dict(category=categories[r.item_id], shape=shapes[r.item_id]))
            rows[key].update(ref_nll=r.nll, ref_tokens=r.tokens)
        scores = [g.score for g in graded if g.score is not None]
        by_shape = {}  # ELYZA answers are graded 1-5, MT-Bench turns 1-10: the mean of all mixes the scales
        for shape in ("elyza", "mt-bench"):
            own = [g.score for g in graded if g.score is not None and shapes[g.item_id] == shape]
            if own:
                by_shape[shape] = (sum(own) / len(own), len(own))
        eval_run_id = new_id("eval")
        now = datetime.now(timezone.utc)
        mixed = sum(scores) / len(scores) if scores else None  # eval_runs.mean_score, kept for older readers only
        mean_nll = sum(r.nll for r in nll.values()) / len(nll) if nll else None
        insert_row(con, "eval_runs", dict(
            eval_run_id=eval_run_id, train_run_id=cfg.train_run, model=model, adapter=adapter,
            eval_files=json.dumps(cfg.eval_files), judge_model=judge.model if judge else None,
            config=json.dumps(asdict(cfg), default=str), decont_overlap=overlap, mean_score=mixed,
            mean_score_elyza=by_shape.get("elyza", (None,))[0], mean_score_mt_bench=by_shape.get("mt-bench", (None,))[0],
            mean_ref_nll=mean_nll, created_at=now))
        columns = ("category", "answer", "score", "judge_model", "rationale", "ref_nll", "ref_tokens", "shape")
        insert_rows(con, "eval_results", [dict(eval_run_id=eval_run_id, train_run_id=cfg.train_run, item_id=key,
                                               created_at=now, **{c: row.get(c) for c in columns})
                                          for key, row in rows.items()])
        per_scale = ", ".join(f"{shape} mean {m:.3f} on {n}" for shape, (m, n) in by_shape.items()) or "no score"
        log(f"eval {eval_run_id}: {len(graded)} graded answers ({per_scale})"
            + (f"; reference NLL on {len(nll)} item(s), mean {mean_nll:.4f}" if nll else ""))
        # the judge's mean per scale (None where no answer of that shape was scored); no mean of both scales
        return {"eval_run_id": eval_run_id, "graded": len(graded), "failed": len(graded) - len(scores),
                "mean_score_elyza": by_shape.get("elyza", (None,))[0],
                "mean_score_mt_bench": by_shape.get("mt-bench", (None,))[0], "mean_by_shape": by_shape,
                "decont_overlap": overlap, "reference_nll_items": len(nll), "mean_ref_nll": mean_nll}
    finally:
        con.close()
