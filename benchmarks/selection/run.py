"""The selection benchmark: which selector's top-k trains the better model? One command, resumable.

    uv run --group experiment python benchmarks/selection/run.py --pool instruction --k 100 --seeds 0 1 2 \
        --arms random longest model:jquality-v1 model:jquality-v2

1. Gemma 3 270M from its PyPI package as a transformers folder (``benchmarks/topk_vs_random/prepare_gemma.py``).
2. One ``jcurate run`` per pool (``runs/realdata/pool-<pool>.yaml``, built by
   ``benchmarks/real_data/build_inputs.py``), decontaminated against the test set (ELYZA-tasks-100) and the
   dev set (Japanese MT-Bench first turns with gpt-4o references checked by people).
3. Every selector scores the run's kept records into the store (scorer ``sel-<arm>``): ``longest`` the
   answer's length in characters (the "Long Is More" baseline), ``model:<name>`` a shipped-scorer model
   (``curate/scoring/models/<name>`` or a folder); ``random`` needs no score. A scored arm with the suffix
   ``+per-source`` (``model:jquality-v4+per-source``) takes its top-k within each source in proportion to the
   pool (``jcurate subset --per-source``); ``+per-source-min4`` counts each source's share over its records
   scoring at least 4 (``--quota-min-score 4``).
4. Per arm and seed: ``jcurate subset`` (same k, same license filter), LoRA with the same recipe and seed
   (``train-gemma3-270m-lora.yaml`` of the top-k experiment), and the judge-free reference NLL of the dev
   and the test set, each also with the end tokens' probability renormalised away (``eval/likelihood.py``).
   Each arm's per-item results go to ``OUT/arms/<arm>-s<seed>.json``: a re-run skips what is done, so arms
   can be added later and a killed run resumes. A copy goes to ``benchmarks/selection/results/arms/<pool>-k<k>/``
   (committed), with a fingerprint of what decides the result (the records in rank order with their texts, the
   recipe, the seed, the NLL's token limit):
   on a fresh machine an arm whose fingerprint matches is reused, not trained again.
5. ``OUT/results.md``: per arm the mean NLLs, and the paired bootstrap of each arm against random and
   against longest, pooled over seeds (pairs: the same item under the same seed). The dev set chooses; the
   test set is reported, never used to choose.
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
sys.path.insert(0, str(ROOT))

from benchmarks.real_data.build_inputs import DEFAULT_REALDATA  # noqa: E402
from curate.scoring.kept_scores import answer_lengths  # noqa: E402

TOPK = ROOT / "benchmarks" / "topk_vs_random"
SETS = {"dev": "eval/japanese_mt_bench.jsonl", "test": "eval/elyza_tasks_100.jsonl"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def jcurate(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "jcurate.cli", *args], cwd=ROOT, check=True)


PER_SOURCE = "+per-source"  # an arm's suffix: its top-k taken within each source in proportion to the pool
MIN = "-min"  # ``+per-source-min4``: the quotas in proportion to each source's records scoring at least 4


def split_arm(arm: str) -> tuple[str, bool, float | None]:
    """(the selector, whether its top-k is taken per source, the quotas' minimum score):
    ``model:jquality-v4+per-source`` is ``jcurate subset --top-k K --per-source`` by jquality-v4,
    ``model:jquality-v4+per-source-min4`` adds ``--quota-min-score 4``."""
    if PER_SOURCE not in arm:
        return arm, False, None
    base, _, rest = arm.partition(PER_SOURCE)
    if base == "random":
        raise SystemExit("random+per-source: a random draw already keeps the pool's mix; use random")
    if not rest:
        return base, True, None
    if rest.startswith(MIN):
        try:
            return base, True, float(rest[len(MIN):])
        except ValueError:
            pass
    raise SystemExit(f"arm {arm!r}: after {PER_SOURCE} only {MIN}<score> (e.g. {base}{PER_SOURCE}{MIN}4)")


def selector_scores(arm: str):
    """(scorer name, score function over KeptRecords) of a scored arm; None for random."""
    if arm == "random":
        return None
    if arm == "longest":
        return "sel-longest", answer_lengths
    if arm.startswith("model:"):
        from curate.scoring.shipped_scorer import ShippedScorer

        ref = arm.split(":", 1)[1]
        scorer = ShippedScorer(folder=Path(ref)) if "/" in ref else ShippedScorer(ref)
        return f"sel-{Path(ref).name}", scorer.score_kept
    raise SystemExit(f"unknown arm {arm!r}: random | longest | model:<name or folder>")


def curate_pool(realdata: Path, pool: str, out: Path) -> Path:
    db = out / "store.duckdb"
    if db.is_file():
        return db
    manifest = realdata / f"pool-{pool}.yaml"
    if not manifest.is_file():
        raise SystemExit(f"{manifest} not found: run benchmarks/real_data/build_inputs.py first")
    cfg = yaml.safe_load((TOPK / "curate.yaml").read_text(encoding="utf-8"))
    cfg["decontamination"]["eval_files"] = [str(realdata / p) for p in SETS.values()]
    path = out / "curate.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    start = time.perf_counter()
    jcurate("run", "--sources", str(manifest), "--out", str(out / "curation"), "--db", str(db),
            "--config", str(path), "--workers", "2")
    log(f"curated pool {pool} in {time.perf_counter() - start:.0f} s")
    return db


def store_selector(db: Path, arm: str) -> str | None:
    spec = selector_scores(arm)
    if spec is None:
        return None
    name, fn = spec
    from curate.scoring.kept_scores import store_kept_scores
    from store.connection import connect
    from store.runs import resolve_run

    con = connect(db)
    try:
        run_id = resolve_run(con, None)
        if not con.execute("SELECT 1 FROM scores WHERE scorer = ? AND run_id = ? LIMIT 1", [name, run_id]).fetchone():
            n, secs = store_kept_scores(con, run_id, name, name, fn)
            log(f"{arm}: scored {n} kept records ({n / max(secs, 1e-9):.0f} records/s)")
    finally:
        con.close()
    return name


def measure(model: Path, adapter: Path | None, realdata: Path, max_tokens: int) -> dict:
    """Reference NLL (and its end-renormalised variant) per item of the dev and the test set."""
    from eval.generate import load_causal_lm
    from eval.likelihood import reference_nll, reference_pairs
    from eval.tasks import load_tasks

    lm, tok, device = load_causal_lm(str(model), str(adapter) if adapter else None)
    out = {}
    for name, rel in SETS.items():
        pairs = reference_pairs(load_tasks(realdata / rel, warn=lambda m: None))
        results = reference_nll(lm, tok, pairs, batch_size=4, max_tokens=max_tokens, device=device)
        out[name] = {r.item_id: [r.nll, r.nll_no_end, r.tokens] for r in results}
    return out


def run_arm(arm: str, seed: int, args, db: Path, model: Path, out: Path) -> dict:
    from curate.handover.subsets import SubsetCriteria, create_subset
    from licenses.catalogue import load_catalogue
    from store.connection import connect
    from train.config import load_train_config
    from train.sft import run_training

    tag = arm_tag(arm)
    result_file = out / "arms" / f"{tag}-s{seed}.json"
    if result_file.is_file():
        return json.loads(result_file.read_text(encoding="utf-8"))
    selector, per_source, quota_min_score = split_arm(arm)
    scorer = store_selector(db, selector)
    name = f"sel-{args.pool}-k{args.k}-{tag}-s{seed}"
    criteria = (SubsetCriteria(name=name, license_use=args.license_use, random=args.k, seed=seed) if scorer is None
                else SubsetCriteria(name=name, license_use=args.license_use, top_k=args.k, score=scorer,
                                    per_source=per_source, quota_min_score=quota_min_score))
    subset = create_subset(db, criteria, load_catalogue(), replace=True)
    con = connect(db, read_only=True)
    try:
        mix = dict(con.execute("""SELECT r.source_id, count(*) FROM subset_members m JOIN records r USING (record_id)
                                  WHERE m.subset = ? GROUP BY 1 ORDER BY 2 DESC""", [name]).fetchall())
        chars = con.execute("""SELECT avg(length(coalesce(r.output, r.text))) FROM subset_members m
                               JOIN records r USING (record_id) WHERE m.subset = ?""", [name]).fetchone()[0]
        members = subset_members(con, name)
    finally:
        con.close()
    recipe_text = (TOPK / "train-gemma3-270m-lora.yaml").read_text(encoding="utf-8")
    fingerprint = arm_fingerprint(members, recipe_text, seed, args.max_tokens)
    kept = committed_result(args.pool, args.k, tag, seed, fingerprint)
    if kept is not None:
        log(f"{arm} seed {seed}: the same records, recipe and seed were measured before; "
            f"reusing {shown(kept_path(args.pool, args.k, tag, seed))}")
        save_result(kept, result_file)
        return kept
    train_cfg = yaml.safe_load(recipe_text)
    train_cfg["model"]["model_name_or_path"] = str(model)
    train_cfg["data"].update(subset=name, db=str(db), file=None)
    adapter = out / "adapters" / f"{tag}-s{seed}"
    train_cfg["training"].update(output_dir=str(adapter), seed=seed)
    cfg_path = out / "adapters" / f"{tag}-s{seed}.yaml"
    cfg_path.parent.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(yaml.safe_dump(train_cfg, allow_unicode=True), encoding="utf-8")
    start = time.perf_counter()
    trained = run_training(load_train_config(cfg_path), log=lambda m: None)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    nll = measure(model, adapter, args.realdata, args.max_tokens)
    result = {"arm": arm, "seed": seed, "k": args.k, "pool": args.pool, "n_records": subset["n_records"], "mix": mix,
              "mean_answer_chars": chars, "train_seconds": round(train_s, 1), "eval_seconds":
              round(time.perf_counter() - start, 1), "train_loss_last": trained.get("train_loss_last"),
              "fingerprint": fingerprint, **nll}
    save_result(result, result_file, kept_path(args.pool, args.k, tag, seed))
    log(f"{arm} seed {seed}: dev {mean(result, 'dev'):.4f} test {mean(result, 'test'):.4f} "
        f"(train {train_s:.0f} s, eval {result['eval_seconds']:.0f} s; mix {mix})")
    return result


KEPT = ROOT / "benchmarks" / "selection" / "results" / "arms"  # committed: a LoRA arm costs 8-20 min of CPU


def save_result(result: dict, *paths: Path) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, ensure_ascii=False, indent=0), encoding="utf-8")


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def kept_path(pool: str, k: int, tag: str, seed: int) -> Path:
    return KEPT / f"{pool}-k{k}" / f"{tag}-s{seed}.json"


def subset_members(con, name: str) -> list[tuple[str, ...]]:
    """The subset's records in rank order, each as its id and the fields its training example is built from."""
    rows = con.execute("""SELECT m.record_id, r.instruction, r.input, r.output, r.messages::VARCHAR
                          FROM subset_members m JOIN records r USING (record_id) WHERE m.subset = ?
                          ORDER BY m.rank""", [name]).fetchall()
    return [tuple("" if v is None else v for v in row) for row in rows]


def arm_fingerprint(members: list[tuple[str, ...]], recipe_text: str, seed: int, max_tokens: int) -> str:
    """What decides an arm's result: its records in rank order with the texts it trains on (the same ids
    curated by another normaliser are other examples), the LoRA recipe, the seed and the NLL's token limit
    (the base model is the packaged GGUF's, pinned by the lock file). A member given as its id alone hashes
    as the fingerprints of results committed before the texts counted did."""
    import hashlib

    h = hashlib.sha256()
    for part in (*("\x1f".join(member) for member in members), recipe_text, str(seed), str(max_tokens)):
        h.update(part.encode("utf-8") + b"\0")
    return h.hexdigest()[:16]


def committed_result(pool: str, k: int, tag: str, seed: int, fingerprint: str) -> dict | None:
    """An arm measured in an earlier session and committed under ``KEPT``, if it trained exactly these records
    with this recipe and seed: the per-item NLLs are then reused instead of training again."""
    path = kept_path(pool, k, tag, seed)
    if not path.is_file():
        return None
    result = json.loads(path.read_text(encoding="utf-8"))
    if result.get("fingerprint") != fingerprint:
        log(f"{shown(path)} holds another selection or recipe (fingerprint {result.get('fingerprint')} "
            f"!= {fingerprint}): training again")
        return None
    return result


def arm_tag(arm: str) -> str:
    """An arm's name as a file name: ``OUT/arms/<tag>-s<seed>.json``, ``OUT/adapters/<tag>-s<seed>``."""
    return arm.replace(":", "-").replace("/", "_")


def mean(result: dict, split: str, variant: int = 0) -> float:
    return float(np.mean([v[variant] for v in result[split].values()]))


def differences(results: dict, arm: str, base: str, split: str, variant: int, seeds: list[int]) -> list[float]:
    """arm − base per (seed, item) that both have."""
    diffs = []
    for s in seeds:
        a, b = results.get((arm, s)), results.get((base, s))
        if a and b:
            diffs += [a[split][i][variant] - b[split][i][variant] for i in a[split] if i in b[split]]
    return diffs


def interval(diffs: list[float]):
    """(mean, low, high, n): the mean difference with a 95% bootstrap interval; None without pairs."""
    from eval.compare import bootstrap_ci

    if not diffs:
        return None
    low, high = bootstrap_ci(np.array(diffs))
    return float(np.mean(diffs)), low, high, len(diffs)


def paired(results: dict, arm: str, base: str, split: str, variant: int, seeds: list[int]):
    """Pooled paired differences arm − base over (seed, item), with a 95% bootstrap interval."""
    return interval(differences(results, arm, base, split, variant, seeds))


def report(results: dict, base: dict, args, out: Path) -> str:
    arms = list(dict.fromkeys(a for a, _ in results))
    lines = [f"# Selection benchmark: pool `{args.pool}`, k = {args.k}, license filter `{args.license_use}`", "",
             "Gemma 3 270M + LoRA (same recipe and seed per arm); mean reference NLL per token (nats, lower is "
             "better) on the dev set (Japanese MT-Bench first turns, 80) and the test set (ELYZA-tasks-100); "
             "`no-end`: the end tokens' probability renormalised away. Differences pooled over seeds, paired by "
             "(seed, item), 95% bootstrap.", "",
             f"Base model, no LoRA: dev {mean(base, 'dev'):.4f} (no-end {mean(base, 'dev', 1):.4f}), test "
             f"{mean(base, 'test'):.4f} (no-end {mean(base, 'test', 1):.4f}).", "",
             "| arm | seeds | answer chars | dev | dev no-end | test | test no-end |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for arm in arms:
        rs = [r for (a, _), r in results.items() if a == arm]
        cells = [f"{np.mean([mean(r, sp, v) for r in rs]):.4f}" for sp in ("dev", "test") for v in (0, 1)]
        lines.append(f"| {arm} | {len(rs)} | {np.mean([r['mean_answer_chars'] for r in rs]):.0f} | " + " | ".join(cells) + " |")
    for base_arm in [a for a in args.against if a in arms]:
        lines += ["", f"Against `{base_arm}` (arm − {base_arm}; negative: the arm is better):", "",
                  "| arm | dev | dev no-end | test | test no-end |", "| --- | --- | --- | --- | --- |"]
        for arm in arms:
            if arm == base_arm:
                continue
            cells = []
            for sp in ("dev", "test"):
                for v in (0, 1):
                    p = paired(results, arm, base_arm, sp, v, args.seeds)
                    cells.append("–" if p is None else f"{p[0]:+.4f} [{p[1]:+.4f}, {p[2]:+.4f}]")
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines += ["", "Mix of each arm (seed 0 or first):", ""]
    for arm in arms:
        r = next(r for (a, _), r in sorted(results.items()) if a == arm)
        lines.append(f"- `{arm}`: " + ", ".join(f"{k} {v}" for k, v in r["mix"].items()))
    text = "\n".join(lines) + "\n"
    (out / "results.md").write_text(text, encoding="utf-8")
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", default="instruction", choices=["instruction", "mixed"])
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--arms", nargs="+", default=["random", "longest", "model:jquality-v1"])
    ap.add_argument("--license-use", default="non-commercial",
                    help="the same license filter for every arm (default: non-commercial, a research benchmark)")
    ap.add_argument("--realdata", type=Path, default=DEFAULT_REALDATA)
    ap.add_argument("--out", type=Path, default=None, help="default: runs/selection/<pool>-k<k>")
    ap.add_argument("--model-dir", type=Path, default=ROOT / "models/gemma-3-270m")
    ap.add_argument("--max-tokens", type=int, default=768, help="reference NLL: prompt + reference tokens")
    ap.add_argument("--against", nargs="+", default=["random", "longest"],
                    help="the arms every other arm is compared with, pairwise (those measured)")
    ap.add_argument("--report-only", action="store_true", help="write the table from the arms already measured")
    args = ap.parse_args()
    out = (args.out or ROOT / "runs" / "selection" / f"{args.pool}-k{args.k}").resolve()
    out.mkdir(parents=True, exist_ok=True)

    from benchmarks.topk_vs_random.prepare_gemma import prepare

    model = prepare(args.model_dir)
    db = curate_pool(args.realdata, args.pool, out)
    base_file = out / "base.json"
    kept_base = KEPT / f"base-t{args.max_tokens}.json"  # the model without LoRA: the same for every pool and k
    if not base_file.is_file():
        text = (kept_base.read_text(encoding="utf-8") if kept_base.is_file()
                else json.dumps(measure(model, None, args.realdata, args.max_tokens)))
        base_file.write_text(text, encoding="utf-8")
    if not kept_base.is_file():
        kept_base.parent.mkdir(parents=True, exist_ok=True)
        kept_base.write_text(base_file.read_text(encoding="utf-8"), encoding="utf-8")
    base = json.loads(base_file.read_text(encoding="utf-8"))
    results = {}
    for seed in args.seeds:  # seed-major: every arm gets its first seed before any gets a third
        for arm in args.arms:
            if args.report_only and not (out / "arms" / f"{arm_tag(arm)}-s{seed}.json").is_file():
                continue
            results[(arm, seed)] = run_arm(arm, seed, args, db, model, out)
            report(results, base, args, out)
    print(report(results, base, args, out))


if __name__ == "__main__":
    main()
