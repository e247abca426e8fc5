"""Does a small LM see what readers mark down? The answer's likelihood under Gemma 3 270M against the labels.

    uv run --group experiment python benchmarks/quality/lm_signal.py [--per-source 40] [--threads 1]

Issue 30 names the answer's likelihood given its prompt under a small LM (conditional NLL, and IFD as in
Superfiltering, Li et al. 2024) as a direction for a content-aware score. Nothing here trains: for a sample of
the labelled records of every dataset (``data/labels/``, read by people) this computes, under the packaged
Gemma 3 270M (``models/gemma-3-270m``, built by ``benchmarks/topk_vs_random/prepare_gemma.py``):

- ``cond``: the answer's mean NLL per token given its prompt (chat template, as the selection benchmark's
  reference NLL);
- ``alone``: the answer's mean NLL per token after an empty user turn;
- ``IFD = cond / alone`` (how little the prompt helps) and ``PMI = alone − cond`` (how much it helps);

and prints per dataset the Spearman of the labels with −cond, −alone, −IFD and PMI, beside the shipped
scorer's (jquality-v4) on the same records, and the fit test (each record beside its swapped twin, the same
prompt with another sampled record's answer of its dataset): the share where the original's PMI is higher,
beside v4's share. jquality-v4 was trained on most of these labels, so its Spearman here is in-sample (its
leave-one-dataset-out values are in its model card); the LM's signals use no label at all.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.quality.scorer_v2 import labelled_views  # noqa: E402
from benchmarks.real_data.build_inputs import DEFAULT_REALDATA  # noqa: E402
from curate.scoring.pair_fit import swapped_answers  # noqa: E402
from curate.scoring.shipped_scorer import ShippedScorer  # noqa: E402

GEMMA = ROOT / "models" / "gemma-3-270m"


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic) if len(set(a)) > 1 and len(set(b)) > 1 else float("nan")


def nlls(lm, tokenizer, prompts: list[str], answers: list[str], max_tokens: int) -> np.ndarray:
    from eval.likelihood import reference_nll

    pairs = [(str(i), p, a) for i, (p, a) in enumerate(zip(prompts, answers))]
    return np.array([r.nll for r in reference_nll(lm, tokenizer, pairs, batch_size=4, max_tokens=max_tokens)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-source", type=int, default=40, help="labelled records drawn per dataset")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-tokens", type=int, default=512, help="prompt + answer tokens (the prompt's start goes)")
    ap.add_argument("--model", type=Path, default=GEMMA)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "lm_signal.json")
    args = ap.parse_args()
    if not args.model.is_dir():
        raise SystemExit(f"{args.model}: not found; run benchmarks/topk_vs_random/prepare_gemma.py first")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    sources, views, y = labelled_views(DEFAULT_REALDATA)
    rng = np.random.default_rng(args.seed)
    picked = []
    for source in sorted(set(sources)):
        idx = [i for i, s in enumerate(sources) if s == source]
        picked += sorted(rng.choice(idx, size=min(args.per_source, len(idx)), replace=False).tolist())
    src = [sources[i] for i in picked]
    vs = [views[i] for i in picked]
    labels = y[picked]
    twins = swapped_answers(vs, src, seed=7)
    prompts = ["\n\n".join(p for p in (v.prompt, v.context) if p) for v in vs]

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    lm = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32).eval()
    start = time.perf_counter()
    cond = nlls(lm, tokenizer, prompts, [v.answer for v in vs], args.max_tokens)
    alone = nlls(lm, tokenizer, [""] * len(vs), [v.answer for v in vs], args.max_tokens)
    twin_cond = nlls(lm, tokenizer, prompts, [t.answer for t in twins], args.max_tokens)
    seconds = time.perf_counter() - start
    by_answer = {v.answer: a for v, a in zip(vs, alone)}  # a twin's answer is another sampled record's
    twin_alone = np.array([by_answer[t.answer] for t in twins])
    scorer = ShippedScorer()
    v4, v4_twin = scorer.score_views(vs), scorer.score_views(twins)

    pmi, twin_pmi = alone - cond, twin_alone - twin_cond
    rows = []
    print(f"Gemma 3 270M, {len(vs)} labelled records, 3 passes each: {seconds:.0f} s "
          f"({len(vs) / seconds:.2f} records/s on {args.threads} thread(s))\n")
    print("| dataset | n | −cond | −alone | −IFD | PMI | v4 (in-sample) | fit: PMI | fit: −cond | fit: v4 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for source in sorted(set(src)):
        m = np.array([s == source for s in src])
        row = dict(dataset=source, n=int(m.sum()), cond=spearman(labels[m], -cond[m]),
                   alone=spearman(labels[m], -alone[m]), ifd=spearman(labels[m], -(cond[m] / alone[m])),
                   pmi=spearman(labels[m], pmi[m]), v4=spearman(labels[m], v4[m]),
                   fit_pmi=float(np.mean(pmi[m] > twin_pmi[m])), fit_cond=float(np.mean(cond[m] < twin_cond[m])),
                   fit_v4=float(np.mean(v4[m] > v4_twin[m])))
        rows.append(row)
        print(f"| {source} | {row['n']} | {row['cond']:+.2f} | {row['alone']:+.2f} | {row['ifd']:+.2f} | "
              f"{row['pmi']:+.2f} | {row['v4']:+.2f} | {row['fit_pmi']:.2f} | {row['fit_cond']:.2f} | "
              f"{row['fit_v4']:.2f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "seconds": seconds, "records": len(vs), "per_record": [
        dict(source=s, label=float(lab), cond=float(c), alone=float(a), twin_cond=float(tc), v4=float(v))
        for s, lab, c, a, tc, v in zip(src, labels, cond, alone, twin_cond, v4)]}, indent=1), encoding="utf-8")
    print(f"\nper record: {args.out}")


if __name__ == "__main__":
    main()
