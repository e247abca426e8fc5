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

import math
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curate.scoring.fit_features import content_bigrams
from curate.scoring.quality_features import RecordView

DIM = 1 << 18
_SPACE = re.compile(r"\s+")
_LIST = re.compile(r"^\s*(?:[-*・•]|\d+[.)．、])", re.M)
_CODE = re.compile(r"```|^\s{4}\S|def |import |print\(|SELECT |=\s*\w+\(", re.M)
_NUMBER = re.compile(r"\d")
_ASK_END = re.compile(r"[。？?！!\s」』）)]+$")


def _h(key: str) -> int:
    return zlib.crc32(key.encode("utf-8")) % DIM


def answer_form(answer: str) -> list[str]:
    """Form markers of an answer: list, code, number, length band, its first two characters."""
    a = answer.strip()
    n = len(_SPACE.sub("", a))
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


def pair_row(view: RecordView, bigrams: tuple | None = None) -> tuple[list[int], list[float]]:
    """(columns, values) of one (prompt, answer) pair; ``bigrams``: the ``content_bigrams`` of the prompt with
    its context and of the answer when the caller has them already."""
    if bigrams is None:
        bigrams = content_bigrams(view.prompt + ("\n" + view.context if view.context else "")), \
            content_bigrams(view.answer)
    pb, ab = bigrams
    cols, vals = [], []
    if pb.size and ab.size:
        shared = np.intersect1d(pb, ab, assume_unique=True)
        w = 1.0 / math.sqrt(pb.size)
        # a shared bigram's bucket: a multiplicative hash of its two code points
        cols += ((shared * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - 18)).astype(np.int64).tolist()
        vals += [w] * shared.size
        cols += [_h("coverage"), _h("anchored")]
        vals += [shared.size / pb.size, shared.size / ab.size]
    for ask in prompt_ask(view.prompt):
        for form in answer_form(view.answer):
            cols.append(_h(f"x:{ask}|{form}"))
            vals.append(1.0)
    return cols, vals


def pair_matrix(views: list[RecordView], bigrams: list[tuple] | None = None):
    from scipy import sparse

    indptr, indices, data = [0], [], []
    for i, v in enumerate(views):
        c, d = pair_row(v, bigrams[i] if bigrams else None)
        indices += c
        data += d
        indptr.append(len(indices))
    m = sparse.csr_matrix((np.array(data, dtype=np.float64), np.array(indices, dtype=np.int64), np.array(indptr)),
                          shape=(len(views), DIM))
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

    def score(self, views: list[RecordView], bigrams: list[tuple] | None = None) -> np.ndarray:
        """The logit that each answer belongs to its prompt (``bigrams``: see ``pair_row``)."""
        return pair_matrix(views, bigrams) @ self.weights.astype(np.float64) + self.bias

    def save(self, path: Path) -> None:
        np.save(path, np.append(self.weights, np.float32(self.bias)))

    @classmethod
    def load(cls, path: Path) -> PairFit:
        arr = np.load(path)
        return cls(arr[:-1].astype(np.float32), float(arr[-1]))
