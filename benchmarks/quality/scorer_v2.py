"""jquality-v2, v3 and v4: train and judge the content-aware shipped scorer against labels read by people.

    uv run python benchmarks/quality/scorer_v2.py [--realdata runs/realdata] [--length-weight 0.6] [--write-model]
    # jquality-v3: v2 with the length bonus gated by the pair model
    uv run python benchmarks/quality/scorer_v2.py --length-weight 1.0 --fit-weight 0.5 --length-gate 1 \
        --version v3 --write-model curate/scoring/models/jquality-v3
    # jquality-v4, the default: v3 with the length bonus weighing 3 (the short-answer penalty stays at 1)
    uv run python benchmarks/quality/scorer_v2.py --length-weight 1.0 --length-bonus-weight 3.0 --fit-weight 0.5 \
        --length-gate 1 --version v4 --write-model curate/scoring/models/jquality-v4

Labels: ``data/labels/real_labels.jsonl`` (1–5 by the ELYZA-tasks-100 criteria of ``data/LABELLING.md``,
each by reading; 1,800 records of ten public datasets). A model is a ridge regression over the cheap
quality features (``curate.scoring.quality_features``) and the prompt-answer fit features
(``curate.scoring.fit_features``), fitted across datasets (no per-dataset centring, so a score means the
same in every dataset), with *swapped twins* added as negatives: each training record's prompt with
another record's answer (of the same dataset), labelled 1, because an answer to another question is a 1
on the scale. The shipped score is the predicted label plus ``length_weight`` × (log answer length −
its centre): chosen by the selection benchmark (``benchmarks/selection``), not here. ``--length-gate G``
pays that length bonus only as far as the pair model says the answer belongs to its prompt (half at a
pair logit of G): several values side by side, the first one written.

Training datasets: those whose terms let a default component learn from them. Evaluated on, never
trained on: Japanese Daily Dialogue (CC BY-NC-ND) and the Alpaca translation (CC BY-NC, Alpaca's terms).

Printed, per dataset left out (trained on the others): Spearman of the predicted label and of the
shipped score against the labels; the mean label of the top 20% by the shipped score against a random
20% (95% bootstrap); and the fit test: each held-out record beside its twin (its prompt, another
held-out record's answer of the same dataset), the share of pairs where the original scores higher.
``--write-model`` trains on every training dataset and writes ``curate/scoring/models/jquality-v2``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.real_data.build_inputs import DEFAULT_REALDATA  # noqa: E402
from core.jsonl import json_objects  # noqa: E402
from curate.scoring.classifier import spearman  # noqa: E402
from curate.scoring.pair_fit import PairFit, swapped_answers  # noqa: E402
from curate.scoring.quality_features import FEATURES, RecordView  # noqa: E402
from curate.scoring.shipped_scorer import (  # noqa: E402
    MODELS,
    V2_FEATURES,
    Ridge,
    save_v2_model,
    v2_matrix,
    v2_raw,
)

LABELS = ROOT / "data/labels"
EVAL_ONLY = {"japanese-daily-dialogue", "wanda-alpaca-ja"}  # NC terms: never in a shipped model's training data
LENGTH = FEATURES.index("log_answer_chars")


def labelled_views(realdata: Path) -> tuple[list[str], list[RecordView], np.ndarray]:
    """(source of each record, its view, its label) for every labelled record this machine can read."""
    records = {f"{r['source_id']}:{r['id']}": r for r in json_objects(LABELS / "real_records.jsonl")}
    labels = list(json_objects(LABELS / "real_labels.jsonl"))
    missing = {lab["source_id"] for lab in labels if lab["record_id"] not in records}
    for source in missing:  # records that may not be redistributed: from the local build
        path = realdata / f"{source}.jsonl"
        if path.is_file():
            records.update({f"{source}:{r['id']}": {**r, "source_id": source} for r in json_objects(path)})
    sources, views, y = [], [], []
    for lab in labels:
        r = records.get(lab["record_id"])
        if r is None:
            continue
        sources.append(lab["source_id"])
        views.append(RecordView.of(r.get("instruction"), r.get("input"), r.get("output"), r.get("messages")))
        y.append(float(lab["label"]))
    return sources, views, np.array(y)


def pair_training_views(realdata: Path, sources: list[str]) -> tuple[list[RecordView], list[str]]:
    """Every record of the training datasets that is not labelled (the labelled ones are the fit test's)."""
    labelled = {lab["record_id"] for lab in json_objects(LABELS / "real_labels.jsonl")}
    views, groups = [], []
    for source in sources:
        path = realdata / f"{source}.jsonl"
        if not path.is_file():
            raise SystemExit(f"{path}: not found; run benchmarks/real_data/build_inputs.py first")
        for r in json_objects(path):
            if f"{source}:{r['id']}" not in labelled:
                views.append(RecordView.of(r.get("instruction"), r.get("input"), r.get("output"), r.get("messages")))
                groups.append(source)
    return views, groups


# overlap with the prompt or the context passage is left to the pair model: in labels read by people, a span
# copied from a passage (JSQuAD) is a correct answer, and a ridge learns "copying is good", which then ranks
# code that repeats the prompt's code, and spans, above every written answer
LEFT_TO_PAIR_MODEL = ("answer_prompt_overlap", "answer_copies_context", "answer_in_context", "prompt_coverage",
                      "answer_anchored", "fit_x_length")
_LEFT = [V2_FEATURES.index(f) for f in LEFT_TO_PAIR_MODEL]


def fit_model(X: np.ndarray, y: np.ndarray, X_twins: np.ndarray, alpha: float) -> Ridge:
    """The ridge over the records and their swapped twins (label 1); the features ``LEFT_TO_PAIR_MODEL`` get
    a weight of 0 (constant columns in training)."""
    rows = np.vstack([X, X_twins])
    rows[:, _LEFT] = 0.0
    return Ridge.fit(rows, np.concatenate([y, np.ones(len(X_twins))]), alpha=alpha)


def shipped(model: Ridge, X: np.ndarray, weight: float, centre: float, fit_weight: float,
            gate: float | None = None, bonus_weight: float | None = None) -> np.ndarray:
    """What ``ShippedScorer.v2_score`` computes (before its order-keeping squash)."""
    return v2_raw(model.predict(X), X, fit_weight, weight, centre, gate, bonus_weight)


def held_out_sets(sources: list[str], views: list[RecordView], y: np.ndarray, X: np.ndarray, X_twins: np.ndarray,
                  pair, alpha: float):
    """Leave one dataset out, for each labelled dataset: (its name, its rows, the ridge trained on the other
    training datasets with their twins, the fit test's twins: each held-out record's prompt with another held-out
    record's answer (seed 7), and their feature rows)."""
    src = np.array(sources)
    for held in sorted(set(sources)):
        test = src == held
        train = ~test & ~np.isin(src, list(EVAL_ONLY))
        twins = swapped_answers([v for v, t in zip(views, test) if t], [held] * int(test.sum()), seed=7)
        yield held, test, fit_model(X[train], y[train], X_twins[train], alpha), twins, v2_matrix(twins, pair)


def top_vs_random(score: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """Mean label of the top 20% by score, and of random 20% draws (mean and 95% interval)."""
    k = max(1, len(y) // 5)
    top = y[np.argsort(-score, kind="stable")[:k]].mean()
    rng = np.random.default_rng(seed)
    draws = np.array([y[rng.choice(len(y), k, replace=False)].mean() for _ in range(2000)])
    return float(top), float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--realdata", type=Path, default=DEFAULT_REALDATA)
    ap.add_argument("--alpha", type=float, default=10.0, help="ridge penalty")
    ap.add_argument("--fit-weight", type=float, default=0.3, help="weight of the pair model's logit in the score")
    ap.add_argument("--pair-l2", type=float, default=1.0, help="the pair model's L2 penalty")
    ap.add_argument("--length-weight", type=float, nargs="+", default=[0.0, 0.4, 0.8])
    ap.add_argument("--length-gate", nargs="+", default=["none"],
                    help="pair logits at which the length bonus is half paid (v2_raw), or 'none' (jquality-v2)")
    ap.add_argument("--length-bonus-weight", type=float, default=None,
                    help="the length bonus's own weight (jquality-v4: 3.0; the penalty keeps --length-weight); "
                         "default: the same as --length-weight")
    ap.add_argument("--write-model", type=Path, nargs="?", const=MODELS / "jquality-v2", default=None,
                    help="train on every training dataset and write the model (first --length-weight)")
    ap.add_argument("--assoc", type=Path, default=None,
                    help="an association model (benchmarks/quality/assoc_experiment.py --save): jquality-v5")
    ap.add_argument("--assoc-conversations-only", action="store_true",
                    help="the association for conversations only; instructions keep the pair logit bit for bit")
    ap.add_argument("--version", default="v2", help="the written model's version")
    args = ap.parse_args()

    sources, views, y = labelled_views(args.realdata)
    src = np.array(sources)
    trainable = sorted(set(sources) - EVAL_ONLY)
    pair_views, pair_groups = pair_training_views(args.realdata, trainable)
    start = time.perf_counter()
    pair = PairFit.train(pair_views, pair_groups, l2=args.pair_l2)
    if args.assoc:  # jquality-v5: the pair logit and the learned association as one logit
        from benchmarks.quality.assoc_experiment import combined_fit
        from curate.scoring.assoc_fit import AssocFit

        pair = combined_fit(args.realdata, trainable, pair, AssocFit.load(args.assoc),
                            conversations_only=args.assoc_conversations_only)
        for j, kind in enumerate(("instructions", "conversations")):
            print(f"pair + association, {kind}: {pair.pair_weight[j]:.3f} x pair logit + "
                  f"{pair.assoc_weight[j]:.3f} x cosine {pair.bias[j]:+.3f}")
    print(f"pair model: {len(pair_views)} unlabelled records of {len(trainable)} datasets and as many swapped "
          f"pairs, trained in {time.perf_counter() - start:.0f} s")
    start = time.perf_counter()
    X = v2_matrix(views, pair)
    rate = len(views) / (time.perf_counter() - start)
    X_twins = v2_matrix(swapped_answers(views, sources, seed=1), pair)
    centre = float(np.median(X[:, LENGTH]))
    datasets = sorted(set(sources))
    print(f"{len(views)} labelled records of {len(datasets)} datasets; features at {rate:.0f} records/s; "
          f"length centre log1p(chars) = {centre:.2f}")
    rows = []
    gates = [None if g == "none" else float(g) for g in args.length_gate]
    held_out = list(held_out_sets(sources, views, y, X, X_twins, pair, args.alpha))
    for weight, gate in ((w, g) for w in args.length_weight for g in gates):
        for held, test, model, _, X_held_twins in held_out:
            quality = model.predict(X[test])
            score = shipped(model, X[test], weight, centre, args.fit_weight, gate, args.length_bonus_weight)
            # the fit test: held-out records beside their twins among the held-out records
            twin_score = shipped(model, X_held_twins, weight, centre, args.fit_weight, gate, args.length_bonus_weight)
            wins = float(np.mean(score > twin_score))
            top, lo, hi = top_vs_random(score, y[test])
            rows.append(((weight, gate), held, int(test.sum()), spearman(quality, y[test]), spearman(score, y[test]),
                         spearman(X[test][:, LENGTH], y[test]), top, lo, hi, wins))
    print("\n| length weight, gate | left out | n | Spearman (label model) | Spearman (shipped score) | Spearman (length) "
          "| top 20% | random 20% [95%] | original > swapped twin |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for w, held, n, sq, ss, sl, top, lo, hi, wins in rows:
        print(f"| {w[0]}, {w[1]} | {held} | {n} | {sq:.2f} | {ss:.2f} | {sl:.2f} | {top:.2f} | [{lo:.2f}, {hi:.2f}] "
              f"| {wins:.2f} |")
    if args.write_model:
        weight, gate = args.length_weight[0], gates[0]
        train = ~np.isin(src, list(EVAL_ONLY))
        model = fit_model(X[train], y[train], X_twins[train], args.alpha)
        metrics = [dict(left_out=h, n=n, spearman_label_model=round(sq, 3), spearman_score=round(ss, 3),
                        spearman_length=round(sl, 3), top20=round(t, 2), random20=[round(lo, 2), round(hi, 2)],
                        original_beats_twin=round(wn, 3))
                   for w, h, n, sq, ss, sl, t, lo, hi, wn in rows if w == (weight, gate)]
        trained_on = {s: int(((src == s) & train).sum()) for s in datasets if ((src == s) & train).any()}
        folder = save_v2_model(args.write_model, "jquality", args.version, model, pair, weight, centre, args.fit_weight,
                               alpha=args.alpha,
                               pair_l2=args.pair_l2, pair_trained_on={str(k): int(v) for k, v in zip(*np.unique(pair_groups,
                                                                                               return_counts=True))},
                               trained_on=trained_on, twins=int(train.sum()), metrics=metrics,
                               **({} if gate is None else {"length_gate": gate}),
                               **({} if args.length_bonus_weight is None
                                  else {"length_bonus_weight": args.length_bonus_weight}))
        coef = sorted(zip(V2_FEATURES, model.coef), key=lambda kv: -abs(kv[1]))
        print(f"\nwrote {folder}; largest standardised coefficients: "
              + ", ".join(f"{k} {v:+.2f}" for k, v in coef[:8]))


if __name__ == "__main__":
    main()
