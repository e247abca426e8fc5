"""Blind pairwise reading of the finalists' answers: make the pairs, then count the readers' verdicts.

    uv run python benchmarks/selection/blind_pairs.py make  --out runs/selection/instruction-k300 --shares 4
    (readers fill OUT/blind/verdicts-<share>.tsv: pair id, A | B | tie, one line of why)
    uv run python benchmarks/selection/blind_pairs.py score --out runs/selection/instruction-k300

``make`` pairs the default arm's answer to each test item with random's and with longest's
(``generate_answers.py``), puts the two comparisons' pairs in one shuffled list, shows each pair's answers in
a random order as A and B with the arm hidden, and writes the list in shares (``OUT/blind/share-<i>.md``, the
question and ELYZA's reference answer beside the two answers) for readers; the key stays in
``OUT/blind_key.json`` (with ``--name N``: ``OUT/N/`` and ``OUT/N_key.json``), which readers are not shown.
``score`` unblinds: per comparison the default arm's wins, ties and losses, the share of decided pairs it won
with a 95% bootstrap interval over items, and writes ``OUT/blind/results.md``.

A reading can go on in a second one: ``make --name N2 --after N`` leaves out the comparisons (item, other arm)
that ``N`` already holds, so more answers can be read without showing a reader a pair twice; ``score --name N N2``
pools the verdicts of both and writes the table into the last one's folder.

How far readers agree: ``reread --name N --to R`` gives other readers the same pairs, in the same order and with
the same A and B (``OUT/R/``, key ``OUT/R_key.json``); ``agree --name N R`` counts, per comparison, the pairs where
both readings give the same outcome for the default (win, tie or loss) and Cohen's kappa over those three
outcomes. Agreement is not more evidence about the arms (the answers are the same): it says how far one reading's
verdicts can be trusted.
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

from benchmarks.real_data.build_inputs import DEFAULT_REALDATA  # noqa: E402
from benchmarks.selection.run import SETS, arm_tag  # noqa: E402

VERDICTS = {"A", "B", "tie"}


def load_answers(out: Path, arm: str, seed: int) -> dict[str, str]:
    path = out / "answers" / f"{arm_tag(arm)}-s{seed}.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path} not found: run benchmarks/selection/generate_answers.py first")
    return {r["item_id"]: r["answer"] for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


def make(args) -> None:
    from eval.tasks import load_tasks

    items = {it.item_id: it for it in load_tasks(args.realdata / SETS["test"], warn=lambda m: None)}
    default = load_answers(args.out, args.default, args.seed)
    rng = random.Random(args.seed)
    pairs = []
    done = set()
    for earlier in getattr(args, "after", None) or []:
        earlier_key = json.loads((args.out / f"{earlier}_key.json").read_text(encoding="utf-8"))
        if earlier_key["default"] != args.default or earlier_key["seed"] != args.seed:
            raise SystemExit(f"{earlier}_key.json reads {earlier_key['default']} seed {earlier_key['seed']}, "
                             f"not {args.default} seed {args.seed}: a reading goes on with the same arm and seed")
        for k in earlier_key["pairs"].values():
            done.add((k["item_id"], k["B"] if k["A"] == args.default else k["A"]))
    for other in args.against:
        answers = load_answers(args.out, other, args.seed)
        for item_id in sorted(set(default) & set(answers), key=lambda i: int(i.rsplit(":", 1)[1])):
            if (item_id, other) in done:
                continue
            default_first = rng.random() < 0.5
            pairs.append({"item_id": item_id, "A": args.default if default_first else other,
                          "B": other if default_first else args.default,
                          "answer_A": default[item_id] if default_first else answers[item_id],
                          "answer_B": answers[item_id] if default_first else default[item_id]})
    rng.shuffle(pairs)
    blind = args.out / args.name
    blind.mkdir(parents=True, exist_ok=True)
    key = {}
    shares = [pairs[i::args.shares] for i in range(args.shares)]
    for s, share in enumerate(shares):
        lines = [f"# Blind pairs, share {s}", "",
                 "For each pair: which answer serves the user who asked better (correct, on the question, "
                 "complete, readable Japanese)? ELYZA's reference answer is shown as a guide, not as the only "
                 "right answer. Write one line per pair to verdicts-" f"{s}.tsv: `pair id<TAB>A|B|tie<TAB>why "
                 "(one line)`. `tie` when both are equally useful or equally useless.", ""]
        for n, p in enumerate(share):
            pid = f"{s}-{n:03d}"
            key[pid] = {"item_id": p["item_id"], "A": p["A"], "B": p["B"]}
            it = items[p["item_id"]]
            lines += [f"## pair {pid}", "", "**Question**", "", it.turns[0], "", "**Reference**", "",
                      (it.reference[0] if it.reference else "(none)"), "", "**Answer A**", "", p["answer_A"] or
                      "(empty)", "", "**Answer B**", "", p["answer_B"] or "(empty)", "", "---", ""]
        (blind / f"share-{s}.md").write_text("\n".join(lines), encoding="utf-8")
    (args.out / f"{args.name}_key.json").write_text(json.dumps({"default": args.default, "seed": args.seed, "pairs": key},
                                               ensure_ascii=False, indent=0), encoding="utf-8")
    print(f"{len(pairs)} pairs in {args.shares} shares under {blind}")


def read_verdicts(blind: Path, key: dict, allowed=VERDICTS, spelled: str = "A|B|tie") -> dict[str, tuple[str, str]]:
    """{pair id: (verdict, why)} from the readers' ``verdicts-*.tsv`` in ``blind``; a line that is not
    ``pair id<TAB>verdict<TAB>why`` with a known id and a verdict in ``allowed`` stops with its file and line."""
    verdicts = {}
    for path in sorted(blind.glob("verdicts-*.tsv")):
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) < 3 or parts[0] not in key or parts[1] not in allowed:
                raise SystemExit(f"{path} line {lineno}: expected 'pair id<TAB>{spelled}<TAB>why', got {line[:80]!r}")
            verdicts[parts[0]] = (parts[1], parts[2].strip())
    return verdicts


def outcomes(out: Path, name: str) -> tuple[str, int, dict[str, tuple[str, str, int]]]:
    """One reading unblinded: (the default arm, the pairs in its key, {pair id read: (item id, the other arm,
    1 | 0 | -1: the default won, tied, lost)})."""
    data = json.loads((out / f"{name}_key.json").read_text(encoding="utf-8"))
    key, default = data["pairs"], data["default"]
    found = {}
    for pid, (v, _) in read_verdicts(out / name, key).items():
        k = key[pid]
        found[pid] = (k["item_id"], k["B"] if k["A"] == default else k["A"],
                      0 if v == "tie" else (1 if k[v] == default else -1))
    return default, len(key), found


def score(args) -> None:
    names = [args.name] if isinstance(args.name, str) else list(args.name)
    rows, n_read, n_pairs, defaults = {}, 0, 0, set()
    for name in names:
        default, n_key, read = outcomes(args.out, name)
        defaults.add(default)
        n_read, n_pairs = n_read + len(read), n_pairs + n_key
        for item_id, other, outcome in read.values():
            rows.setdefault(other, []).append((item_id, outcome))
    if len(defaults) != 1:
        raise SystemExit(f"readings {names} compare different default arms {sorted(defaults)}: score them apart")
    blind = args.out / names[-1]
    pooled = f" (readings {', '.join(names)} pooled)" if len(names) > 1 else ""
    lines = [f"# Blind pairwise reading: `{default}` against each other arm", "",
             f"{n_read} of {n_pairs} pairs read{pooled}. Win share = wins / (wins + losses), 95% bootstrap over "
             "test items (an item's pairs of several readings, e.g. two seeds, drawn together); ties are "
             "reported and left out of the share.", "",
             "| against | pairs read | wins | ties | losses | win share of decided |", "| --- | --- | --- | --- | --- | --- |"]
    rng = np.random.default_rng(0)
    for other, pairs in sorted(rows.items()):
        by_item: dict[str, list[int]] = {}
        for item_id, outcome in pairs:
            by_item.setdefault(item_id, []).append(outcome)
        groups = [np.array(v) for v in by_item.values()]
        o = np.concatenate(groups)
        wins, ties, losses = int((o == 1).sum()), int((o == 0).sum()), int((o == -1).sum())
        share, interval = "–", ""
        if wins + losses:
            share = f"{wins / (wins + losses):.2f}"
            boot = []
            for _ in range(10_000):
                s = np.concatenate([groups[i] for i in rng.integers(0, len(groups), len(groups))])
                w, l_ = (s == 1).sum(), (s == -1).sum()
                if w + l_:
                    boot.append(w / (w + l_))
            interval = f" [{np.percentile(boot, 2.5):.2f}, {np.percentile(boot, 97.5):.2f}]"
        lines.append(f"| {other} | {len(o)} | {wins} | {ties} | {losses} | {share}{interval} |")
    text = "\n".join(lines) + "\n"
    (blind / "results.md").write_text(text, encoding="utf-8")
    print(text)


def reread(args) -> None:
    """The pairs of reading ``--name`` for other readers: the same shares, order and sides, under ``--to``."""
    name = args.name[0] if isinstance(args.name, list) else args.name
    source, target = args.out / name, args.out / args.to
    shares = sorted(source.glob("share-*.md"))
    if not shares:
        raise SystemExit(f"{source}: no share-*.md: run make first")
    if target.exists() and any(target.glob("verdicts-*.tsv")):
        raise SystemExit(f"{target} holds verdicts already: pick another --to")
    target.mkdir(parents=True, exist_ok=True)
    for path in shares:
        (target / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (args.out / f"{args.to}_key.json").write_text((args.out / f"{name}_key.json").read_text(encoding="utf-8"),
                                                 encoding="utf-8")
    print(f"{len(shares)} shares of {name} under {target}, for other readers")


def cohen_kappa(a: list[int], b: list[int]) -> float:
    """Agreement beyond what the two readings' own shares of each outcome give by chance."""
    a, b = np.array(a), np.array(b)
    observed = float((a == b).mean())
    expected = float(sum((a == v).mean() * (b == v).mean() for v in (-1, 0, 1)))
    return (observed - expected) / (1.0 - expected) if expected < 1.0 else 1.0


def agree(args) -> None:
    first, second = args.name
    one, two = outcomes(args.out, first)[2], outcomes(args.out, second)[2]
    both = sorted(one.keys() & two.keys())
    if not both:
        raise SystemExit(f"{first} and {second} share no read pair: agree compares two readings of the same pairs")
    lines = [f"# Two readings of the same pairs: {first} and {second}", "",
             "Outcome for the default: win, tie or loss. Kappa: Cohen's, over the three outcomes.", "",
             "| against | pairs read twice | same outcome | kappa | win / tie / loss, first | win / tie / loss, second "
             "| decided by one, a tie by the other | opposite wins |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for other in sorted({one[p][1] for p in both}):
        pids = [p for p in both if one[p][1] == other]
        a, b = [one[p][2] for p in pids], [two[p][2] for p in pids]
        same = sum(x == y for x, y in zip(a, b))
        half = sum((x == 0) != (y == 0) for x, y in zip(a, b))
        opposite = sum(x * y == -1 for x, y in zip(a, b))
        counts = [f"{r.count(1)} / {r.count(0)} / {r.count(-1)}" for r in (a, b)]
        lines.append(f"| {other} | {len(pids)} | {same} ({same / len(pids):.2f}) | {cohen_kappa(a, b):.2f} | "
                     f"{counts[0]} | {counts[1]} | {half} | {opposite} |")
    text = "\n".join(lines) + "\n"
    (args.out / second / "agreement.md").write_text(text, encoding="utf-8")
    print(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["make", "score", "reread", "agree"])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--default", default="model:jquality-v2")
    ap.add_argument("--against", nargs="+", default=["random", "longest"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shares", type=int, default=4)
    ap.add_argument("--name", nargs="+", default=["blind"],
                    help="the reading's folder OUT/NAME and key OUT/NAME_key.json (another default arm: another "
                         "name); score pools several, make takes one")
    ap.add_argument("--after", nargs="+", default=[],
                    help="make: leave out the comparisons these earlier readings of the same arm already hold")
    ap.add_argument("--to", help="reread: the second reading's name")
    ap.add_argument("--realdata", type=Path, default=DEFAULT_REALDATA)
    args = ap.parse_args()
    args.out = args.out.resolve()
    if args.step == "make":
        if len(args.name) != 1:
            raise SystemExit("make writes one reading: give one --name")
        args.name = args.name[0]
        make(args)
    elif args.step == "reread":
        if len(args.name) != 1 or not args.to:
            raise SystemExit("reread copies one reading: give one --name and --to")
        reread(args)
    elif args.step == "agree":
        if len(args.name) != 2:
            raise SystemExit("agree compares two readings of the same pairs: give two --name")
        agree(args)
    else:
        score(args)


if __name__ == "__main__":
    main()
