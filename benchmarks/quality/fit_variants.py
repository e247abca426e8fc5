"""Ways to lift the fit test, against the score's Spearman with the labels: a diagnosis, nothing is shipped from it.

    uv run python benchmarks/quality/fit_variants.py [--realdata runs/realdata]

The shipped scorer's pair model and association (jquality-v5), the ridge refitted leaving each labelled dataset
out (``scorer_v2.fit_model``); per variant of how the score joins the predicted label, the fit and the length
terms, per left-out dataset: the fit test (each record beside its twin, its prompt with another record's answer of
the same dataset: the share where the original scores higher) / the Spearman of the score with the labels. Last,
the fit logit alone in the fit test: the ceiling of any weighting of it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.quality import scorer_v2  # noqa: E402
from curate.scoring.classifier import spearman  # noqa: E402
from curate.scoring.pair_fit import swapped_answers  # noqa: E402
from curate.scoring.quality_features import FEATURES  # noqa: E402
from curate.scoring.shipped_scorer import (  # noqa: E402
    FIT_CAP,
    FIT_FLOOR,
    V2_FEATURES,
    ShippedScorer,
    fit_gate,
    v2_matrix,
    v2_raw,
)

FIT = V2_FEATURES.index("pair_fit_logit")
LENGTH = FEATURES.index("log_answer_chars")


def turn_chars(view) -> float:
    """log1p of the median length of a conversation's last four turns (lines): its register."""
    lines = [ln for ln in view.prompt.split("\n") if ln.strip()]
    return float(np.log1p(np.median([len(ln) for ln in lines[-4:]]))) if lines else 0.0


def variant_score(name: str, sc: ShippedScorer, quality: np.ndarray, X: np.ndarray, views) -> np.ndarray:
    """The score before its squash under one variant; ``v5`` is what the shipped scorer computes."""
    base = v2_raw(quality, X, sc.fit_weight, sc.length_weight, sc.length_center, sc.length_gate,
                  sc.length_bonus_weight)
    fit, length = X[:, FIT], X[:, LENGTH] - sc.length_center
    conv = np.array([v.multi_turn for v in views])
    gate = fit_gate(fit, sc.length_gate)
    penalty = sc.length_weight * np.minimum(length, 0.0)
    if name == "v5":
        return base
    if name.startswith("sink"):  # a clear misfit sinks further: P per unit of pair logit below t
        t, p = {"sink-1": (-1.0, 1.0), "sink-1x2": (-1.0, 2.0), "sink0": (0.0, 1.0), "sink0x2": (0.0, 2.0)}[name]
        return base - p * np.maximum(t - fit, 0.0)
    if name.startswith("gated-relief"):  # a misfit pays the penalty of a one-character answer
        floor = sc.length_weight * (np.log1p(1.0) - sc.length_center)
        alt = base - penalty + gate * penalty + (1.0 - gate) * floor
        return alt if name == "gated-relief" else np.where(conv, alt, base)
    if name.startswith("register"):  # a chat reply's length against its conversation's turns
        dev = np.abs(X[:, LENGTH] - np.array([turn_chars(v) for v in views]))
        alt = base - dev if name == "register" else base - penalty - dev
        return np.where(conv, alt, base)
    if name == "fit-x2-chat":
        alt = base + sc.fit_weight * np.clip(fit, -FIT_FLOOR, FIT_CAP)
        return np.where(conv, alt, base)
    if name.startswith("expected-label"):  # P(fits) x score + P(misfit) x 1, P(fits) = sigmoid(logit - c)
        c = -2.0 if name == "expected-label" else 0.0
        return 1.0 + (1.0 / (1.0 + np.exp(-(fit - c)))) * (base - 1.0)
    raise ValueError(name)


VARIANTS = ("v5", "sink-1", "sink-1x2", "sink0", "sink0x2", "gated-relief", "gated-relief-chat", "register",
            "register-no-penalty", "fit-x2-chat", "expected-label",
            "expected-label-c0")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--realdata", type=Path, default=scorer_v2.DEFAULT_REALDATA)
    args = ap.parse_args()
    sc = ShippedScorer("jquality-v5")
    sources, views, y = scorer_v2.labelled_views(args.realdata)
    X = v2_matrix(views, sc.pair)
    X_twins = v2_matrix(swapped_answers(views, sources, seed=1), sc.pair)
    held_out = {held: (model, test, [v for v, t in zip(views, test) if t], twins, XT)
                for held, test, model, twins, XT in scorer_v2.held_out_sets(sources, views, y, X, X_twins, sc.pair,
                                                                            10.0)}
    datasets = list(held_out)
    print("| variant | " + " | ".join(datasets) + " |")
    print("| --- |" + " --- |" * len(datasets))
    for name in VARIANTS:
        cells = []
        for held in datasets:
            model, test, own, twins, XT = held_out[held]
            a = variant_score(name, sc, model.predict(X[test]), X[test], own)
            b = variant_score(name, sc, model.predict(XT), XT, twins)
            cells.append(f"{np.mean(a > b):.2f} / {spearman(a, y[test]):.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    print("\nthe fit logit alone, original above its twin: " + ", ".join(
        f"{held} {np.mean(X[held_out[held][1]][:, FIT] > held_out[held][4][:, FIT]):.2f}" for held in datasets))


if __name__ == "__main__":
    main()
