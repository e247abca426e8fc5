"""Scoring throughput: the shipped scorers and the fastText classifier vs the transformers judge (tiny model)
vs embeddings.

    uv run python benchmarks/speed/scoring_throughput.py [--n 200000]

Baseline: the transformers judge on a tiny random Llama model (the cheapest judge there is);
the classifier and the embedding backend are reported as multiples of its records/s.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--judge-n", type=int, default=128)
    parser.add_argument("--embed-n", type=int, default=2000)
    args = parser.parse_args()

    from benchmarks.speed.pipeline_throughput import base_records, perturb
    from curate.scoring.classifier import QualityClassifier, train_classifier
    from curate.scoring.embeddings import Embedder
    from curate.scoring.judge import TransformersJudge, build_prompt
    from jcurate.cli import main as jcurate
    from train.tiny import build_tiny_model

    tmp = Path(tempfile.mkdtemp(prefix="jcurate-scoring-"))
    assert jcurate(["run", "--out", str(tmp / "out"), "--db", str(tmp / "db.duckdb")]) == 0
    model = train_classifier(tmp / "db.duckdb", tmp / "models", log=lambda m: None)
    rng = random.Random(3)
    base = base_records()
    records = [perturb(base[i % len(base)], i, rng) for i in range(args.n)]
    texts = [f"{r['instruction']}\n\n{r['output']}" for r in records]

    clf = QualityClassifier(model["path"])
    start = time.perf_counter()
    clf.score(texts)
    clf_rate = args.n / (time.perf_counter() - start)

    judge = TransformersJudge(str(build_tiny_model(tmp / "tiny")), device="cpu", batch_size=16)
    prompts = [build_prompt(r["instruction"], r["output"]) for r in records[: args.judge_n]]
    start = time.perf_counter()
    judge.judge(prompts)
    judge_rate = args.judge_n / (time.perf_counter() - start)

    from curate.scoring.shipped_scorer import ShippedScorer, ShippedScoreStep

    shipped = {}
    batch = ShippedScoreStep.batch_size  # the dedup-decont workers' batches
    for name in ("jquality-v1", "jquality-v2", "jquality-v3", "jquality-v4", "jquality-v5"):
        scorer = ShippedScorer(name)
        start = time.perf_counter()
        for i in range(0, args.n, batch):
            scorer.score(records[i:i + batch])
        shipped[name] = args.n / (time.perf_counter() - start)

    embedder = Embedder("use")
    start = time.perf_counter()
    embedder.encode(texts[: args.embed_n])
    embed_rate = args.embed_n / (time.perf_counter() - start)

    print(f"\n{'scorer':<52} {'records':>8} {'records/s':>10} {'x judge':>8}")
    print(f"{'transformers judge, tiny Llama, CPU (baseline)':<52} {args.judge_n:>8} {judge_rate:>10.1f} {1.0:>8.1f}")
    print(f"{'fastText classifier (fugashi tokenisation included)':<52} {args.n:>8} {clf_rate:>10.0f} "
          f"{clf_rate / judge_rate:>8.0f}")
    for name, rate in shipped.items():
        print(f"{'shipped scorer ' + name + ' (features included)':<52} {args.n:>8} {rate:>10.0f} {rate / judge_rate:>8.0f}")
    print(f"{'USE multilingual embeddings (numpy)':<52} {args.embed_n:>8} {embed_rate:>10.0f} "
          f"{embed_rate / judge_rate:>8.1f}")
    print(f"\nclassifier held-out agreement with the labels: accuracy {model['accuracy']:.3f} "
          f"(majority {model['majority_accuracy']:.3f}), macro-F1 {model['macro_f1']:.3f} "
          f"(majority {model['majority_macro_f1']:.3f}), Spearman {model['spearman']:.3f}, n_test {model['n_test']}")


if __name__ == "__main__":
    main()
