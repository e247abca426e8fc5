"""The fit test read by people: how often a reader tells a record's own answer from its swapped twin.

    uv run python benchmarks/quality/fit_reading.py make  --out runs/fit_reading --n 60 --shares 4
    (readers fill OUT/verdicts-<share>.tsv: pair id, 1 | 2 | unsure, one line of why)
    uv run python benchmarks/quality/fit_reading.py score --out runs/fit_reading

The shipped scorer's fit test (``scorer_v2.py``) puts each labelled record beside its *twin* (its prompt
with another labelled record's answer of the same dataset) and counts how often the original scores higher;
the target is 0.90 on every dataset. On chat (RealPersonaChat, Japanese Daily Dialogue) the scorer stays far
below that. This measures the ceiling: the same pairs (the same twins, seed 7 as in ``scorer_v2.py``), shown
to readers with the two answers in a random order, who pick the one written for this prompt. ``score``
reports per dataset the readers' share right (unsure counts a half) and the default scorer's share on the
same pairs, each with a 95% bootstrap interval over pairs, and the paired difference.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.quality.scorer_v2 import labelled_views  # noqa: E402
from benchmarks.real_data.build_inputs import DEFAULT_REALDATA  # noqa: E402
from benchmarks.selection.blind_pairs import read_verdicts  # noqa: E402
from curate.scoring.pair_fit import swapped_answers  # noqa: E402
from curate.scoring.shipped_scorer import DEFAULT_MODEL, ShippedScorer  # noqa: E402
from eval.compare import bootstrap_ci  # noqa: E402

DATASETS = ("real-persona-chat", "japanese-daily-dialogue", "wanda-alpaca-ja", "instruction-ja-mt")
VERDICTS = {"1": 1.0, "2": 0.0, "unsure": 0.5}  # the share right when the original is shown first


def make(args) -> None:
    sources, views, _ = labelled_views(args.realdata)
    scorer = ShippedScorer(args.model)
    rng = random.Random(args.seed)
    pairs = []
    for dataset in args.datasets:
        own = [v for v, s in zip(views, sources) if s == dataset]
        if len(own) < 2:
            raise SystemExit(f"{dataset}: fewer than 2 labelled records readable here "
                             "(run benchmarks/real_data/build_inputs.py)")
        twins = swapped_answers(own, [dataset] * len(own), seed=7)  # the fit test's twins
        beats = scorer.score_views(own) > scorer.score_views(twins)
        for i in sorted(rng.sample(range(len(own)), min(args.n, len(own)))):
            pairs.append({"dataset": dataset, "index": i, "original_first": rng.random() < 0.5,
                          "scorer_right": bool(beats[i]), "view": own[i], "twin": twins[i].answer})
    rng.shuffle(pairs)
    args.out.mkdir(parents=True, exist_ok=True)
    key = {}
    for s in range(args.shares):
        lines = [f"# Which answer was written for this prompt? Share {s}", "",
                 "Each pair shows a prompt (for a chat: the conversation so far, one turn per line) and two "
                 "answers. One was written for this prompt; the other was written for another prompt of the "
                 "same dataset. Pick the one written for this prompt. Write one line per pair to "
                 f"verdicts-{s}.tsv: `pair id<TAB>1|2|unsure<TAB>why (one line)`. `unsure` only when nothing in "
                 "the texts tells them apart.", ""]
        for n, p in enumerate(pairs[s::args.shares]):
            pid = f"{s}-{n:03d}"
            view = p["view"]
            first, second = (view.answer, p["twin"]) if p["original_first"] else (p["twin"], view.answer)
            key[pid] = {k: p[k] for k in ("dataset", "index", "original_first", "scorer_right")}
            lines += [f"## pair {pid}", "", "**Prompt**", "", view.prompt or "(empty)"]
            if view.context:
                lines += ["", "**Context**", "", view.context]
            lines += ["", "**Answer 1**", "", first or "(empty)", "", "**Answer 2**", "", second or "(empty)", "",
                      "---", ""]
        (args.out / f"share-{s}.md").write_text("\n".join(lines), encoding="utf-8")
    (args.out / "key.json").write_text(json.dumps({"model": scorer.model_id, "pairs": key}, indent=0),
                                       encoding="utf-8")
    print(f"{len(pairs)} pairs in {args.shares} shares under {args.out}")


def score(args) -> None:
    data = json.loads((args.out / "key.json").read_text(encoding="utf-8"))
    key = data["pairs"]
    verdicts = read_verdicts(args.out, key, allowed=VERDICTS, spelled="1|2|unsure")
    rows: dict[str, list[tuple[float, float]]] = {}
    for pid, k in key.items():
        if pid in verdicts:
            right = VERDICTS[verdicts[pid][0]]
            reader = right if k["original_first"] else 1.0 - right
            rows.setdefault(k["dataset"], []).append((reader, float(k["scorer_right"])))
    lines = [f"# The fit test read by people, against `{data['model']}` on the same pairs", "",
             f"{len(verdicts)} of {len(key)} pairs read. Share of pairs where the record's own answer was picked "
             "(readers: `unsure` counts a half; scorer: the original scores strictly higher), 95% bootstrap over "
             "pairs.", "",
             "| dataset | pairs | readers | unsure | scorer | scorer − readers |", "| --- | --- | --- | --- | --- | --- |"]
    for dataset in sorted(rows):
        r = np.array(rows[dataset])
        lo, hi = bootstrap_ci(r[:, 0])
        slo, shi = bootstrap_ci(r[:, 1])
        dlo, dhi = bootstrap_ci(r[:, 1] - r[:, 0])
        unsure = int((r[:, 0] == 0.5).sum())
        lines.append(f"| {dataset} | {len(r)} | {r[:, 0].mean():.2f} [{lo:.2f}, {hi:.2f}] | {unsure} | "
                     f"{r[:, 1].mean():.2f} [{slo:.2f}, {shi:.2f}] | {(r[:, 1] - r[:, 0]).mean():+.2f} "
                     f"[{dlo:+.2f}, {dhi:+.2f}] |")
    text = "\n".join(lines) + "\n"
    (args.out / "results.md").write_text(text, encoding="utf-8")
    print(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["make", "score"])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS))
    ap.add_argument("--n", type=int, default=60, help="pairs per dataset")
    ap.add_argument("--shares", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--realdata", type=Path, default=DEFAULT_REALDATA)
    args = ap.parse_args()
    args.out = args.out.resolve()
    make(args) if args.step == "make" else score(args)


if __name__ == "__main__":
    main()
