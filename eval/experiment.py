"""``jcurate experiment``: does training on the top-k subset beat a random subset of the same size,
and the same number of the longest answers?

From one curation run: build the top-k subset and each baseline subset of the same size under the
same license filter (``random``: k records drawn with the seed; ``longest``: the k longest answers,
the "Long Is More" baseline that a quality score has to clear, see docs/benchmarks.md), train each with
the same config and seed, evaluate each with the same eval config, and compare top-k with each baseline
(paired bootstrap over the eval items).
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from core.config import from_dict, load_yaml
from core.errors import JcurateError


@dataclass
class ExperimentConfig:
    name: str = "topk-vs-random"
    db: str = "jcurate.duckdb"
    run: str | None = None  # curation run (default: the latest)
    license_use: str | None = "commercial"
    score: str | None = None  # the scorer top-k ranks by (default: the store's classifier, else shipped)
    per_source: bool = False  # top-k per source, in proportion to the pool (see curate.handover.subsets.per_source_top)
    k: int = 200
    seed: int = 0
    diversity: float | None = None
    train_config: str = "train/configs/cpu-smoke.yaml"  # its data.subset and output_dir are set per arm
    eval_config: str = "eval/configs/eval-cpu-smoke.yaml"  # its train_run is set per arm
    out_dir: str = "runs/experiment"
    note: str | None = None  # printed with the comparison (e.g. "tiny model: the numbers mean nothing")
    baselines: list[str] = field(default_factory=lambda: ["random", "longest"])  # what top-k is compared with


BASELINES = ("random", "longest")
LENGTH_SCORER = "answer_length"  # the scores `longest` ranks by (characters of the answer a record trains)


def load_experiment_config(path: str | Path) -> ExperimentConfig:
    data = load_yaml(path, "experiment config") or {}
    try:
        cfg = from_dict(ExperimentConfig, data)
    except JcurateError as e:
        raise JcurateError(f"{path}: {e}") from None
    unknown = [b for b in cfg.baselines if b not in BASELINES]
    if unknown or not cfg.baselines:
        raise JcurateError(f"{path}: baselines must be one or more of {', '.join(BASELINES)}, got {cfg.baselines}")
    return cfg


def score_answer_lengths(db: str, run: str | None) -> str:
    """Stores every kept record's answer length as the scorer ``answer_length`` (what ``longest`` ranks by)."""
    from curate.scoring.kept_scores import answer_text, store_kept_scores
    from store.connection import connect
    from store.runs import resolve_run

    con = connect(db)
    try:
        store_kept_scores(con, resolve_run(con, run), LENGTH_SCORER, LENGTH_SCORER,
                          lambda recs: [float(len(answer_text(r))) for r in recs])
    finally:
        con.close()
    return LENGTH_SCORER


def run_experiment(cfg: ExperimentConfig, log=print) -> dict:
    from curate.handover.subsets import SubsetCriteria, create_subset
    from eval.compare import compare_scores, load_run_scores, plot, to_markdown
    from eval.runner import load_eval_config, run_eval
    from licenses.catalogue import load_catalogue
    from store.connection import connect
    from train.config import load_train_config
    from train.sft import run_training

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arms = {"topk": SubsetCriteria(name=f"{cfg.name}-topk", run_id=cfg.run, license_use=cfg.license_use,
                                   top_k=cfg.k, score=cfg.score, diversity=cfg.diversity, per_source=cfg.per_source)}
    if "random" in cfg.baselines:
        arms["random"] = SubsetCriteria(name=f"{cfg.name}-random", run_id=cfg.run, license_use=cfg.license_use,
                                        random=cfg.k, seed=cfg.seed)
    if "longest" in cfg.baselines:
        arms["longest"] = SubsetCriteria(name=f"{cfg.name}-longest", run_id=cfg.run, license_use=cfg.license_use,
                                         top_k=cfg.k, score=score_answer_lengths(cfg.db, cfg.run))
    base_train = load_yaml(cfg.train_config, "train config")
    train_runs = {}
    for arm, criteria in arms.items():
        subset = create_subset(cfg.db, criteria, load_catalogue(), replace=True)
        log(f"[{arm}] subset {subset['name']}: {subset['n_records']} records")
        train_cfg = copy.deepcopy(base_train)
        train_cfg.setdefault("data", {}).update(subset=criteria.name, db=cfg.db, file=None)
        train_cfg.setdefault("training", {}).update(output_dir=str(out / arm), seed=cfg.seed)
        path = Path(tempfile.mkdtemp()) / f"{arm}.yaml"
        path.write_text(yaml.safe_dump(train_cfg, allow_unicode=True), encoding="utf-8")
        result = run_training(load_train_config(path), log=log)
        train_runs[arm] = result["train_run_id"]
        log(f"[{arm}] train run {result['train_run_id']}: loss {result['train_loss_first']} -> "
            f"{result['train_loss_last']}")
    evals = {}
    for arm, train_run in train_runs.items():
        evals[arm] = run_eval(load_eval_config(cfg.eval_config, train_run=train_run, db=cfg.db), log=log)
    against = {}  # baseline -> metric -> top-k (B) against the baseline (A)
    con = connect(cfg.db)
    try:
        for baseline in cfg.baselines:
            for metric in ("score", "ref_nll"):  # each metric both arms measured
                run_a, a = load_run_scores(con, evals[baseline]["eval_run_id"], metric)
                run_b, b = load_run_scores(con, evals["topk"]["eval_run_id"], metric)
                if any(v[1] is not None for v in a.values()) and any(v[1] is not None for v in b.values()):
                    against.setdefault(baseline, {})[metric] = compare_scores(a, b, run_a, run_b, seed=cfg.seed,
                                                                              metric=metric)
    finally:
        con.close()
    if not against:
        raise JcurateError("top-k and its baselines share no measured eval item: nothing to compare")
    report = "\n".join(f"## top-k against {baseline} (A: {arms[baseline].name}, B: {arms['topk'].name})\n\n"
                       + "\n".join(to_markdown(c, cfg.note) for c in by_metric.values())
                       for baseline, by_metric in against.items())
    (out / "comparison.md").write_text(report, encoding="utf-8")
    comparisons = next(iter(against.values()))
    first = next(iter(comparisons.values()))
    plot(first, out / "comparison.png")
    log(report)
    return {"train_runs": train_runs, "evals": evals, "comparison": first, "comparisons": comparisons,
            "against": against, "report": str(out / "comparison.md")}
