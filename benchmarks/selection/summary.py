"""One table across the selection benchmark's runs: an arm against random, longest and another arm, per pool and k.

    uv run python benchmarks/selection/summary.py --arm model:jquality-v4 --also model:jquality-v3

Reads what ``run.py`` measured (by default its committed copies, ``benchmarks/selection/results/arms/<pool>-k<k>/
<arm>-s<seed>.json``; ``--runs runs/selection`` reads the working folders' ``<pool>-k<k>/arms/``; nothing is trained) and
prints, per run folder that holds the arm, the mean NLLs of the arms (over the seeds ``--arm`` has) and the
paired differences of ``--arm`` against ``random``, ``longest`` and each ``--also`` arm, pooled over the seeds
that every arm of the comparison has (paired by (seed, item), 95% bootstrap): dev (Japanese MT-Bench, the set
choices are made on) and test (ELYZA-tasks-100, reported only). A last row per comparison, ``all runs``, pools
the pairs of every run folder that holds both arms (pairs: (run, seed, item)), as a rule over several pools and
k asks (``results/per-source-rule.md``). ``--seeds 1`` reads only those seeds' results.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.selection.run import KEPT, arm_tag, differences, interval, mean  # noqa: E402


def arms_folder(folder: Path) -> Path:
    """A working run folder keeps its arms in ``arms/``; a committed one (``results/arms/<pool>-k<k>``) directly."""
    return folder / "arms" if (folder / "arms").is_dir() else folder


def load_arms(folder: Path, arms: list[str], only_seeds: list[int] | None = None) -> dict[tuple[str, int], dict]:
    results = {}
    for arm in arms:
        for path in sorted(arms_folder(folder).glob(f"{arm_tag(arm)}-s*.json")):
            seed = int(path.stem.rsplit("-s", 1)[1])
            if only_seeds is not None and seed not in only_seeds:
                continue
            results[(arm, seed)] = json.loads(path.read_text(encoding="utf-8"))
    return results


def seeds_of(results: dict, *arms: str) -> list[int]:
    return sorted(set.intersection(*({s for a, s in results if a == arm} for arm in arms)))


def cell(p) -> str:
    return "–" if p is None else f"{p[0]:+.4f} [{p[1]:+.4f}, {p[2]:+.4f}]"


def summary(runs: Path, arm: str, also: list[str], only_seeds: list[int] | None = None) -> str:
    """The tables; ``only_seeds`` reads those seeds alone (a rule may ask what a new seed shows on its own)."""
    bases = ["random", "longest", *also]
    pooled: dict[str, dict[str, list[float]]] = {b: {"dev": [], "test": []} for b in bases}
    runs_of: dict[str, list[str]] = {b: [] for b in bases}
    lines = ["| run | seeds | comparison | dev | test |", "| --- | --- | --- | --- | --- |"]
    means = ["| run | arm | seeds | answer chars | dev | test |", "| --- | --- | --- | --- | --- | --- |"]
    for folder in sorted(p for p in runs.iterdir() if p.is_dir()):
        results = load_arms(folder, [arm, *bases], only_seeds)
        if not any(a == arm for a, _ in results):
            continue
        arm_seeds = seeds_of(results, arm)  # every arm's means over the seeds --arm has, so that they compare
        for name in [arm, *bases]:
            rs = [r for (a, s), r in sorted(results.items()) if a == name and s in arm_seeds]
            if rs:
                seeds = ", ".join(str(s) for s in seeds_of(results, name) if s in arm_seeds)
                means.append(f"| {folder.name} | {name} | {seeds} | "
                             f"{np.mean([r['mean_answer_chars'] for r in rs]):.0f} | "
                             f"{np.mean([mean(r, 'dev') for r in rs]):.4f} | {np.mean([mean(r, 'test') for r in rs]):.4f} |")
        for base in bases:
            seeds = seeds_of(results, arm, base)
            if seeds:
                runs_of[base].append(folder.name)
                diffs = {split: differences(results, arm, base, split, 0, seeds) for split in ("dev", "test")}
                for split, d in diffs.items():
                    pooled[base][split] += d
                lines.append(f"| {folder.name} | {', '.join(map(str, seeds))} | {arm} − {base} | "
                             f"{cell(interval(diffs['dev']))} | {cell(interval(diffs['test']))} |")
    for base in bases:
        if len(runs_of[base]) > 1:
            lines.append(f"| all runs ({', '.join(runs_of[base])}) | – | {arm} − {base} | "
                         f"{cell(interval(pooled[base]['dev']))} | {cell(interval(pooled[base]['test']))} |")
    return "\n".join(means) + "\n\n" + "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=KEPT,
                    help="run folders: the committed results (default) or runs/selection")
    ap.add_argument("--arm", default="model:jquality-v4")
    ap.add_argument("--also", nargs="*", default=["model:jquality-v3"], help="more arms to compare --arm with")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="only these seeds (default: every seed)")
    args = ap.parse_args()
    if not args.runs.is_dir():
        raise SystemExit(f"{args.runs} not found: run benchmarks/selection/run.py first")
    print(summary(args.runs, args.arm, args.also, args.seeds))


if __name__ == "__main__":
    main()
