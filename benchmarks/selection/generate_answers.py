"""Answers to ELYZA-tasks-100 from the selection benchmark's LoRA arms, for the blind pairwise reading.

    uv run --group experiment python benchmarks/selection/generate_answers.py \
        --out runs/selection/instruction-k300 --arms random longest model:jquality-v2 --seed 0

Per arm, the adapter ``run.py`` trained (``OUT/adapters/<arm>-s<seed>``) is merged into Gemma 3 270M and
answers every test item with min_p sampling and a repetition penalty: greedy decoding makes the tuned 270M
model loop on one phrase whatever the arm. The sampling settings are fixed in advance (not tuned on the
test set) and the same for every arm; each arm uses the same sampling seed. Answers are appended per batch
to ``OUT/answers/<arm>-s<seed>.jsonl``, so a killed run resumes where it stopped. ``blind_pairs.py`` turns
them into blind pairs for readers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.real_data.build_inputs import DEFAULT_REALDATA  # noqa: E402
from benchmarks.selection.run import SETS, arm_tag, log  # noqa: E402


def generate_arm(arm: str, seed: int, args) -> Path:
    from eval.generate import GenerationConfig, TransformersGenerator
    from eval.tasks import load_tasks

    tag = f"{arm_tag(arm)}-s{seed}"
    adapter = args.out / "adapters" / tag
    if not (adapter / "adapter_config.json").is_file():
        raise SystemExit(f"{adapter}: no trained adapter; run benchmarks/selection/run.py for arm {arm} seed {seed}")
    path = args.out / "answers" / f"{tag}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if path.is_file():
        done = {json.loads(line)["item_id"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}
    items = load_tasks(args.realdata / SETS["test"], warn=lambda m: None)[: args.items]
    todo = [it for it in items if it.item_id not in done]
    if not todo:
        return path
    gen = TransformersGenerator(str(args.model_dir), str(adapter))
    gen.lm = gen.lm.merge_and_unload()  # one matrix per layer: faster than the adapter beside it
    cfg = GenerationConfig(max_new_tokens=args.max_new_tokens, do_sample=True, temperature=args.temperature,
                           min_p=args.min_p, repetition_penalty=args.repetition_penalty,
                           batch_size=args.batch_size, seed=seed)
    start = time.perf_counter()
    for i in range(0, len(todo), args.batch_size):
        batch = todo[i:i + args.batch_size]
        cfg.seed = seed * 100_003 + len(done) + i  # the same per position for every arm
        answers = gen.generate([[{"role": "user", "content": it.turns[0]}] for it in batch], cfg)
        with path.open("a", encoding="utf-8") as f:
            for it, answer in zip(batch, answers):
                f.write(json.dumps({"item_id": it.item_id, "arm": arm, "seed": seed, "answer": answer},
                                   ensure_ascii=False) + "\n")
        n = i + len(batch)
        log(f"{arm} seed {seed}: {len(done) + n}/{len(items)} answers "
            f"({(time.perf_counter() - start) / n:.1f} s per item)")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="a run.py output folder (holds adapters/)")
    ap.add_argument("--arms", nargs="+", default=["random", "longest", "model:jquality-v2"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--items", type=int, default=100, help="the first N test items")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--min-p", type=float, default=0.1)
    ap.add_argument("--repetition-penalty", type=float, default=1.15)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--realdata", type=Path, default=DEFAULT_REALDATA)
    ap.add_argument("--model-dir", type=Path, default=ROOT / "models/gemma-3-270m")
    args = ap.parse_args()
    args.out = args.out.resolve()
    for arm in args.arms:
        log(f"answers in {generate_arm(arm, args.seed, args)}")


if __name__ == "__main__":
    main()
