"""``jcurate compare RUN_A RUN_B``: means per run and category, the paired difference with a
bootstrap 95% interval, win/tie/loss counts, and a PNG of the per-category means; on the judge's
score (``--metric score``, higher is better) or the reference NLL (``--metric ref_nll``, lower is
better: a win is a lower NLL). The judge grades ELYZA-shape answers 1-5 and MT-Bench turns 1-10:
scores are compared per scale, each scale's means and paired difference apart, never pooled."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import JcurateError
from eval.tasks import SCALES


@dataclass
class Comparison:
    run_a: str
    run_b: str
    n: int
    mean_a: float
    mean_b: float
    diff: float  # mean of (b - a) over paired items
    ci_low: float
    ci_high: float
    wins: int  # b better
    ties: int
    losses: int
    per_category: dict[str, tuple[float, float, int]]
    metric: str = "score"
    only_a: int = 0  # items with the metric in A and not in B: left out of every number above
    only_b: int = 0
    scale: str | None = None  # the eval shape (eval.tasks.SCALES) whose items alone these are; None: one scale

    @property
    def lower_is_better(self) -> bool:
        return self.metric in LOWER_IS_BETTER


@dataclass
class RunComparison:
    """One metric of two runs: a ``Comparison`` per scale with items in both runs, in ``SCALES`` order (one, of
    scale None, for a metric on one scale: the reference NLL), and the scales measured with none in both."""
    run_a: str
    run_b: str
    metric: str
    parts: list[Comparison]
    unpaired_scales: dict[str, tuple[int, int]] = field(default_factory=dict)  # scale -> (items of A, of B)

    @property
    def n(self) -> int:
        return sum(c.n for c in self.parts)

    @property
    def only_a(self) -> int:
        return sum(c.only_a for c in self.parts) + sum(a for a, _ in self.unpaired_scales.values())

    @property
    def only_b(self) -> int:
        return sum(c.only_b for c in self.parts) + sum(b for _, b in self.unpaired_scales.values())


METRICS = {"score": "mean judge score (higher is better)",
           "ref_nll": "mean reference NLL, nats/token (lower is better)"}
LOWER_IS_BETTER = {"ref_nll"}
PER_SCALE = {"score"}  # metrics on a scale of each eval shape: compared per scale, never pooled


def bootstrap_ci(diffs: np.ndarray, n_boot: int = 10_000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap of the mean paired difference."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diffs), size=(n_boot, len(diffs)))
    means = diffs[idx].mean(axis=1)
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def measured_pairs(a: dict[str, tuple], b: dict[str, tuple]) -> tuple[list[str], int, int]:
    """(the items with a value in both runs, sorted; how many items have a value in A, in B)."""
    items = sorted(k for k in a.keys() & b.keys() if a[k][1] is not None and b[k][1] is not None)
    return items, sum(v[1] is not None for v in a.values()), sum(v[1] is not None for v in b.values())


def compare_scores(a: dict[str, tuple], b: dict[str, tuple], run_a: str, run_b: str,
                   n_boot: int = 10_000, seed: int = 0, metric: str = "score", scale: str | None = None) -> Comparison:
    """``a`` and ``b``: item id -> (category, score, ...); only items scored in both runs are paired, all of them
    into one mean: the caller passes items of one scale (``compare_runs`` splits them)."""
    items, measured_a, measured_b = measured_pairs(a, b)
    if not items:
        raise JcurateError(f"runs {run_a} and {run_b} have no item with a {metric} in common ({measured_a} item(s) "
                           f"with a {metric} in {run_a}, {measured_b} in {run_b}): were they evaluated on the same "
                           f"eval files?")
    sa = np.array([a[k][1] for k in items])
    sb = np.array([b[k][1] for k in items])
    diffs = sb - sa
    low, high = bootstrap_ci(diffs, n_boot, seed)
    cats: dict[str, list[int]] = {}
    for i, k in enumerate(items):
        cats.setdefault(a[k][0], []).append(i)
    per_category = {c: (float(sa[ix].mean()), float(sb[ix].mean()), len(ix)) for c, ix in sorted(cats.items())}
    better = -diffs if metric in LOWER_IS_BETTER else diffs
    return Comparison(run_a, run_b, len(items), float(sa.mean()), float(sb.mean()), float(diffs.mean()), low, high,
                      int((better > 0).sum()), int((better == 0).sum()), int((better < 0).sum()), per_category, metric,
                      measured_a - len(items), measured_b - len(items), scale)


def compare_runs(a: dict[str, tuple], b: dict[str, tuple], run_a: str, run_b: str, n_boot: int = 10_000,
                 seed: int = 0, metric: str = "score") -> RunComparison:
    """``a`` and ``b``: item id -> (category, value, shape) as ``load_run_scores`` gives them. The judge's
    score is compared per scale (an item pairs only with an item of its own shape), the reference NLL in one."""
    if metric not in PER_SCALE:
        return RunComparison(run_a, run_b, metric, [compare_scores(a, b, run_a, run_b, n_boot, seed, metric)])
    parts, unpaired = [], {}
    for scale in SCALES:
        own_a = {k: v for k, v in a.items() if v[2] == scale}
        own_b = {k: v for k, v in b.items() if v[2] == scale}
        paired, measured_a, measured_b = measured_pairs(own_a, own_b)
        if paired:
            parts.append(compare_scores(own_a, own_b, run_a, run_b, n_boot, seed, metric, scale))
        elif measured_a or measured_b:
            unpaired[scale] = (measured_a, measured_b)
    if not parts:
        compare_scores(a, b, run_a, run_b, n_boot, seed, metric)  # no pair on any scale: says so
        raise JcurateError(f"runs {run_a} and {run_b} have no item of one shape with a {metric} in both")
    return RunComparison(run_a, run_b, metric, parts, unpaired)


def resolve_eval_run(con, run: str) -> tuple[str, str | None]:
    """(eval run id, a line saying which eval run a train run id stood for when it has several, else None)."""
    rows = con.execute("""SELECT eval_run_id FROM eval_runs WHERE eval_run_id = ? OR train_run_id = ?
                          ORDER BY created_at DESC""", [run, run]).fetchall()
    if not rows:
        raise JcurateError(f"no eval run or evaluated train run named {run!r}")
    note = None
    if rows[0][0] != run and len(rows) > 1:
        note = (f"{run} has {len(rows)} eval runs; its latest, {rows[0][0]}, is compared (name an eval run id "
                f"to compare another)")
    return rows[0][0], note


def stored_shapes(con, eval_run: str, items: list[str]) -> dict[str, str]:
    """The shape of each result ``items`` names (``file:row#tN``) whose row has none (a store from before
    ``eval_results.shape``): read again from the eval run's eval files, where results are stored by the
    file's name and the row's id. An item not found there is refused: its scale cannot be told."""
    from eval.tasks import load_tasks

    (files,) = con.execute("SELECT eval_files FROM eval_runs WHERE eval_run_id = ?", [eval_run]).fetchone()
    shapes, unread = {}, []
    for f in json.loads(files or "[]"):
        try:
            shapes.update({it.item_id: it.shape for it in load_tasks(f, warn=lambda m: None)})
        except JcurateError:
            unread.append(f)
    found = {item: shapes.get(re.sub(r"#t\d+$", "", item)) for item in items}
    if missing := [item for item, shape in found.items() if shape is None]:
        raise JcurateError(f"eval run {eval_run} stored no shape for its results (a store from before "
                           f"eval_results.shape), and {len(missing)} of them ({missing[0]}, ...) are not in its eval "
                           f"files{' (' + ', '.join(unread) + ' not readable)' if unread else ''}: their judge scale "
                           f"(ELYZA 1-5, MT-Bench 1-10) cannot be told; evaluate the run again to compare its scores")
    return found


def load_run_scores(con, run: str, metric: str = "score") -> tuple[str, dict[str, tuple[str, float, str | None]]]:
    """An eval run id, or a train run id (its latest eval run); ``metric``: score | ref_nll. Each item id ->
    (category, value, shape): the shape (so the judge's scale) of each scored item for ``score``."""
    if metric not in METRICS:
        raise JcurateError(f"--metric must be one of {', '.join(METRICS)}, got {metric!r}")
    row = con.execute("""SELECT eval_run_id FROM eval_runs WHERE eval_run_id = ? OR train_run_id = ?
                         ORDER BY created_at DESC LIMIT 1""", [run, run]).fetchone()
    if not row:
        raise JcurateError(f"no eval run or evaluated train run named {run!r}")
    has_shape = "shape" in [d[0] for d in con.execute("SELECT * FROM eval_results LIMIT 0").description]
    rows = con.execute(f"SELECT item_id, category, {metric}, {'shape' if has_shape else 'NULL'} FROM eval_results "
                       f"WHERE eval_run_id = ?", [row[0]]).fetchall()
    if metric in PER_SCALE and (unknown := [item for item, _, value, shape in rows if value is not None and not shape]):
        shapes = stored_shapes(con, row[0], unknown)
        rows = [(item, cat, value, shape or shapes.get(item)) for item, cat, value, shape in rows]
    return row[0], {item: (cat, value, shape) for item, cat, value, shape in rows}


# eval settings that do not change what is measured (where the model is, how fast it is asked)
EVAL_SETTINGS_IGNORED = {"train_run", "model", "adapter", "db", "backend", "nll_batch_size", "generation.batch_size",
                         "judge.base_url", "judge.api_key_env", "judge.concurrency", "judge.timeout",
                         "judge.max_retries", "judge.batch_size", "judge.device"}
# train settings that differ between any two train runs (what they trained on, where they wrote it)
TRAIN_SETTINGS_IGNORED = {"data.subset", "data.db", "data.file", "training.output_dir"}


def _flat(d, prefix: str = "") -> dict:
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        out.update(_flat(v, f"{key}.") if isinstance(v, dict) else {key: v})
    return out


def _changed(a: dict, b: dict, ignored: set[str]) -> list[str]:
    fa, fb = _flat(a), _flat(b)
    return [f"{k} {fa.get(k)!r} vs {fb.get(k)!r}" for k in sorted(fa.keys() | fb.keys())
            if k not in ignored and fa.get(k) != fb.get(k)]


# eval settings that bear on one metric only
METRIC_SETTINGS = {"score": ("generation.", "judge."), "ref_nll": ("reference_nll", "nll_max_tokens")}


def differences(con, eval_a: str, eval_b: str, metric: str = "score") -> list[str]:
    """What differs between two eval runs beyond the model under test: their eval settings (files,
    limit, generation, judge), and, for evaluated train runs, their training settings (seed, steps, base
    model, ...) apart from the subset, and the curation runs their subsets were drawn from. Each is a
    second cause of a difference that a comparison would put on the model."""
    import json

    rows = {r[0]: r[1:] for r in con.execute(
        """SELECT e.eval_run_id, e.config, t.config, s.run_id FROM eval_runs e
           LEFT JOIN train_runs t ON t.train_run_id = e.train_run_id LEFT JOIN subsets s ON s.name = t.subset
           WHERE e.eval_run_id IN (?, ?)""", [eval_a, eval_b]).fetchall()}
    if eval_a == eval_b or len(rows) != 2:
        return []
    (eval_cfg_a, train_cfg_a, curated_a), (eval_cfg_b, train_cfg_b, curated_b) = rows[eval_a], rows[eval_b]
    found = []
    other = tuple(p for m, prefixes in METRIC_SETTINGS.items() if m != metric for p in prefixes)
    changed = [c for c in _changed(json.loads(eval_cfg_a or "{}"), json.loads(eval_cfg_b or "{}"),
                                   EVAL_SETTINGS_IGNORED) if not c.startswith(other)]
    if changed:
        found.append("eval settings differ: " + "; ".join(changed))
    if train_cfg_a and train_cfg_b and (changed := _changed(json.loads(train_cfg_a), json.loads(train_cfg_b),
                                                            TRAIN_SETTINGS_IGNORED)):
        found.append("training settings differ beyond the subset: " + "; ".join(changed))
    if curated_a and curated_b and curated_a != curated_b:
        found.append(f"the subsets come from different curation runs: {curated_a} vs {curated_b}")
    return found


def _part_markdown(c: Comparison) -> list[str]:
    return [f"| run | {c.metric} |", "| --- | --- |", f"| A: {c.run_a} | {c.mean_a:.4f} |",
            f"| B: {c.run_b} | {c.mean_b:.4f} |",
            "", f"Mean difference B - A: **{c.diff:+.4f}** (bootstrap 95% CI {c.ci_low:+.4f} .. {c.ci_high:+.4f})",
            f"Win / tie / loss (B vs A{', a win is a lower NLL' if c.lower_is_better else ''}): "
            f"{c.wins} / {c.ties} / {c.losses}", "",
            "| category | A | B | n |", "| --- | --- | --- | --- |",
            *(f"| {cat} | {ma:.2f} | {mb:.2f} | {n} |" for cat, (ma, mb, n) in c.per_category.items())]


def to_markdown(c: RunComparison | Comparison, note: str | None = None, warnings: list[str] = ()) -> str:
    if isinstance(c, Comparison):
        c = RunComparison(c.run_a, c.run_b, c.metric, [c])
    lines = [f"# {c.run_b} vs {c.run_a}", ""]
    if note:
        lines += [f"> {note}", ""]
    lines += [f"> warning: {w}" for w in warnings] + ([""] if warnings else [])
    unpaired = ""
    if c.only_a or c.only_b:
        unpaired = (f" ({c.only_a} item(s) of A and {c.only_b} of B have no pair in the other run and are left out "
                    f"of every number below)")
    scaled = [p for p in c.parts if p.scale is not None]
    per_scale = (", per scale (ELYZA-shape answers are graded 1-5, MT-Bench turns 1-10: each scale has its own "
                 "means and difference, never one of both)" if scaled or c.unpaired_scales else "")
    lines += [f"Metric: {METRICS[c.metric]}{per_scale}. Paired items: {c.n}{unpaired}", ""]
    for part in c.parts:
        if part.scale is not None:
            lines += [f"## {SCALES[part.scale]}: {part.n} paired item(s)", ""]
        lines += _part_markdown(part) + [""]
    lines += [f"## {SCALES[scale]}: no item with a {c.metric} in both runs ({n_a} in A, {n_b} in B): not compared\n"
              for scale, (n_a, n_b) in c.unpaired_scales.items()]
    return "\n".join(lines).rstrip("\n") + "\n"


def plot(c: RunComparison | Comparison, path: str | Path) -> Path:
    """The per-category means of A and B, a panel per scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = [c] if isinstance(c, Comparison) else c.parts
    widest = max(len(p.per_category) for p in parts)
    fig, axes = plt.subplots(len(parts), 1, figsize=(max(6, widest * 0.9), 4 * len(parts)), squeeze=False)
    for ax, part in zip(axes[:, 0], parts):
        cats = list(part.per_category)
        x = np.arange(len(cats))
        ax.bar(x - 0.2, [part.per_category[k][0] for k in cats], 0.4, label=f"A {part.run_a}")
        ax.bar(x + 0.2, [part.per_category[k][1] for k in cats], 0.4, label=f"B {part.run_b}")
        ax.set_xticks(x, cats, rotation=30, ha="right")
        ax.set_ylabel(METRICS[part.metric])
        scale = f"{SCALES[part.scale]}: " if part.scale else ""
        ax.set_title(f"{scale}B - A = {part.diff:+.2f} [{part.ci_low:+.2f}, {part.ci_high:+.2f}]")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
