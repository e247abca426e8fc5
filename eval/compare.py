"""``jcurate compare RUN_A RUN_B``: means per run and category, the paired difference with a
bootstrap 95% interval, win/tie/loss counts, and a PNG of the per-category means; on the judge's
score (``--metric score``, higher is better) or the reference NLL (``--metric ref_nll``, lower is
better: a win is a lower NLL)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import JcurateError


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

    @property
    def lower_is_better(self) -> bool:
        return self.metric in LOWER_IS_BETTER


METRICS = {"score": "mean judge score (higher is better)",
           "ref_nll": "mean reference NLL, nats/token (lower is better)"}
LOWER_IS_BETTER = {"ref_nll"}


def bootstrap_ci(diffs: np.ndarray, n_boot: int = 10_000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap of the mean paired difference."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diffs), size=(n_boot, len(diffs)))
    means = diffs[idx].mean(axis=1)
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def compare_scores(a: dict[str, tuple[str, float]], b: dict[str, tuple[str, float]], run_a: str, run_b: str,
                   n_boot: int = 10_000, seed: int = 0, metric: str = "score") -> Comparison:
    """``a`` and ``b``: item id -> (category, score); only items scored in both runs are paired."""
    items = sorted(k for k in a.keys() & b.keys() if a[k][1] is not None and b[k][1] is not None)
    if not items:
        raise JcurateError(f"runs {run_a} and {run_b} have no item with a {metric} in common")
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
                      int((better > 0).sum()), int((better == 0).sum()), int((better < 0).sum()), per_category, metric)


def load_run_scores(con, run: str, metric: str = "score") -> tuple[str, dict[str, tuple[str, float]]]:
    """An eval run id, or a train run id (its latest eval run); ``metric``: score | ref_nll."""
    if metric not in METRICS:
        raise JcurateError(f"--metric must be one of {', '.join(METRICS)}, got {metric!r}")
    row = con.execute("""SELECT eval_run_id FROM eval_runs WHERE eval_run_id = ? OR train_run_id = ?
                         ORDER BY created_at DESC LIMIT 1""", [run, run]).fetchone()
    if not row:
        raise JcurateError(f"no eval run or evaluated train run named {run!r}")
    rows = con.execute(f"SELECT item_id, category, {metric} FROM eval_results WHERE eval_run_id = ?",
                       [row[0]]).fetchall()
    return row[0], {item: (cat, score) for item, cat, score in rows}


def to_markdown(c: Comparison, note: str | None = None) -> str:
    lines = [f"# {c.run_b} vs {c.run_a}", ""]
    if note:
        lines += [f"> {note}", ""]
    lines += [f"Metric: {METRICS[c.metric]}. Paired items: {c.n}", "",
              f"| run | {c.metric} |", "| --- | --- |", f"| A: {c.run_a} | {c.mean_a:.4f} |",
              f"| B: {c.run_b} | {c.mean_b:.4f} |",
              "", f"Mean difference B - A: **{c.diff:+.4f}** (bootstrap 95% CI {c.ci_low:+.4f} .. {c.ci_high:+.4f})",
              f"Win / tie / loss (B vs A{', a win is a lower NLL' if c.lower_is_better else ''}): "
              f"{c.wins} / {c.ties} / {c.losses}", "",
              "| category | A | B | n |", "| --- | --- | --- | --- |"]
    lines += [f"| {cat} | {ma:.2f} | {mb:.2f} | {n} |" for cat, (ma, mb, n) in c.per_category.items()]
    return "\n".join(lines) + "\n"


def plot(c: Comparison, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cats = list(c.per_category)
    x = np.arange(len(cats))
    fig, ax = plt.subplots(figsize=(max(6, len(cats) * 0.9), 4))
    ax.bar(x - 0.2, [c.per_category[k][0] for k in cats], 0.4, label=f"A {c.run_a}")
    ax.bar(x + 0.2, [c.per_category[k][1] for k in cats], 0.4, label=f"B {c.run_b}")
    ax.set_xticks(x, cats, rotation=30, ha="right")
    ax.set_ylabel(METRICS[c.metric])
    ax.set_title(f"B - A = {c.diff:+.2f} [{c.ci_low:+.2f}, {c.ci_high:+.2f}]")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
