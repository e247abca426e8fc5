"""The judge path run for real: llama.cpp's server and the packaged Gemma 3 270M on a real public pool.

    uv run --group judge-server python benchmarks/judge/distill.py --sample 600

1. The realistic instruction pool, curated (the selection benchmark's store is reused when it exists:
   ``runs/selection/instruction-k100/store.duckdb``; else ``jcurate run`` on ``runs/realdata/pool-instruction.yaml``
   from ``benchmarks/real_data/build_inputs.py``). The judging works on a copy.
2. Judge throughput on the same records, three ways, each in the same run: llama.cpp's server with logprobs
   (``--logits_all``: the baseline, the way the issue measured 0.2 records/s), the server with a constrained
   choice (a grammar, no logprobs: an integer score), and the library in process (``judge.backend:
   llama_cpp``: the digits' logits at the last position, the rubric prefix kept in the context).
3. ``jcurate judge --sample N`` with the library backend, then the judge's agreement with the reading labels
   of ``data/labels`` (Spearman over the labelled records kept in the run, judged the same way).
4. ``jcurate classifier train --labels judge`` (its held-out agreement with the judge),
   ``jcurate classifier score``, ``jcurate subset --top-k 100 --score classifier``.

Writes ``OUT/results.md`` (default ``runs/judge-distill``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.real_data.build_inputs import DEFAULT_REALDATA  # noqa: E402
from benchmarks.selection.run import curate_pool  # noqa: E402
from curate.scoring.classifier import spearman  # noqa: E402
from curate.scoring.judge import LlamaCppJudge, OpenAIJudge, build_prompt, sample_records  # noqa: E402
from curate.scoring.llama_server import PACKAGED_GEMMA, LlamaServer  # noqa: E402

LABELS = ROOT / "data" / "labels" / "real_labels.jsonl"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def jcurate(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "jcurate.cli", *args], cwd=ROOT, check=True)


def timed(backend, prompts: list[str]) -> tuple[list, float]:
    start = time.perf_counter()
    results = backend.judge(prompts)
    return results, time.perf_counter() - start


def throughput(db: Path, n: int, out: Path) -> list[dict]:
    con = duckdb.connect(str(db), read_only=True)
    items = sample_records(con, con.execute("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()[0],
                           n, seed=7)
    con.close()
    prompts = [build_prompt(r.prompt, r.output) for r in items]
    rows = []
    for name, logits_all, kw in [("server, logprobs (--logits_all)", True, {}),
                                 ("server, constrained choice (grammar)", False,
                                  {"logprobs": False, "constrained_choice": True})]:
        with LlamaServer(logits_all=logits_all, log_path=out / f"server-{logits_all}.log") as server:
            judge = OpenAIJudge(server.base_url, "gemma-3-270m", concurrency=1, timeout=300, **kw)
            judge.judge(prompts[:1])  # the rubric prefix into the server's context, as in a long run
            results, secs = timed(judge, prompts)
        rows.append(dict(way=name, results=results, secs=secs))
        log(f"{name}: {len(prompts) / secs:.2f} records/s")
    library = LlamaCppJudge(PACKAGED_GEMMA)
    library.judge(prompts[:1])
    results, secs = timed(library, prompts)
    library.close()
    rows.append(dict(way="library, last position (judge.backend: llama_cpp)", results=results, secs=secs))
    log(f"library: {len(prompts) / secs:.2f} records/s")
    base = rows[0]["secs"]
    for r in rows:
        r["records_per_second"] = len(prompts) / r["secs"]
        r["speedup"] = base / r["secs"]
        r["failed"] = sum(j.score is None for j in r["results"])
        r["scores"] = [j.score for j in r["results"]]
    return rows


def label_agreement(db: Path, backend) -> dict:
    """Judges every labelled record kept in the run; Spearman against the reading labels, overall and per source."""
    labels = {(x := json.loads(line))["record_id"]: x for line in LABELS.read_text(encoding="utf-8").splitlines()}
    con = duckdb.connect(str(db), read_only=True)
    run_id = con.execute("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()[0]
    kept = {r.record_id: r for r in sample_records(con, run_id, None, seed=0) if r.record_id in labels}
    con.close()
    ids = sorted(kept)
    start = time.perf_counter()
    judged = backend.judge([build_prompt(kept[i].prompt, kept[i].output) for i in ids])
    secs = time.perf_counter() - start
    pairs = [(labels[i]["source_id"], labels[i]["label"], j.score) for i, j in zip(ids, judged) if j.score is not None]
    out = {"n": len(pairs), "failed": len(ids) - len(pairs), "seconds": secs,
           "spearman": spearman([p[1] for p in pairs], [p[2] for p in pairs]), "per_source": {}}
    for source in sorted({p[0] for p in pairs}):
        sub = [p for p in pairs if p[0] == source]
        out["per_source"][source] = (len(sub), spearman([p[1] for p in sub], [p[2] for p in sub]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--realdata", type=Path, default=DEFAULT_REALDATA)
    ap.add_argument("--store", type=Path, default=ROOT / "runs" / "selection" / "instruction-k100" / "store.duckdb",
                    help="a curated instruction pool (curated here when absent)")
    ap.add_argument("--sample", type=int, default=600, help="records for `jcurate judge --sample`")
    ap.add_argument("--throughput-records", type=int, default=24)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "judge-distill")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    source = args.store if args.store.is_file() else curate_pool(args.realdata, "instruction", args.out / "pool")
    db = args.out / "store.duckdb"
    shutil.copy(source, db)
    log(f"judging on a copy of {source}")

    speed = throughput(db, args.throughput_records, args.out)

    config = args.out / "judge.yaml"
    config.write_text(yaml.safe_dump({"judge": {"backend": "llama_cpp", "model": PACKAGED_GEMMA}}), encoding="utf-8")
    start = time.perf_counter()
    jcurate("judge", "--sample", str(args.sample), "--config", str(config), "--db", str(db))
    judge_secs = time.perf_counter() - start
    agreement = label_agreement(db, LlamaCppJudge(PACKAGED_GEMMA))
    log(f"judge vs reading labels: Spearman {agreement['spearman']:.3f} over {agreement['n']}")

    jcurate("classifier", "train", "--labels", "judge", "--db", str(db))
    jcurate("classifier", "score", "--db", str(db))
    jcurate("subset", "--name", "judge-distilled-top100", "--top-k", "100", "--score", "classifier",
            "--out", str(args.out / "judge-distilled-top100.jsonl"), "--db", str(db))
    con = duckdb.connect(str(db), read_only=True)
    metrics = json.loads(con.execute("SELECT metrics FROM classifier_models WHERE label_scorer = 'judge' "
                                     "ORDER BY trained_at DESC LIMIT 1").fetchone()[0])
    judge_scores = [s for (s,) in con.execute("SELECT score FROM scores WHERE scorer = 'judge' AND score IS NOT NULL"
                                              ).fetchall()]
    failed = con.execute("SELECT count(*) FROM scores WHERE scorer = 'judge' AND score IS NULL").fetchone()[0]
    top = con.execute("""SELECT r.source_id, count(*) FROM subset_members m JOIN records r USING (record_id)
                         WHERE m.subset = 'judge-distilled-top100' GROUP BY 1 ORDER BY 2 DESC""").fetchall()
    con.close()

    lines = ["# The judge path on a real server (llama.cpp, Gemma 3 270M Q4_K_M, 2 cores)", "",
             f"Pool: the realistic instruction pool (`{source}`).", "",
             f"## Throughput, the same {args.throughput_records} records (baseline: the server with logprobs)", "",
             "| way | records/s | × baseline | failed | mean score |", "|---|---:|---:|---:|---:|"]
    for r in speed:
        ok = [s for s in r["scores"] if s is not None]
        lines.append(f"| {r['way']} | {r['records_per_second']:.2f} | {r['speedup']:.1f}× | {r['failed']} | "
                     f"{sum(ok) / max(len(ok), 1):.2f} |")
    server_scores, library_scores = speed[0]["scores"], speed[2]["scores"]
    both = [(a, b) for a, b in zip(server_scores, library_scores) if a is not None and b is not None]
    lines += ["", f"Server logprobs vs library scores, same records: Spearman "
                  f"{spearman([a for a, _ in both], [b for _, b in both]):.3f} (the server's score pools only the "
                  f"digits among its top 20 tokens; the library reads all five)", "",
              f"## `jcurate judge --sample {args.sample}` (library backend)", "",
              f"{len(judge_scores)} judged, {failed} failed, {judge_secs:.0f} s with the command's start "
              f"({args.sample / judge_secs:.2f} records/s); scores {min(judge_scores):.2f}–{max(judge_scores):.2f}, "
              f"mean {sum(judge_scores) / len(judge_scores):.2f}.", "",
              "## The judge against the reading labels (`data/labels`)", "",
              f"Spearman {agreement['spearman']:.3f} over {agreement['n']} labelled records kept in the run "
              f"({agreement['failed']} failed judgements, {agreement['n'] / agreement['seconds']:.2f} records/s).", "",
              "| source | n | Spearman |", "|---|---:|---:|"]
    lines += [f"| {s} | {n} | {rho:.3f} |" for s, (n, rho) in agreement["per_source"].items()]
    lines += ["", "## Distilled: `classifier train --labels judge` (held-out agreement with the judge)", "",
              f"n_train {metrics['n_train']}, n_test {metrics['n_test']}: accuracy {metrics['accuracy']:.3f} "
              f"(majority {metrics['majority_accuracy']:.3f}), macro-F1 {metrics['macro_f1']:.3f} (majority "
              f"{metrics['majority_macro_f1']:.3f}), Spearman {metrics['spearman']:.3f}.", "",
              "Top 100 by the distilled classifier, per source: "
              + ", ".join(f"{s} {n}" for s, n in top) + "."]
    (args.out / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
