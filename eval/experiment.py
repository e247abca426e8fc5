"""``jcurate experiment``: does training on the top-k subset beat a random subset of the same size,
and the same number of the longest answers?

From one curation run: build the top-k subset and each baseline subset of the same size under the
same license filter (``random``: k records drawn with the seed; ``longest``: the k longest answers,
the "Long Is More" baseline that a quality score has to clear, see docs/benchmarks.md), train each with
the same config and seed, evaluate each with the same eval config, and compare top-k with each baseline
(paired bootstrap over the eval items; the judge's score per scale, ELYZA 1-5 and MT-Bench 1-10 apart). With
``seeds: [0, 1, 2]`` every arm is trained once per seed (random draws again with each) and the comparison pools
the (seed, item) pairs, as the selection benchmark does.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from core.config import from_dict, load_yaml
from core.errors import JcurateError
from curate.handover.subsets import DEFAULT_QUOTA_MIN_SCORE
from licenses.rules import LADDER


@dataclass
class ExperimentConfig:
    name: str = "topk-vs-random"
    db: str = "jcurate.duckdb"
    run: str | None = None  # curation run (default: the latest)
    license_use: str | None = "commercial"
    score: str | None = None  # the scorer top-k ranks by (default: the store's classifier, else shipped)
    # the top-k arm, as `jcurate subset --top-k` takes it by default: per source, each source's quota in proportion to
    # its records scoring at least quota_min_score (curate.handover.subsets.per_source_top); quota_min_score: null for
    # the pool's shares, per_source: false for the best k of all sources together (the default until 2026-12-07)
    per_source: bool = True
    quota_min_score: float | None = DEFAULT_QUOTA_MIN_SCORE
    k: int = 200
    seed: int = 0
    seeds: list[int] | None = None  # train every arm once per seed and pool the comparison (default: [seed])
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
    if unknown or not cfg.baselines or len(set(cfg.baselines)) != len(cfg.baselines):
        raise JcurateError(f"{path}: baselines must be one or more of {', '.join(BASELINES)}, each once, got "
                           f"{cfg.baselines}")
    if cfg.k < 1:
        raise JcurateError(f"{path}: k is the number of records in each arm: at least 1, got {cfg.k}")
    if cfg.license_use is not None and cfg.license_use not in LADDER:
        raise JcurateError(f"{path}: config key 'license_use' must be one of {', '.join(LADDER)} (or null: any "
                           f"license), got {cfg.license_use!r}")
    if cfg.seeds is not None and (not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds)):
        raise JcurateError(f"{path}: seeds must be distinct integers, at least one, got {cfg.seeds}")
    return cfg


def score_answer_lengths(db: str, run: str | None) -> str:
    """Stores every kept record's answer length as the scorer ``answer_length`` (what ``longest`` ranks by)."""
    from curate.scoring.kept_scores import answer_lengths, store_kept_scores
    from store.connection import connect
    from store.runs import resolve_run

    con = connect(db)
    try:
        store_kept_scores(con, resolve_run(con, run), LENGTH_SCORER, LENGTH_SCORER, answer_lengths)
    finally:
        con.close()
    return LENGTH_SCORER


def check_arm_sizes(k: int, sizes: dict[str, int], log=print) -> None:
    """Top-k and its baselines must hold as many records each, or the comparison measures the sizes too.
    Where the pool of a license filter holds fewer than ``k`` (top-k needs scored records, the others do
    not), or ``diversity`` skipped records, the arms differ: refused before any training. Arms equal but
    short of ``k`` go on, with a warning."""
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{name} {n}" for name, n in sizes.items())
        raise JcurateError(f"the arms differ in size ({listed} records; k {k}): a fair comparison needs as many in "
                           f"each. Nothing was trained: set k to {min(sizes.values())} (the smallest arm) or widen the "
                           f"pool (license_use, run)")
    n = next(iter(sizes.values()))
    if n < k:
        log(f"warning: every arm has {n} records, fewer than k {k}: the pool is smaller than k (see the arms' "
            f"warnings above); the comparison is of {n} records each")


def check_arms_differ(members: dict[str, frozenset], log=print) -> None:
    """Top-k must hold other records than each baseline, or the experiment compares a set with itself
    (k at or above the size of the license filter's pool makes every arm the whole pool)."""
    same = [name for name, records in members.items() if name != "topk" and records == members["topk"]]
    if same:
        raise JcurateError(f"top-k and {', '.join(same)} hold the same {len(members['topk'])} records (k is at or "
                           f"above the pool the license filter leaves, so every arm is the whole pool): the "
                           f"comparison would measure nothing. Nothing was trained: set k below "
                           f"{len(members['topk'])}")


def check_before_building(cfg: ExperimentConfig, tags: list[str], subset_names: list[str]) -> tuple[dict, object]:
    """Everything that can stop the experiment, checked before any subset is built or arm trained: the
    train and eval configs (an eval config read after hours of training would be too late) and the eval
    files, the arms' output folders (an earlier experiment's train runs point at them) and the subsets'
    names (rebuilding a subset that a train run used would change that run's lineage)."""
    from eval.runner import load_eval_config, load_items
    from store.connection import connect
    from store.runs import train_runs_of
    from train.sft import RUN_FILES, check_model

    base_train = load_yaml(cfg.train_config, "train config")
    if not isinstance(base_train, dict):
        raise JcurateError(f"train config {cfg.train_config}: expected a mapping of sections")
    with tempfile.TemporaryDirectory() as folder:
        job = load_arm_config(arm_train_config(base_train, "check", subset_names[0], cfg, Path(folder), 0), cfg)
    try:
        check_model(job)
    except JcurateError as e:
        raise JcurateError(f"train config {cfg.train_config}: {e}") from None
    eval_cfg = load_eval_config(cfg.eval_config, db=cfg.db)
    load_items(eval_cfg, log=lambda m: None)  # files that are missing or unreadable stop here; bad rows are told at eval
    out = Path(cfg.out_dir)
    used = [tag for tag in tags if any((out / tag / name).exists() for name in RUN_FILES)]
    if used:
        raise JcurateError(f"out_dir {out} holds the train runs of an earlier experiment ({', '.join(used)}): their "
                           f"ids in the store point at those folders. Set a new out_dir (and name), or move it aside")
    con = connect(cfg.db, read_only=True)
    try:
        trained = train_runs_of(con, subset_names)
    finally:
        con.close()
    if trained:
        listed = ", ".join(f"{name} (train run {runs[0]})" for name, runs in trained.items())
        raise JcurateError(f"subsets {listed} were trained on already: rebuilding them would change what those "
                           f"train runs link to. Set a new name for this experiment")
    return base_train, eval_cfg


def load_arm_config(path: Path, cfg: ExperimentConfig):
    """An arm's train config, loaded; its errors name the experiment's train_config, not the arm's copy."""
    from train.config import load_train_config

    try:
        return load_train_config(path)
    except JcurateError as e:
        raise JcurateError(str(e).replace(str(path), f"train config {cfg.train_config}")) from None


def arm_train_config(base_train: dict, tag: str, subset: str, cfg: ExperimentConfig, out: Path, seed: int) -> Path:
    """The train config of one arm (its subset, output folder and seed), written to a file under ``out``."""
    train_cfg = copy.deepcopy(base_train)
    train_cfg.setdefault("data", {}).update(subset=subset, db=cfg.db, file=None)
    train_cfg.setdefault("training", {}).update(output_dir=str(Path(cfg.out_dir) / tag), seed=seed)
    path = out / f"{tag}.yaml"
    path.write_text(yaml.safe_dump(train_cfg, allow_unicode=True), encoding="utf-8")
    return path


def run_experiment(cfg: ExperimentConfig, log=print) -> dict:
    from curate.handover.subsets import SubsetCriteria, create_subset
    from eval.compare import RunComparison, compare_runs, load_run_scores, plot, to_markdown
    from eval.runner import load_eval_config, run_eval
    from licenses.catalogue import load_catalogue
    from store.connection import connect
    from train.sft import run_training

    if not Path(cfg.db).is_file():  # a writing connection would create an empty store
        raise JcurateError(f"no store at {cfg.db} (the experiment config's db): run `jcurate run` first")
    out = Path(cfg.out_dir)
    seeds = cfg.seeds or [cfg.seed]
    several = len(seeds) > 1
    length_scores = LENGTH_SCORER if "longest" in cfg.baselines else None  # stored below, once the checks pass

    def criteria_of(arm: str, seed: int) -> SubsetCriteria:
        """top-k and longest-k are the same records under every seed (only training's seed changes); random
        draws with each seed (its own subset per seed when there are several)."""
        if arm == "topk":
            per_source = cfg.per_source and cfg.diversity is None  # diversity walks one ranking over all sources
            return SubsetCriteria(name=f"{cfg.name}-topk", run_id=cfg.run, license_use=cfg.license_use, top_k=cfg.k,
                                  score=cfg.score, diversity=cfg.diversity, per_source=per_source,
                                  quota_min_score=cfg.quota_min_score if per_source else None)
        if arm == "random":
            return SubsetCriteria(name=f"{cfg.name}-random" + (f"-s{seed}" if several else ""), run_id=cfg.run,
                                  license_use=cfg.license_use, random=cfg.k, seed=seed)
        return SubsetCriteria(name=f"{cfg.name}-longest", run_id=cfg.run, license_use=cfg.license_use, top_k=cfg.k,
                              score=length_scores)

    arms = ["topk", *cfg.baselines]
    tags = [f"{arm}-s{seed}" if several else arm for seed in seeds for arm in arms]
    names = sorted({criteria_of(arm, seed).name for seed in seeds for arm in arms})
    base_train, _ = check_before_building(cfg, tags, names)
    out.mkdir(parents=True, exist_ok=True)
    if "longest" in cfg.baselines:
        score_answer_lengths(cfg.db, cfg.run)
    subsets, sizes = {}, {}  # (arm, seed) -> subset name; subset name -> its records
    for seed in seeds:  # every arm's subset before any training: arms of unequal size stop the experiment here
        for arm in arms:
            criteria = criteria_of(arm, seed)
            if criteria.name not in sizes:
                subset = create_subset(cfg.db, criteria, load_catalogue(), replace=True)
                log(f"[{arm}] subset {subset['name']}: {subset['n_records']} records")
                for note in subset["notes"]:
                    log(f"[{arm}] warning: {note}")
                sizes[criteria.name] = subset["n_records"]
            subsets[(arm, seed)] = criteria.name
    check_arm_sizes(cfg.k, sizes, log)
    con = connect(cfg.db, read_only=True)
    try:
        for seed in seeds:
            check_arms_differ({arm: frozenset(r[0] for r in con.execute(
                "SELECT record_id FROM subset_members WHERE subset = ?", [subsets[(arm, seed)]]).fetchall())
                for arm in arms})
    finally:
        con.close()
    train_runs = {}  # (arm, seed) -> train run id
    for seed in seeds:
        for arm in arms:
            tag = f"{arm}-s{seed}" if several else arm
            path = arm_train_config(base_train, tag, subsets[(arm, seed)], cfg, Path(tempfile.mkdtemp()), seed)
            result = run_training(load_arm_config(path, cfg), log=log)
            train_runs[(arm, seed)] = result["train_run_id"]
            log(f"[{tag}] train run {result['train_run_id']}: loss {result['train_loss_first']} -> "
                f"{result['train_loss_last']}")
    evals = {key: run_eval(load_eval_config(cfg.eval_config, train_run=train_run, db=cfg.db), log=log)
             for key, train_run in train_runs.items()}
    # baseline -> metric -> top-k (B) against the baseline (A), paired by (seed, item); the judge's score per scale
    by_run: dict[str, dict[str, RunComparison]] = {}
    con = connect(cfg.db)
    try:
        for baseline in cfg.baselines:
            for metric in ("score", "ref_nll"):  # each metric both arms measured
                pooled = {"a": {}, "b": {}}
                for seed in seeds:
                    for side, arm in (("a", baseline), ("b", "topk")):
                        _, scores = load_run_scores(con, evals[(arm, seed)]["eval_run_id"], metric)
                        pooled[side].update({f"s{seed}:{item}" if several else item: v for item, v in scores.items()})
                a, b = pooled["a"], pooled["b"]
                if any(v[1] is not None for v in a.values()) and any(v[1] is not None for v in b.values()):
                    run_a, run_b = ("+".join(evals[(arm, s)]["eval_run_id"] for s in seeds) for arm in (baseline, "topk"))
                    by_run.setdefault(baseline, {})[metric] = compare_runs(a, b, run_a, run_b, seed=seeds[0],
                                                                           metric=metric)
    finally:
        con.close()
    if not by_run:
        raise JcurateError("top-k and its baselines share no measured eval item: nothing to compare")
    # baseline -> "score:elyza", "score:mt-bench" (a key per scale), "ref_nll" -> its Comparison
    against = {baseline: {(c.metric if c.scale is None else f"{c.metric}:{c.scale}"): c
                          for rc in by_metric.values() for c in rc.parts} for baseline, by_metric in by_run.items()}
    pooled_note = f"; seeds {', '.join(map(str, seeds))} pooled, paired by (seed, item)" if several else ""
    report = "\n".join(f"## top-k against {baseline} (A: {subsets[(baseline, seeds[0])]}, B: {subsets[('topk', seeds[0])]}"
                       f"{pooled_note})\n\n" + "\n".join(to_markdown(rc, cfg.note) for rc in by_metric.values())
                       for baseline, by_metric in by_run.items())
    (out / "comparison.md").write_text(report, encoding="utf-8")
    comparisons = next(iter(against.values()))
    plot(next(iter(next(iter(by_run.values())).values())), out / "comparison.png")  # a panel per scale
    log(report)
    return {"train_runs": {arm: train_runs[(arm, seeds[0])] for arm in arms},  # the first seed's, by arm
            "evals": {arm: evals[(arm, seeds[0])] for arm in arms},
            "train_runs_by_seed": train_runs, "evals_by_seed": evals, "seeds": seeds,
            "comparison": next(iter(comparisons.values())), "comparisons": comparisons, "against": against,
            "report": str(out / "comparison.md")}
