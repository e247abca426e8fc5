"""``jcurate eval`` graded by a real server: the base Gemma 3 270M answers ELYZA-tasks-100, llama.cpp's server
(the packaged Gemma 3 270M GGUF, logprobs) grades each answer with the ELYZA criteria prompt.

    uv run --group judge-server --group experiment python benchmarks/judge/eval_grading.py [--limit 100]

Generation runs on transformers (``models/gemma-3-270m``, prepared from the same GGUF by
``benchmarks/topk_vs_random/prepare_gemma.py``; greedy, 256 new tokens). The answers, scores and
the judge's raw responses land in the store's ``eval_results``. Writes ``OUT/results.md`` with the time
per item (generation, grading) and the score distribution. A 270M judge grading a 270M model: the
scores say little about the answers; the point is the real path end to end.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.real_data.build_inputs import DEFAULT_REALDATA  # noqa: E402
from curate.config import JudgeConfig  # noqa: E402
from curate.scoring.llama_server import LlamaServer  # noqa: E402
from eval.generate import GenerationConfig  # noqa: E402
from eval.runner import EvalConfig, run_eval  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--realdata", type=Path, default=DEFAULT_REALDATA)
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "gemma-3-270m")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "judge-eval")
    ap.add_argument("--report-only", action="store_true", help="rewrite results.md from OUT's store and timings")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not (args.model / "config.json").is_file():
        from benchmarks.topk_vs_random.prepare_gemma import prepare

        prepare(args.model)
    elyza = args.realdata / "eval" / "elyza_tasks_100.jsonl"
    if not elyza.is_file():
        raise SystemExit(f"{elyza} not found: run benchmarks/real_data/build_inputs.py first")
    db = args.out / "store.duckdb"
    stamps: list[tuple[float, str]] = []

    def log(msg: str) -> None:
        stamps.append((time.perf_counter(), msg))
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    timings_file = args.out / "timings.json"
    if not args.report_only:
        with LlamaServer(logits_all=True, log_path=args.out / "server.log") as server:
            cfg = EvalConfig(eval_files=[str(elyza)], model=str(args.model), backend="transformers", limit=args.limit,
                             db=str(db), reference_nll=False,
                             generation=GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=8),
                             judge=JudgeConfig(backend="openai", base_url=server.base_url, model="gemma-3-270m",
                                               concurrency=1, timeout=600))
            start = time.perf_counter()
            summary = run_eval(cfg, log=log)
        generated = next(t for t, m in stamps if m.startswith("generated turn 1"))
        timings_file.write_text(json.dumps({"eval_run_id": summary["eval_run_id"], "failed": summary["failed"],
                                            "generation_seconds": generated - start,
                                            "grading_seconds": stamps[-1][0] - generated}), encoding="utf-8")
    timings = json.loads(timings_file.read_text(encoding="utf-8"))
    gen_secs, grade_secs = timings["generation_seconds"], timings["grading_seconds"]
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT score, rationale, answer FROM eval_results WHERE eval_run_id = ?",
                       [timings["eval_run_id"]]).fetchall()
    con.close()
    scores = [s for s, _, _ in rows if s is not None]
    bins = collections.Counter(min(5, max(1, round(s))) for s in scores)
    n = len(rows)
    lines = ["# `jcurate eval` on ELYZA-tasks-100, graded through llama.cpp's server", "",
             f"Answers: base Gemma 3 270M (transformers, greedy, up to {args.max_new_tokens} new tokens). Judge: the "
             f"packaged Gemma 3 270M GGUF on llama.cpp's server (`--logits_all`, expected score over 1-5). 2 cores.", "",
             "| | value |", "|---|---:|",
             f"| items graded | {n} ({timings['failed']} failed judgements) |",
             f"| generation, s per item | {gen_secs / n:.2f} |",
             f"| grading, s per item | {grade_secs / n:.2f} |",
             f"| total, s | {gen_secs + grade_secs:.0f} |",
             f"| mean score | {sum(scores) / max(len(scores), 1):.3f} |",
             f"| scores min / max | {min(scores):.2f} / {max(scores):.2f} |", "",
             "Score distribution (expected score rounded): "
             + ", ".join(f"{b}: {bins.get(b, 0)}" for b in range(1, 6)) + ".", "",
             f"Eval run `{timings['eval_run_id']}` in `{db}`; the first answer and the start of its judge's response:",
             "", "```", rows[0][2][:300], "---", rows[0][1][:400], "```"]
    (args.out / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
