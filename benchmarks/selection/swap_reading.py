"""What a selector swaps, read by people: label the records one top-k has and another lacks, blind.

    uv run python benchmarks/selection/swap_reading.py make --db runs/selection/instruction-k300/store.duckdb \
        --a sel-instruction-k300-model-jquality-v4-s1 --b sel-instruction-k300-longest-s1 --out runs/swap-v4-longest
    (readers fill OUT/verdicts-<share>.tsv: item id, 1-5, one line of why)
    uv run python benchmarks/selection/swap_reading.py score --out runs/swap-v4-longest

Two selectors at the same k share most of their records; what separates them downstream is the records
one takes and the other leaves. The reference NLL of a 270M model says which set trains better, not whether
the records are right. ``make`` takes the records of subset A that are not in subset B and those of B not in
A (at most ``--n`` of each, drawn at random), shuffles them into one list with the side hidden and writes it
in shares (``OUT/share-<i>.md``) for readers, who label each record 1-5 on the scale of ``data/LABELLING.md``;
the key stays in ``OUT_key.json`` beside the folder. ``score`` unblinds: per side the mean label, the share
labelled 1-2, per source, and the difference A - B with a 95% bootstrap interval; where a record also has a
label in ``data/labels/real_labels.jsonl``, the agreement with it.
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

from benchmarks.selection.blind_pairs import read_verdicts  # noqa: E402
from curate.scoring.quality_features import RecordView  # noqa: E402

LABELS = {str(i) for i in range(1, 6)}
GUIDE = ROOT / "data" / "LABELLING.md"
REAL_LABELS = ROOT / "data" / "labels" / "real_labels.jsonl"


def scale_text() -> str:
    """The labelling guide's scale and deductions (its notes on hand-written records left out)."""
    guide = GUIDE.read_text(encoding="utf-8")
    return guide[guide.index("| label"):guide.index("Labels are the writer")].strip()


def subset_records(con, subset: str) -> dict[str, dict]:
    rows = con.execute("""SELECT r.record_id, r.source_id, r.instruction, r.input, r.output, r.messages
                          FROM subset_members m JOIN records r USING (record_id) WHERE m.subset = ?""",
                       [subset]).fetchall()
    if not rows:
        raise SystemExit(f"subset {subset!r} is empty or not in the store (jcurate subsets lists them)")
    cols = ("record_id", "source_id", "instruction", "input", "output", "messages")
    return {r[0]: dict(zip(cols, r)) for r in rows}


def make(args) -> None:
    import duckdb

    con = duckdb.connect(str(args.db), read_only=True)
    try:
        a, b = subset_records(con, args.a), subset_records(con, args.b)
    finally:
        con.close()
    rng = random.Random(args.seed)
    items = []
    for side, mine, other in (("A", a, b), ("B", b, a)):
        only = sorted(set(mine) - set(other))
        items += [(side, mine[rid]) for rid in sorted(rng.sample(only, min(args.n, len(only))))]
    rng.shuffle(items)
    args.out.mkdir(parents=True, exist_ok=True)
    key, scale = {}, scale_text()
    for s in range(args.shares):
        lines = [f"# Label each record 1-5, share {s}", "",
                 "Each item is one instruction record (prompt, then answer) of a Japanese training set. Label the "
                 "answer 1-5 on the scale below, as an answer to this prompt, and write one line per item to "
                 f"verdicts-{s}.tsv: `item id<TAB>1|2|3|4|5<TAB>why (one line)`.", "",
                 scale, ""]
        for n, (side, r) in enumerate(items[s::args.shares]):
            iid = f"{s}-{n:03d}"
            key[iid] = {"side": side, "record_id": r["record_id"], "source_id": r["source_id"]}
            view = RecordView.of(r["instruction"], r["input"], r["output"], r["messages"])
            lines += [f"## item {iid}", "", "**Prompt**", "", view.prompt or "(empty)"]
            if view.context:
                lines += ["", "**Context**", "", view.context]
            lines += ["", "**Answer**", "", view.answer or "(empty)", "", "---", ""]
        (args.out / f"share-{s}.md").write_text("\n".join(lines), encoding="utf-8")
    n_a = sum(1 for side, _ in items if side == "A")
    key_path = args.out.parent / f"{args.out.name}_key.json"
    key_path.write_text(json.dumps({"A": args.a, "B": args.b, "db": args.db.name, "only_A": len(set(a) - set(b)),
                                    "only_B": len(set(b) - set(a)), "items": key}, ensure_ascii=False, indent=0),
                        encoding="utf-8")
    print(f"{len(items)} records ({n_a} only in A, {len(items) - n_a} only in B) in {args.shares} shares under "
          f"{args.out}; key {key_path}")


def bootstrap_diff(x: np.ndarray, y: np.ndarray, n: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95% interval of mean(x) - mean(y), each side resampled on its own (the two sides hold different records)."""
    rng = np.random.default_rng(seed)
    d = [rng.choice(x, len(x)).mean() - rng.choice(y, len(y)).mean() for _ in range(n)]
    return float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))


def score(args) -> None:
    data = json.loads((args.out.parent / f"{args.out.name}_key.json").read_text(encoding="utf-8"))
    key = data["items"]
    verdicts = read_verdicts(args.out, key, allowed=LABELS, spelled="1|2|3|4|5")
    by_side = {"A": [], "B": []}
    by_source: dict[tuple[str, str], list[int]] = {}
    for iid, (label, _) in verdicts.items():
        k = key[iid]
        by_side[k["side"]].append(int(label))
        by_source.setdefault((k["source_id"], k["side"]), []).append(int(label))
    lines = ["# Records one selector takes and the other leaves, labelled blind", "",
             f"A = `{data['A']}` ({data['only_A']} records not in B), B = `{data['B']}` ({data['only_B']} not in A); "
             f"{len(verdicts)} of {len(key)} drawn records labelled 1-5 (`data/LABELLING.md`).", "",
             "| side | labelled | mean label | labelled 1-2 |", "| --- | --- | --- | --- |"]
    for side in ("A", "B"):
        y = np.array(by_side[side])
        if len(y):
            lines.append(f"| only in {side} | {len(y)} | {y.mean():.2f} | {(y <= 2).mean():.2f} |")
    if by_side["A"] and by_side["B"]:
        xa, xb = np.array(by_side["A"], float), np.array(by_side["B"], float)
        lo, hi = bootstrap_diff(xa, xb)
        lines += ["", f"Mean label A − B: {xa.mean() - xb.mean():+.2f} [{lo:+.2f}, {hi:+.2f}] (95% bootstrap)."]
    lines += ["", "| source | only in A: n, mean | only in B: n, mean |", "| --- | --- | --- |"]
    for source in sorted({s for s, _ in by_source}):
        cells = []
        for side in ("A", "B"):
            y = by_source.get((source, side), [])
            cells.append(f"{len(y)}, {np.mean(y):.2f}" if y else "0")
        lines.append(f"| {source} | " + " | ".join(cells) + " |")
    earlier = {}
    if REAL_LABELS.is_file():
        for line in REAL_LABELS.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            earlier[r["record_id"]] = int(r["label"])
    both = [(int(v[0]), earlier[key[iid]["record_id"]]) for iid, v in verdicts.items()
            if key[iid]["record_id"] in earlier]
    if both:
        now, then = np.array(both).T
        lines += ["", f"{len(both)} of these records were labelled before (`data/labels/`): the same label in "
                      f"{(now == then).mean():.2f}, within one in {(abs(now - then) <= 1).mean():.2f}."]
    text = "\n".join(lines) + "\n"
    (args.out / "results.md").write_text(text, encoding="utf-8")
    print(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["make", "score"])
    ap.add_argument("--out", type=Path, required=True, help="the readers' folder; the key goes beside it")
    ap.add_argument("--db", type=Path, help="make: the store holding both subsets")
    ap.add_argument("--a", help="make: subset A (e.g. the default's top-k)")
    ap.add_argument("--b", help="make: subset B (e.g. longest-k)")
    ap.add_argument("--n", type=int, default=200, help="make: at most N records of each side")
    ap.add_argument("--shares", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.out = args.out.resolve()
    if args.step == "make":
        if not (args.db and args.a and args.b):
            raise SystemExit("make needs --db, --a and --b")
        make(args)
    else:
        score(args)


if __name__ == "__main__":
    main()
