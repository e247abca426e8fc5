"""Choosing the shipped scorer: leave-one-dataset-out agreement with labels made by reading.

    uv run python benchmarks/quality/scorer_selection.py [--realdata runs/realdata] [--embeddings] [--write-model]

Labels: ``data/labels/real_labels.jsonl`` (1,200 records of six public datasets, 1–5 by the
ELYZA-tasks-100 criteria of ``data/LABELLING.md``, each by reading) plus the team's own labelled
records (``data/handwritten``, always training data, never a test set). Groups: MultiAlpaca-ja,
instruction_ja (machine-translated and hand-edited share their prompts, so they are one group),
JSQuAD, RealPersonaChat, Japanese Daily Dialogue (CC BY-NC-ND: evaluated on, never trained on).

For every group left out, each candidate is trained on the other groups and scored on it:
Spearman against the labels, and the mean label of the top 20% by score against a random 20%
(with a 95% bootstrap interval). Candidates:

* ``classifier``: today's fastText on fugashi tokens (``curate.scoring.classifier``), the baseline;
* ``features``: ridge regression on the cheap features of ``curate.scoring.quality_features``;
* ``char-ngrams``: ridge on hashed character 1–3-grams of prompt and answer (no tokenizer);
* ``features+char-ngrams``: the feature ridge with the n-gram ridge's prediction as one more
  feature (out-of-fold on the training groups, so the ridge does not learn to trust an overfit);
* ``use+ridge`` (``--embeddings``): ridge on multilingual USE embeddings of prompt and answer.

Then throughput (records/s, features / tokenisation / embedding included) on 3,000 records.
``--write-model`` trains the chosen candidate, ``char-ngrams`` (the best mean Spearman and the top
20% above a random 20% on four of five left-out groups; ``features+char-ngrams`` did worse on
unseen data), on every group it may train on and writes ``curate/scoring/models/jquality-v1/`` (model
files and the metrics its model card quotes).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.real_data.build_inputs import DEFAULT_REALDATA  # noqa: E402
from core.jsonl import json_objects  # noqa: E402
from curate.scoring.classifier import ClassifierParams, spearman, tokenize  # noqa: E402
from curate.scoring.quality_features import RecordView, feature_matrix  # noqa: E402
from curate.scoring.shipped_scorer import MODELS, NgramRidge, Ridge, save_model  # noqa: E402

LABELS = ROOT / "data/labels"
GROUPS = {"multialpaca-ja": "multialpaca-ja", "instruction-ja-mt": "instruction-ja", "instruction-ja-edited":
          "instruction-ja", "jsquad-ja": "jsquad-ja", "real-persona-chat": "real-persona-chat",
          "japanese-daily-dialogue": "japanese-daily-dialogue"}
EVAL_ONLY = {"japanese-daily-dialogue"}  # CC BY-NC-ND: evaluate on it, do not train a shipped model on it



def load_data(realdata: Path, handwritten: bool = False) -> tuple[list[RecordView], np.ndarray, list[str]]:
    records = {f"{r['source_id']}:{r['id']}": r for r in json_objects(LABELS / "real_records.jsonl")}
    labels = json_objects(LABELS / "real_labels.jsonl")
    missing = {lab["source_id"] for lab in labels if lab["record_id"] not in records}
    for source in missing:
        path = realdata / f"{source}.jsonl"
        if path.is_file():
            for r in json_objects(path):
                records.setdefault(f"{source}:{r['id']}", r)
    views, y, groups = [], [], []
    for lab in labels:
        r = records.get(lab["record_id"])
        if r is None:
            continue
        views.append(RecordView.of(r.get("instruction"), r.get("input"), r.get("output"), r.get("messages")))
        y.append(float(lab["label"]))
        groups.append(GROUPS[lab["source_id"]])
    for path in sorted((ROOT / "data/handwritten").glob("*.jsonl")) if handwritten else ():
        for r in json_objects(path):
            if isinstance(r.get("quality"), (int, float)) and r.get("output"):
                views.append(RecordView.of(r.get("instruction"), r.get("input"), r.get("output")))
                y.append(float(r["quality"]))
                groups.append("jcurate-handwritten")
    return views, np.array(y), groups


def classifier_text(v: RecordView) -> str:
    return "\n\n".join(p for p in (v.prompt, v.context) if p) + "\n\n" + v.answer


def fit_classifier(views, y, groups):
    """Today's classifier: fastText on fugashi tokens of the whole text, its default parameters."""
    import fasttext

    from curate.text.tokenizers import FugashiTokenizer

    p, tok = ClassifierParams(), FugashiTokenizer()
    lines = [f"__label__{int(round(lab))} {tokenize(tok, classifier_text(v))}" for v, lab in zip(views, y)]
    path = Path("/tmp/jcurate-selection-classifier.txt")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    model = fasttext.train_supervised(str(path), epoch=p.epoch, lr=p.lr, wordNgrams=p.word_ngrams, dim=p.dim,
                                      bucket=p.bucket, minCount=p.min_count, seed=p.seed, thread=1, verbose=0)

    def predict(vs):
        labels, probs = model.predict([tokenize(tok, classifier_text(v)) for v in vs], k=5)
        return np.array([sum(float(la.removeprefix("__label__")) * pr for la, pr in zip(ls, ps)) / sum(ps)
                         for ls, ps in zip(labels, probs)])
    return predict


def fit_features(views, y, groups):
    ridge = Ridge.fit(feature_matrix(views), y, alpha=3.0, groups=groups)
    return lambda vs: ridge.predict(feature_matrix(vs))


def fit_ngrams(views, y, groups):
    model = NgramRidge.fit(views, y, alpha=NGRAM_ALPHA, groups=groups)
    predict = lambda vs: np.clip(model.predict(vs), 1.0, 5.0)  # as ShippedScorer scores
    predict.model = model
    return predict


NGRAM_ALPHA = 3.0


def out_of_fold_ngrams(views, y, groups, folds: int = 5, seed: int = 0) -> np.ndarray:
    order = np.random.default_rng(seed).permutation(len(views))
    oof = np.zeros(len(views))
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        oof[test] = NgramRidge.fit([views[i] for i in train], y[train], alpha=NGRAM_ALPHA,
                                   groups=np.asarray(groups)[train]).predict(
            [views[i] for i in test])
    return oof


def fit_stacked(views, y, groups):
    X = np.column_stack([feature_matrix(views), out_of_fold_ngrams(views, y, groups)])
    ridge = Ridge.fit(X, y, alpha=3.0, groups=groups)
    model = NgramRidge.fit(views, y, alpha=NGRAM_ALPHA, groups=groups)
    predict = lambda vs: ridge.predict(np.column_stack([feature_matrix(vs), model.predict(vs)]))
    predict.parts = (ridge, model)
    return predict


def fit_use(views, y, groups):
    from curate.scoring.embeddings import Embedder

    emb = Embedder("use")

    def embed(vs):
        return np.column_stack([emb.encode([v.prompt[:500] for v in vs]), emb.encode([v.answer[:500] for v in vs])])
    ridge = Ridge.fit(embed(views), y, alpha=30.0, groups=groups)
    return lambda vs: ridge.predict(embed(vs))


CANDIDATES = {"classifier": fit_classifier, "features": fit_features, "char-ngrams": fit_ngrams,
              "features+char-ngrams": fit_stacked}


def top_vs_random(scores: np.ndarray, y: np.ndarray, share: float = 0.2, boot: int = 2000, seed: int = 0):
    """Mean label of the top ``share`` by score and of a random ``share``, each with a 95% bootstrap interval."""
    rng = np.random.default_rng(seed)
    k = max(1, int(round(share * len(y))))
    order = np.argsort(-scores, kind="stable")
    top = y[order[:k]]
    boots_top = [rng.choice(top, size=k).mean() for _ in range(boot)]
    randoms = [rng.choice(y, size=k, replace=False).mean() for _ in range(boot)]
    return (top.mean(), np.percentile(boots_top, [2.5, 97.5])), (float(np.mean(randoms)),
                                                                 np.percentile(randoms, [2.5, 97.5]))


def throughput(fit, views, y, groups, n: int = 3000) -> float:
    predict = fit(views, y, groups)
    probe = [views[i % len(views)] for i in range(n)]
    start = time.perf_counter()
    predict(probe)
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--realdata", type=Path, default=DEFAULT_REALDATA)
    ap.add_argument("--embeddings", action="store_true", help="also the USE embedding candidate (slow)")
    ap.add_argument("--write-model", action="store_true")
    ap.add_argument("--with-handwritten", action="store_true",
                    help="also train on the team's own labelled records (their length/format cues do not transfer)")
    args = ap.parse_args()
    if args.embeddings:
        CANDIDATES["use+ridge"] = fit_use
    views, y, groups = load_data(args.realdata, handwritten=args.with_handwritten)
    groups_arr = np.array(groups)
    test_groups = [g for g in dict.fromkeys(GROUPS.values()) if (groups_arr == g).any()]
    print(f"{len(y)} labelled records: " + ", ".join(f"{g} {int((groups_arr == g).sum())}"
                                                     for g in dict.fromkeys(groups)))
    results: dict[str, dict] = {}
    print(f"\n{'left out':<26} {'n':>4} " + " ".join(f"{c:>22}" for c in CANDIDATES))
    for g in test_groups:
        train = [i for i, gg in enumerate(groups) if gg != g and gg not in EVAL_ONLY]
        test = [i for i, gg in enumerate(groups) if gg == g]
        row = []
        for name, fit in CANDIDATES.items():
            predict = fit([views[i] for i in train], y[train], groups_arr[train])
            s = predict([views[i] for i in test])
            rho = spearman(list(s), list(y[test]))
            (top, top_ci), (rand, rand_ci) = top_vs_random(s, y[test])
            results.setdefault(name, {})[g] = {"spearman": round(rho, 3), "n": len(test),
                                               "top20_mean": round(float(top), 3),
                                               "top20_ci": [round(float(x), 3) for x in top_ci],
                                               "random20_mean": round(rand, 3),
                                               "random20_ci": [round(float(x), 3) for x in rand_ci]}
            row.append(f"{rho:>22.3f}")
        print(f"{g:<26} {len(test):>4} " + " ".join(row))
    print("\ntop 20% by score vs a random 20%: mean label [95% bootstrap interval]")
    for name, per in results.items():
        for g, m in per.items():
            print(f"  {name:<24} {g:<24} top {m['top20_mean']:.2f} {m['top20_ci']}  random {m['random20_mean']:.2f} "
                  f"{m['random20_ci']}")
    print("\nthroughput (records/s, everything included, one process):")
    allowed = [i for i, gg in enumerate(groups) if gg not in EVAL_ONLY]
    speeds = {}
    for name, fit in CANDIDATES.items():
        speeds[name] = round(throughput(fit, [views[i] for i in allowed], y[allowed], groups_arr[allowed]))
        print(f"  {name:<24} {speeds[name]:>8}")
    out = ROOT / "benchmarks/results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "scorer_selection.json").write_text(
        json.dumps({"leave_one_dataset_out": results, "records_per_second": speeds}, indent=1), encoding="utf-8")
    if args.write_model:
        write_model([views[i] for i in allowed], y[allowed], groups_arr[allowed], results, speeds)


def write_model(views, y, groups, results: dict, speeds: dict, name: str = "jquality", version: str = "v1") -> None:
    ngrams = fit_ngrams(views, y, groups).model
    trained = {g: int((groups == g).sum()) for g in dict.fromkeys(groups)}
    folder = save_model(MODELS / f"{name}-{version}", name, version, ngrams, trained_on=trained,
                        alpha=NGRAM_ALPHA, metrics={"leave_one_dataset_out": results["char-ngrams"],
                                                    "baseline_classifier": results["classifier"],
                                                    "records_per_second": speeds.get("char-ngrams")})
    print(f"wrote {folder}")


if __name__ == "__main__":
    random.seed(0)
    main()
