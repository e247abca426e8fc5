"""The MinHash signature step against datatrove's ``MinhashDedupSignature`` (the baseline) on the same texts.

    uv run python benchmarks/speed/minhash_step.py [--n 20000]

Both steps run whole, as a pipeline runs them: n-grams, signatures, the 20 bucket files written and
sorted, on the perturbed replicas of pipeline_throughput.py (one task, one process). Printed: seconds
and records/s of each and the ratio; then how well each signature's agreement estimates the true
character 5-gram Jaccard of 1,800 pairs of perturbed replicas of one record and 200 random pairs
(mean error and RMSE: both should be near 0 and about the same).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.speed.pipeline_throughput import make_input  # noqa: E402


def timed_run(step, texts: list[str]) -> float:
    from datatrove.data import Document

    docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
    start = time.perf_counter()
    for _ in step.run(iter(docs), rank=0, world_size=1) or ():
        pass
    return time.perf_counter() - start


def main() -> None:
    from datatrove.pipeline.dedup.minhash import MinhashDedupSignature

    from curate.config import NearDedupConfig
    from curate.dedup.minhash import OnePermutationMinhashSignature
    from curate.dedup.near_duplicates import char_shingle_hashes, jaccard, minhash_config
    from curate.text.tokenizers import make_tokenizer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="jcurate-minhash-"))
    make_input(args.n, tmp, shards=1)
    rows = [json.loads(line) for line in (tmp / "part-00.jsonl").read_text(encoding="utf-8").splitlines()]
    texts = ["\n".join(p for p in (r["instruction"], r.get("input") or "", r["output"]) if p) for r in rows]
    near = NearDedupConfig()
    theirs = MinhashDedupSignature(str(tmp / "datatrove"), config=minhash_config(near), language=make_tokenizer("chars"))
    ours = OnePermutationMinhashSignature(str(tmp / "ours"), config=minhash_config(near), language=make_tokenizer("chars"))
    t_theirs = timed_run(theirs, texts)
    t_ours = timed_run(ours, texts)
    n = len(texts)
    print(f"\n{n} records, {sum(map(len, texts)) / n:.0f} characters each on average, "
          f"{near.num_buckets} bands x {near.hashes_per_bucket}")
    print(f"{'step':<46} {'s':>7} {'records/s':>10}")
    print(f"  {'datatrove MinhashDedupSignature (baseline)':<44} {t_theirs:>7.2f} {n / t_theirs:>10,.0f}")
    print(f"  {'OnePermutationMinhashSignature':<44} {t_ours:>7.2f} {n / t_ours:>10,.0f}")
    print(f"speed-up: {t_theirs / t_ours:.1f}x (target >= 4x)")

    rng = random.Random(0)
    replicas: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        replicas.setdefault(r["instruction"], []).append(i)
    groups = [g for g in replicas.values() if len(g) > 1]
    pairs = [tuple(rng.sample(rng.choice(groups), 2)) for _ in range(1800)]  # replicas of one record
    pairs += [(rng.randrange(n), rng.randrange(n)) for _ in range(200)]  # mostly unrelated
    errors = {"datatrove": [], "one permutation": []}
    for a, b in pairs:
        truth = jaccard(char_shingle_hashes(texts[a], 5), char_shingle_hashes(texts[b], 5))
        sa, sb = (np.concatenate(theirs.get_signature(theirs.get_shingles(t))) for t in (texts[a], texts[b]))
        errors["datatrove"].append(float((sa == sb).mean()) - truth)
        (oa, ob), _ = ours.signatures([texts[a], texts[b]])
        errors["one permutation"].append(float((oa == ob).mean()) - truth)
    print(f"\nagreement of {len(pairs)} pairs as a Jaccard estimate (100 values per signature)")
    for name, e in errors.items():
        print(f"  {name:<20} mean error {np.mean(e):+.3f}  RMSE {np.sqrt(np.mean(np.square(e))):.3f}")


if __name__ == "__main__":
    main()
