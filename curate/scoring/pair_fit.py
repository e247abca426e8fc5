"""Does this answer belong to this prompt? A pair model learned without labels.

Trained as a discriminator: real (prompt, answer) pairs of instruction data against the same prompts
with another record's answer (of the same dataset). No label is needed, so it learns from every record
of the pools it is given, and what it learns is exactly the question "is this the answer to that
question", which two separate bags of n-grams cannot see.

The pair is described by hashed sparse features (``DIM`` buckets), each a feature of *both* sides:

- every content bigram the two share (kanji, katakana, Latin, digits: ``fit_features.content_bigrams``),
  weighted 1/sqrt(#prompt bigrams): the model learns which shared terms matter (a rare noun shared
  means more than 「する」);
- the prompt's *ask* crossed with the answer's *form*: the last content-bearing characters of the
  prompt (「書いて」, 「何ですか」, 「3つ」, 「要約」) against the answer's form markers (a list, code, a
  number, its length band, its first two characters), so that "write a list" wants a list and "what
  is" wants a statement;
- a few scalars: coverage of the prompt by the answer, share of the answer anchored in the prompt.

A logistic regression (L-BFGS, L2) on those rows; ``score`` is the logit. Numpy and scipy only.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from curate.scoring.fit_features import BIGRAM_MASK, OWNER_SHIFT, bigram_sets, set_sizes, shared_keys
from curate.scoring.quality_features import RecordView

DIM = 1 << 18
_LIST = re.compile(r"^\s*(?:[-*・•]|\d+[.)．、])", re.M)
_CODE = re.compile(r"```|^\s{4}\S|def |import |print\(|SELECT |=\s*\w+\(", re.M)
_NUMBER = re.compile(r"\d")
_ASK_END = re.compile(r"[。？?！!\s」』）)]+$")


def _h(key: str) -> int:
    return zlib.crc32(key.encode("utf-8")) % DIM


def answer_form(answer: str) -> list[str]:
    """Form markers of an answer: list, code, number, length band, its first two characters."""
    a = answer.strip()
    n = len("".join(a.split()))
    band = "0" if n < 10 else "1" if n < 40 else "2" if n < 150 else "3" if n < 500 else "4"
    marks = [f"len{band}", f"start:{a[:2]}"]
    if _LIST.search(a):
        marks.append("list")
    if _CODE.search(a):
        marks.append("code")
    if _NUMBER.search(a[:20]):
        marks.append("num")
    return marks


def prompt_ask(prompt: str) -> list[str]:
    """What the prompt asks, read from its end (Japanese puts the request last): its last 2, 3 and 4
    characters after closing punctuation, and whether it names a count (「3つ」) or code."""
    core = _ASK_END.sub("", prompt.strip())
    asks = [f"end{k}:{core[-k:]}" for k in (2, 3, 4) if len(core) >= k]
    if re.search(r"\d+\s*[つ個点文行]|[一二三四五六七八九十]+[つ個点]", prompt):
        asks.append("count")
    if re.search(r"コード|プログラム|関数|Python|python|SQL|実装", prompt):
        asks.append("code")
    return asks or ["end:none"]


@lru_cache(maxsize=1 << 16)
def _cross_column(ask: str, form: str) -> int:
    return _h(f"x:{ask}|{form}")


def pair_prompt_sets(views: list[RecordView]) -> np.ndarray:
    """The ``bigram_sets`` of a pair row's prompt side: each prompt with its context, as one text."""
    return bigram_sets([v.prompt + ("\n" + v.context if v.context else "") for v in views])


def pair_matrix(views: list[RecordView], sets: tuple[np.ndarray, np.ndarray] | None = None):
    """One row per (prompt, answer) pair; ``sets``: the ``pair_prompt_sets`` and the answers' ``bigram_sets``
    when the caller has them already.
    The shared bigrams and the two scalars are built for the whole batch at once; the ask x form crosses
    per record (a few strings each)."""
    from scipy import sparse

    n = len(views)
    prompts, answers = sets if sets is not None else (pair_prompt_sets(views), bigram_sets([v.answer for v in views]))
    p_size, a_size = set_sizes(prompts, n), set_sizes(answers, n)
    shared = shared_keys(prompts, answers)
    rows = [(shared >> OWNER_SHIFT).astype(np.int64)]
    # a shared bigram's bucket: a multiplicative hash of its two code points
    cols = [(((shared & BIGRAM_MASK) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - 18)).astype(np.int64)]
    vals = [1.0 / np.sqrt(p_size[rows[0]])]  # a shared bigram's prompt has one at least
    both = np.flatnonzero((p_size > 0) & (a_size > 0))  # the coverage and anchored scalars
    n_shared = np.bincount(rows[0], minlength=n)[both]
    rows += [both, both]
    cols += [np.full(both.size, _h("coverage")), np.full(both.size, _h("anchored"))]
    vals += [n_shared / p_size[both], n_shared / a_size[both]]
    cross_rows, cross_cols = [], []
    for i, v in enumerate(views):
        forms = answer_form(v.answer)
        for ask in prompt_ask(v.prompt):
            for form in forms:
                cross_rows.append(i)
                cross_cols.append(_cross_column(ask, form))
    rows.append(np.array(cross_rows, dtype=np.int64))
    cols.append(np.array(cross_cols, dtype=np.int64))
    vals.append(np.ones(len(cross_rows)))
    m = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, DIM))
    m.sum_duplicates()
    return m


def swapped_answers(views: list[RecordView], groups: list[str], seed: int) -> list[RecordView]:
    """Each record's prompt with the answer of another record of its group (a derangement per group)."""
    rng = np.random.default_rng(seed)
    out = list(views)
    by_group: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    for idx in by_group.values():
        if len(idx) < 2:
            continue
        order = [idx[j] for j in rng.permutation(len(idx))]
        for j, i in enumerate(order):
            other = views[order[(j + 1) % len(order)]]
            out[i] = RecordView(views[i].prompt, views[i].context, other.answer, views[i].multi_turn)
    return out


@dataclass
class PairFit:
    weights: np.ndarray  # float32, DIM
    bias: float

    @classmethod
    def train(cls, views: list[RecordView], groups: list[str], l2: float = 1.0, seed: int = 0) -> PairFit:
        """Real pairs (1) against swapped pairs (0), logistic loss with an L2 penalty, L-BFGS."""
        from scipy import sparse
        from scipy.optimize import minimize

        X = sparse.vstack([pair_matrix(views), pair_matrix(swapped_answers(views, groups, seed))]).tocsr()
        y = np.concatenate([np.ones(len(views)), np.zeros(len(views))])
        used = np.unique(X.indices)  # optimise only the buckets that occur
        Xu = X[:, used]

        def loss(theta):
            w, b = theta[:-1], theta[-1]
            z = Xu @ w + b
            p = 1.0 / (1.0 + np.exp(-z))
            ll = np.logaddexp(0, z) - y * z
            grad = Xu.T @ (p - y) / len(y) + l2 * w / len(y)
            return ll.mean() + 0.5 * l2 * (w @ w) / len(y), np.append(grad, (p - y).mean())

        res = minimize(loss, np.zeros(len(used) + 1), jac=True, method="L-BFGS-B", options={"maxiter": 300})
        weights = np.zeros(DIM, dtype=np.float32)
        weights[used] = res.x[:-1]
        return cls(weights, float(res.x[-1]))

    def score(self, views: list[RecordView], sets: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """The logit that each answer belongs to its prompt (``sets``: see ``pair_matrix``)."""
        return pair_matrix(views, sets) @ self.weights.astype(np.float64) + self.bias

    def save(self, path: Path) -> None:
        np.save(path, np.append(self.weights, np.float32(self.bias)))

    @classmethod
    def load(cls, path: Path) -> PairFit:
        arr = np.load(path)
        return cls(arr[:-1].astype(np.float32), float(arr[-1]))
