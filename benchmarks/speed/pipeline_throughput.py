"""Throughput of `jcurate run` on a large input, and our MinHash against datasketch's MinHashLSH.

    uv run python benchmarks/speed/pipeline_throughput.py [--n 200000] [--workers 2]

The input replicates the hand-written sample with perturbations (word swaps, changed
numbers, re-ordered sentences, an added sentence) into JSONL shards. Reported per stage:
records in, seconds, records/s; peak RSS of the main process and of the workers. The
baseline, run in the same process on the same records, is datasketch: MinHash over the
same character 5-gram shingles with the same 20x5 banding, inserted into MinHashLSH and
queried, and the candidate pairs joined into clusters. Its time is compared to ours
(MinHash signature step + LSH buckets stage + dedup plan) as a ratio.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

SWAPS = [("です", "である"), ("ます", "る"), ("とても", "非常に"), ("重要", "大切"), ("方法", "やり方"),
         ("場合", "とき"), ("多く", "たくさん"), ("簡単", "容易")]
EXTRA = ["詳しくは専門家に相談してください。", "参考になれば幸いです。", "状況によって異なります。",
         "以上が主なポイントです。", "ぜひ試してみてください。"]


def base_records() -> list[dict]:
    rows = []
    for path in sorted((ROOT / "data/handwritten").glob("*.jsonl")):
        if path.stem in ("chinese", "english", "multiturn", "contaminated"):
            continue
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows


def perturb(r: dict, i: int, rng: random.Random) -> dict:
    out = r["output"]
    for old, new in rng.sample(SWAPS, 2):
        out = out.replace(old, new, 1)
    out = "".join(ch if not ch.isdigit() or rng.random() > 0.3 else str(rng.randint(0, 9)) for ch in out)
    sentences = [s for s in out.split("。") if s]
    if len(sentences) > 2 and rng.random() < 0.5:
        rng.shuffle(sentences)
        out = "。".join(sentences) + "。"
    out += rng.choice(EXTRA) + f"（整理番号{i}）"
    return {"id": f"b{i}", "instruction": r["instruction"], "input": r.get("input", ""), "output": out}


def real_base_records(store: Path) -> list[dict]:
    """The kept single-turn records of a curated real pool (the selection benchmark's store of the realistic
    instruction pool: MultiAlpaca-ja, instruction_ja, the Alpaca translation, Alpaca-jp, amenokaku...)."""
    import duckdb

    con = duckdb.connect(str(store), read_only=True)
    rows = con.execute("""SELECT r.instruction, coalesce(r.input, ''), r.output FROM records r
                          JOIN record_fate f USING (record_id)
                          WHERE f.kept AND r.messages IS NULL AND r.output <> '' ORDER BY r.record_id""").fetchall()
    con.close()
    return [{"instruction": a, "input": b, "output": c} for a, b, c in rows]


def make_input(n: int, folder: Path, shards: int, base: list[dict] | None = None) -> Path:
    rng = random.Random(7)
    base = base or base_records()
    files = [open(folder / f"part-{k:02d}.jsonl", "w", encoding="utf-8") for k in range(shards)]
    for i in range(n):
        files[i % shards].write(json.dumps(perturb(base[i % len(base)], i, rng), ensure_ascii=False) + "\n")
    for f in files:
        f.close()
    manifest = folder / "sources.yaml"
    manifest.write_text(
        f"sources:\n  - id: bench\n    path: {folder}\n    format: jsonl\n    license: CC-BY-4.0\n"
        "    fields: {instruction: instruction, input: input, output: output}\n    id_field: id\n", encoding="utf-8")
    return manifest


def step_seconds(stats_file: Path) -> dict[str, float]:
    """Total seconds per pipeline step, from the stats.json datatrove writes per stage."""
    data = json.loads(stats_file.read_text())
    return {s["name"]: s["time_stats"]["total"] for s in data if isinstance(s.get("time_stats"), dict)}  # a counter step has 0


def signature_seconds(texts: list[str], near) -> float:
    """The pipeline's signature step (``curate.dedup.minhash``) over the texts, bucket files included."""
    from datatrove.data import Document

    from curate.dedup.minhash import OnePermutationMinhashSignature
    from curate.dedup.near_duplicates import minhash_config
    from curate.text.tokenizers import make_tokenizer

    step = OnePermutationMinhashSignature(tempfile.mkdtemp(), config=minhash_config(near),
                                          language=make_tokenizer(near.tokens))
    docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
    start = time.perf_counter()
    for _ in step.run(iter(docs)):
        pass
    return time.perf_counter() - start


def datasketch_baseline(texts: list[str], n_grams: int, bands: int, rows: int) -> tuple[float, int]:
    from datasketch import MinHash, MinHashLSH
    from datatrove.utils.text import simplify_text

    from curate.dedup.near_duplicates import NORM
    from curate.text.tokenizers import CharTokenizer

    tok = CharTokenizer()
    start = time.perf_counter()
    lsh = MinHashLSH(num_perm=bands * rows, params=(bands, rows))
    sigs = []
    for i, text in enumerate(texts):
        chars = tok.word_tokenize(simplify_text(text, NORM))
        shingles = {"".join(chars[j:j + n_grams]).encode() for j in range(max(1, len(chars) - n_grams + 1))}
        m = MinHash(num_perm=bands * rows, seed=1)
        m.update_batch(list(shingles))
        lsh.insert(i, m)
        sigs.append(m)
    parent = list(range(len(texts)))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, m in enumerate(sigs):
        for j in lsh.query(m):
            a, b = find(i), find(j)
            if a != b:
                parent[max(a, b)] = min(a, b)
    removed = sum(1 for i in range(len(texts)) if find(i) != i)
    return time.perf_counter() - start, removed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()

    import duckdb

    from curate.config import PipelineConfig
    from curate.reading.manifest import load_manifest
    from curate.running.pipeline import ExecutorOptions, run_stages
    from curate.running.report import build_report

    tmp = Path(tempfile.mkdtemp(prefix="jcurate-bench-"))
    t0 = time.perf_counter()
    manifest = make_input(args.n, tmp, args.shards)
    print(f"input: {args.n} records in {args.shards} shards ({time.perf_counter() - t0:.1f}s to write) at {tmp}")
    config = PipelineConfig()
    config.validate()
    out = tmp / "out"
    timings = run_stages(load_manifest(manifest), config, out, ExecutorOptions(workers=args.workers), log=lambda m: None)
    report = build_report(out, timings)

    filter_steps = step_seconds(out / "work/logs/filter/stats.json")
    print(f"\n{'stage':<18} {'records in':>10} {'wall s':>8} {'records/s':>10}")
    n_filtered = report["read"] - sum(report["dropped"][s] for s in ("read", "quality", "language"))
    rows_in = {"filter": report["read"], "minhash-buckets": n_filtered, "near-pairs": n_filtered,
               "near-verify": n_filtered, "dedup-plan": n_filtered, "dedup-decont": n_filtered}
    for stage, secs in timings.items():
        print(f"{stage:<18} {rows_in[stage]:>10} {secs:>8.1f} {rows_in[stage] / secs:>10.0f}")
    total = sum(timings.values())
    print(f"{'total':<18} {report['read']:>10} {total:>8.1f} {report['read'] / total:>10.0f}")
    print("\nstep CPU seconds inside the filter stage (all tasks; datatrove times the last step around its"
          " whole input loop, so its figure includes the steps before it):")
    for name, secs in filter_steps.items():
        print(f"  {name:<40} {secs:8.1f}")
    print(f"\nkept {report['kept']}, dropped {report['dropped']}")
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS: main process {peak_self:.0f} MiB, largest worker {peak_children:.0f} MiB")

    if args.no_baseline:
        return
    texts = [r[0] for r in duckdb.connect().execute(
        f"SELECT text FROM read_parquet('{out}/work/filtered/*.parquet')").fetchall()]
    # datatrove times the signature step around its whole input loop (upstream steps included),
    # so the signatures are timed here, in this process, on the same texts, like the baseline
    sig_secs = signature_seconds(texts, config.near_dedup)
    plan_secs = timings.get("near-pairs", 0.0) + timings.get("near-verify", 0.0) + timings["dedup-plan"]
    ours = sig_secs + timings["minhash-buckets"] + plan_secs
    print(f"\nMinHash signatures in-process: {sig_secs:.1f}s ({len(texts) / sig_secs:.0f} records/s)")
    base_secs, base_removed = datasketch_baseline(texts, config.near_dedup.n_grams, config.near_dedup.num_buckets,
                                                  config.near_dedup.hashes_per_bucket)
    ours_removed = report["dropped"]["exact_dedup"] + report["dropped"]["near_dedup"]
    print(f"\n{'MinHash dedup on ' + str(len(texts)) + ' records':<44} {'seconds':>8} {'removed':>8} {'ratio':>6}")
    print(f"{'jcurate (datatrove sig + buckets + plan)':<44} {ours:>8.1f} {ours_removed:>8} {1.0:>6.2f}")
    print(f"{'  of which: signatures / buckets / verify + plan':<44} {sig_secs:.1f} / "
          f"{timings['minhash-buckets']:.1f} / {plan_secs:.1f}")
    print(f"{'datasketch MinHashLSH (baseline)':<44} {base_secs:>8.1f} {base_removed:>8} {base_secs / ours:>6.2f}")
    print(f"(ratio = seconds / jcurate seconds. Signatures and datasketch run on one core here; the buckets stage ran "
          f"with {args.workers} workers. datasketch does not verify candidate pairs by Jaccard.)")


if __name__ == "__main__":
    main()
