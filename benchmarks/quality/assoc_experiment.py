"""The fit test with a learned association of prompt and answer (``curate.scoring.assoc_fit``).

    uv run python benchmarks/quality/assoc_experiment.py [--epochs 1] [--save runs/assoc/G.npz] [--test]

Trains the association model on the unlabelled records of the shipped scorer's training datasets less a dev
split (10% by a hash of the id; each conversation of RealPersonaChat gives one pair per turn), never on a
labelled record, Japanese Daily Dialogue or the Alpaca translation; then runs the fit test of
``scorer_v2.py`` (each record beside its twin: its prompt, another record's answer of the same dataset, seed
7) on the dev split, with the pair model's logit (a pair model trained without the dev records, cached in
``runs/assoc/pair_without_dev.npy``: delete it after changing the inputs), the association alone, and the
two joined. ``--test`` adds the labelled records (with the shipped pair model, which never saw them):
reported, never chosen on. The defaults are jquality-v5's settings (chosen on the dev split).
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.quality.scorer_v2 import EVAL_ONLY, LABELS, labelled_views, pair_training_views  # noqa: E402
from benchmarks.real_data.build_inputs import DEFAULT_REALDATA  # noqa: E402
from core.jsonl import json_objects  # noqa: E402
from curate.scoring.assoc_fit import AssocFit, PairWithAssoc  # noqa: E402
from curate.scoring.pair_fit import PairFit, swapped_answers  # noqa: E402
from curate.scoring.quality_features import RecordView  # noqa: E402
from curate.scoring.shipped_scorer import ShippedScorer  # noqa: E402


def training_views(realdata: Path, sources: list[str], max_turn_pairs: int, dev_share: float = 0.1,
                   any_role: bool = False, with_training: bool = True
                   ) -> tuple[list[RecordView], list[str], list[RecordView], list[str]]:
    """Unlabelled records of ``sources``, split by record into training and dev (``dev_share``, by a hash of
    the id). In training a conversation gives a pair per assistant turn (at most ``max_turn_pairs``, the last
    ones), grouped by dataset and the turn's distance from the end (so a batch's other answers stand where the
    fit test's twins stand); in dev, as in the fit test, one record is one pair (its last assistant turn).
    ``with_training=False``: the dev split alone (the training lists stay empty)."""
    labelled = {lab["record_id"] for lab in json_objects(LABELS / "real_labels.jsonl")}
    views, groups, dev, dev_groups = [], [], [], []
    for source in sources:
        for r in json_objects(realdata / f"{source}.jsonl"):
            if f"{source}:{r['id']}" in labelled:
                continue
            messages = r.get("messages")
            if zlib.crc32(f"{source}:{r['id']}".encode()) % 1000 < dev_share * 1000:
                dev.append(RecordView.of(r.get("instruction"), r.get("input"), r.get("output"), messages))
                dev_groups.append(source)
            elif not with_training:
                continue
            elif messages:
                turns = [t for t in messages if t.get("content")]
                ends = [i for i, t in enumerate(turns) if (any_role or t["role"] == "assistant") and i > 0][-max_turn_pairs:]
                for back, end in enumerate(reversed(ends)):  # a user turn as the reply: both speak as people
                    views.append(RecordView.of(None, None, None, [*turns[:end], {**turns[end], "role": "assistant"}]))
                    groups.append(f"{source}#{min(back, 3)}")
            else:
                views.append(RecordView.of(r.get("instruction"), r.get("input"), r.get("output")))
                groups.append(source)
    return views, groups, dev, dev_groups


def fit_rows(label: str, groups: list[str], own: list[RecordView], twins: list[RecordView], pair, assoc,
             weights=(4.0, 8.0)) -> list[str]:
    """Per group: the share of records whose own answer beats its twin's, by the pair logit, the association,
    and pair + w * association."""
    po, pt = pair.score(own), pair.score(twins)
    ao, at = assoc.score(own), assoc.score(twins)
    g = np.array(groups)
    out = []
    for name in sorted(set(groups)):
        m = g == name
        cells = [np.mean(po[m] > pt[m]), np.mean(ao[m] > at[m])] + [np.mean((po + w * ao)[m] > (pt + w * at)[m])
                                                                     for w in weights]
        out.append(f"| {label} | {name} | {int(m.sum())} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    return out


def pair_without_dev(realdata: Path, trainable: list[str], dev: list[RecordView]) -> PairFit:
    """The pair model trained as the shipped one is, less the dev records (cached in runs/assoc)."""
    cached = ROOT / "runs/assoc/pair_without_dev.npy"
    if cached.is_file():
        return PairFit.load(cached)
    pv, pg = pair_training_views(realdata, trainable)
    dev_keys = {(v.prompt, v.answer) for v in dev}
    keep = [i for i, v in enumerate(pv) if (v.prompt, v.answer) not in dev_keys]
    pair = PairFit.train([pv[i] for i in keep], [pg[i] for i in keep])
    cached.parent.mkdir(parents=True, exist_ok=True)
    pair.save(cached)
    return pair


def dev_fit(realdata: Path, trainable: list[str], dev: list[RecordView], dev_groups: list[str],
            assoc: AssocFit, conversations_only: bool = False) -> tuple[PairWithAssoc, list[RecordView]]:
    """(the pair logit and ``assoc`` joined by weights fitted on the dev records, their swapped twins as the
    negatives, with a pair model that never saw them; those twins)."""
    twins = swapped_answers(dev, dev_groups, seed=7)
    joined = PairWithAssoc.fit_weights(pair_without_dev(realdata, trainable, dev), assoc, dev, twins,
                                       conversations_only)
    return joined, twins


def combined_fit(realdata: Path, trainable: list[str], pair: PairFit, assoc: AssocFit,
                 conversations_only: bool = False) -> PairWithAssoc:
    """``pair`` and ``assoc`` as one logit: the weights of ``dev_fit``, put on ``pair``."""
    *_, dev, dev_groups = training_views(realdata, trainable, max_turn_pairs=0, with_training=False)
    fitted, _ = dev_fit(realdata, trainable, dev, dev_groups, assoc, conversations_only)
    return PairWithAssoc(pair, assoc, fitted.pair_weight, fitted.assoc_weight, fitted.bias)


def fitted_rows(realdata: Path, trainable: list[str], dev, dev_groups, assoc: AssocFit, label: str) -> list[str]:
    """The fit test on the dev records with the combined logit (weights fitted on those same records: an
    in-sample check of the combination, the table's other columns being out of sample)."""
    joined, twins = dev_fit(realdata, trainable, dev, dev_groups, assoc)
    own, other = joined.score(dev), joined.score(twins)
    g = np.array(dev_groups)
    return [f"| {label} combined (in-sample weights) | {name} | {int((g == name).sum())} | "
            f"{np.mean(own[g == name] > other[g == name]):.3f} |" for name in sorted(set(dev_groups))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--realdata", type=Path, default=DEFAULT_REALDATA)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--max-turn-pairs", type=int, default=30)
    ap.add_argument("--dim", type=int, default=48)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--test", action="store_true", help="also the fit test on the labelled records")
    ap.add_argument("--earlier", action=argparse.BooleanOptionalAction, default=True,
                    help="read a conversation's earlier turns too")
    ap.add_argument("--any-role", action=argparse.BooleanOptionalAction, default=True,
                    help="a conversation's user turns as replies too")
    ap.add_argument("--save", type=Path, default=None)
    ap.add_argument("--load", type=Path, default=None)
    args = ap.parse_args()

    sources, views, _ = labelled_views(args.realdata)
    trainable = sorted(set(sources) - EVAL_ONLY)
    tv, tg, dev, dev_groups = training_views(args.realdata, trainable, args.max_turn_pairs, any_role=args.any_role)
    if args.load:
        assoc = AssocFit.load(args.load)
    else:
        print(f"{len(tv)} training pairs, {len(dev)} dev records")
        start = time.perf_counter()
        assoc = AssocFit.train(tv, tg, epochs=args.epochs, dim=args.dim, batch=args.batch, lr=args.lr,
                               earlier=args.earlier)
        print(f"trained in {time.perf_counter() - start:.0f} s")
        if args.save:
            assoc.save(args.save)
    # on dev, a pair model that never saw the dev records, as the shipped one never saw the labelled ones
    pair = pair_without_dev(args.realdata, trainable, dev)
    print("| split | dataset | n | pair logit | assoc | pair + 4·assoc | pair + 8·assoc |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    rows = fit_rows("dev", dev_groups, dev, swapped_answers(dev, dev_groups, seed=7), pair, assoc)
    if args.test:  # the fit test on the labelled records: reported, never chosen on
        shipped_pair = ShippedScorer("jquality-v4").pair  # the pair model alone (v5's joins the association)
        rows += fit_rows("labelled", sources, views, swapped_answers(views, sources, seed=7), shipped_pair, assoc)
    print("\n".join(rows))
    print("\n".join(fitted_rows(args.realdata, trainable, dev, dev_groups, assoc, "dev")))
    start = time.perf_counter()
    assoc.score(views)
    print(f"assoc: {len(views) / (time.perf_counter() - start):.0f} records/s")


if __name__ == "__main__":
    main()
