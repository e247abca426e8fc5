"""Generation tokens/s and grading throughput on CPU with the tiny offline model.

    uv run python benchmarks/speed/eval_throughput.py

Baseline: unbatched generation (batch size 1); batched generation is reported as a ratio.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from curate.scoring.judge import TransformersJudge
    from eval.generate import GenerationConfig, TransformersGenerator
    from eval.grade import ELYZA_CHOICES, elyza_prompt
    from eval.tasks import load_tasks
    from train.tiny import build_tiny_model

    tiny = build_tiny_model(Path(tempfile.mkdtemp()) / "tiny")
    items = load_tasks(ROOT / "data/eval/elyza_style.jsonl")[:24]
    convs = [[{"role": "user", "content": it.turns[0]}] for it in items]
    gen = TransformersGenerator(str(tiny), device="cpu")
    rows = []
    for batch in (1, 8):
        cfg = GenerationConfig(max_new_tokens=64, batch_size=batch)
        start = time.perf_counter()
        answers = gen.generate(convs, cfg)
        secs = time.perf_counter() - start
        tokens = gen.generated_tokens
        rows.append((f"generation, batch {batch}" + (" (baseline)" if batch == 1 else ""), tokens / secs))
    judge = TransformersJudge(str(tiny), device="cpu", batch_size=8)
    prompts = [elyza_prompt(it.turns[0], it.reference[0], it.eval_aspect, a) for it, a in zip(items, answers)]
    start = time.perf_counter()
    judge.judge(prompts, ELYZA_CHOICES)
    grade_rate = len(prompts) / (time.perf_counter() - start)
    base = rows[0][1]
    print(f"\n{'step (tiny Llama, CPU, 24 ELYZA items)':<44} {'rate':>14} {'ratio':>6}")
    for name, rate in rows:
        print(f"{name:<44} {rate:>8.0f} tok/s {rate / base:>6.2f}")
    print(f"{'grading, transformers judge, batch 8':<44} {grade_rate:>6.1f} items/s")


if __name__ == "__main__":
    main()
