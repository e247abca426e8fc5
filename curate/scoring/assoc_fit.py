"""Does this reply continue this conversation? A learned association of prompt and answer n-grams.

The pair model (``pair_fit``) sees only what prompt and answer *share* (content bigrams) and what the prompt
asks against the answer's form. A chat reply shares few content bigrams with its conversation: people tell
it from another dialogue's reply by topic continuity (「ラーメン」 in the last turn, 「美味しそう」 in the
reply; a goodbye answers a goodbye), which overlap cannot see. This model learns such associations: each
side is a bag of hashed character 1-, 2- and 3-grams (the prompt's last turn, the turn before it and, with
``earlier``, the turns before those; the answer's start), mapped to a unit vector by a learned embedding
table; the association is the cosine of the two vectors. Trained as a retrieval model (a real pair against
the other answers of its batch, of the same dataset), so, like the pair model, it needs no labels.

Scoring is numpy and scipy only: per side, sparse matrices built for a whole batch at once from the code
points (``side_sums``) times a dense table (``BUCKETS`` x ``DIM``, int8 with a scale per row on disk).
Training (``AssocFit.train``) needs torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curate.scoring.pair_fit import PairFit
from curate.scoring.quality_features import RecordView

BITS = 16
BUCKETS = 1 << BITS
DIM = 48
SIDE_CHARS = 160  # characters read of each turn and of the answer: a reply's topic is set early
_GOLD = np.uint64(0x9E3779B97F4A7C15)
# namespaces: the prompt's last turn, the turn before it (or the instruction's context), the answer
LAST, BEFORE, ANSWER, EARLIER = 1, 2, 3, 4
EARLIER_CHARS = 400  # of a conversation's turns before the last two: what the talk is about


def turns_of(view: RecordView) -> tuple[str, str, str]:
    """(the prompt's last turn, the turn before it, the turns before those): for a conversation its lines,
    for an instruction its prompt's end, its context's start and nothing."""
    if view.multi_turn:
        lines = view.prompt.split("\n")
        return (lines[-1][-SIDE_CHARS:], (lines[-2][-SIDE_CHARS:] if len(lines) > 1 else ""),
                "\n".join(lines[:-2])[-EARLIER_CHARS:])
    return view.prompt[-SIDE_CHARS:], view.context[:SIDE_CHARS], ""


def _codes(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Code points of every text (white space removed, lower-cased) and each code point's text."""
    texts = ["".join(t.lower().split()) for t in texts]
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    codes = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
    return codes, np.repeat(np.arange(len(texts)), lengths)


def gram_orders(texts: list[str], namespace: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(owner, bucket) of every character n-gram of each text, for n = 1, 2, 3 apart, hashed into ``BUCKETS``;
    within each n the owners come in text order."""
    codes, owner = _codes(texts)
    out = []
    for n in (1, 2, 3):
        if len(codes) < n:
            out.append((np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)))
            continue
        if n == 1:
            key, own = codes, owner
        else:
            same = owner[n - 1:] == owner[:len(owner) - n + 1]
            key = codes[:len(codes) - n + 1].copy()
            for k in range(1, n):
                key = (key << np.uint64(21)) | codes[k:len(codes) - n + 1 + k]
            own, key = owner[:len(owner) - n + 1][same], key[same] + np.uint64(n) * np.uint64(0x1000003)
        key = key + np.uint64(namespace) * np.uint64(0x51ED27)
        out.append((own, ((key * _GOLD) >> np.uint64(64 - BITS)).astype(np.int64)))
    return out


def gram_buckets(texts: list[str], namespace: int) -> tuple[np.ndarray, np.ndarray]:
    """(owner, bucket) of every character 1-, 2- and 3-gram of each text, hashed into ``BUCKETS``."""
    orders = gram_orders(texts, namespace)
    return np.concatenate([o for o, _ in orders]), np.concatenate([b for _, b in orders])


def _side_texts(views: list[RecordView], prompt_side: bool, earlier: bool) -> list[tuple[list[str], int]]:
    """One side's texts of each record, with the namespace each is hashed in."""
    if not prompt_side:
        return [([v.answer[:SIDE_CHARS] for v in views], ANSWER)]
    last, before, early = zip(*(turns_of(v) for v in views)) if views else ((), (), ())
    return [(list(last), LAST), (list(before), BEFORE)] + ([(list(early), EARLIER)] if earlier else [])


def side_matrix(views: list[RecordView], prompt_side: bool, earlier: bool = False):
    """A (records, ``BUCKETS``) sparse matrix of one side's grams, each row summing to 1; ``earlier``: the
    prompt side reads a conversation's earlier turns too."""
    from scipy import sparse

    n = len(views)
    parts = [gram_buckets(texts, namespace) for texts, namespace in _side_texts(views, prompt_side, earlier)]
    rows = np.concatenate([p[0] for p in parts])
    cols = np.concatenate([p[1] for p in parts])
    counts = np.bincount(rows, minlength=n).astype(np.float64)
    vals = 1.0 / np.maximum(counts[rows], 1.0)
    m = sparse.csr_matrix((vals, (rows, cols)), shape=(n, BUCKETS))
    m.sum_duplicates()
    return m


def side_sums(views: list[RecordView], table: np.ndarray, prompt_side: bool, earlier: bool = False) -> np.ndarray:
    """Each record's sum of ``table`` rows over one side's grams: the direction ``side_matrix @ table`` has (a
    row's weights are equal, and only the direction counts), 5x faster: one CSR matrix per gram length and
    namespace, built in text order, float32 throughout. A row's sum goes group by group in a fixed order, so a
    record gets the same float32 sum in any batch."""
    from scipy import sparse

    n = len(views)
    total = np.zeros((n, table.shape[1]), dtype=np.float32)
    for part, namespace in _side_texts(views, prompt_side, earlier):
        for owners, buckets in gram_orders(part, namespace):
            indptr = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(np.bincount(owners, minlength=n), out=indptr[1:])
            total += sparse.csr_matrix((np.ones(len(buckets), dtype=np.float32), buckets, indptr),
                                       shape=(n, BUCKETS)) @ table
    return total


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)


@dataclass
class AssocFit:
    prompt_table: np.ndarray  # float32, BUCKETS x DIM
    answer_table: np.ndarray
    earlier: bool = False  # the prompt side reads a conversation's earlier turns

    def score(self, views: list[RecordView]) -> np.ndarray:
        """The cosine of each record's prompt vector and answer vector (−1 … 1)."""
        if not views:
            return np.zeros(0)
        u = _unit(side_sums(views, self.prompt_table, True, self.earlier))
        v = _unit(side_sums(views, self.answer_table, False))
        return np.einsum("ij,ij->i", u, v)

    def save(self, path: Path) -> None:
        """Both tables as int8 with a float32 scale per row (a quarter of float32's size; a cosine moves by
        about 0.002): ``quantized``, ``scales``, ``earlier``."""
        tables = np.stack([self.prompt_table, self.answer_table]).astype(np.float32)
        scales = np.maximum(np.abs(tables).max(axis=2, keepdims=True), 1e-12) / 127.0
        with open(path, "wb") as f:  # np.savez would add ".npz" to a name without it
            np.savez(f, quantized=np.round(tables / scales).astype(np.int8), scales=scales.astype(np.float32),
                     earlier=np.array(self.earlier))

    @classmethod
    def load(cls, path: Path) -> AssocFit:
        with np.load(path) as f:
            if "quantized" in f:
                both = f["quantized"].astype(np.float32) * f["scales"]
            else:  # float16 tables (the first experiments' files)
                both = f["tables"].astype(np.float32)
            return cls(both[0], both[1], bool(f["earlier"]))

    @classmethod
    def train(cls, views: list[RecordView], groups: list[str], epochs: int = 3, batch: int = 256,
              seed: int = 0, dim: int = DIM, lr: float = 3e-3, earlier: bool = False, log=print) -> AssocFit:
        """In-batch retrieval training (torch, CPU): each batch holds pairs of one group (dataset); a prompt
        must pick its own answer among the batch's answers and an answer its own prompt."""
        import torch

        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        P, A = side_matrix(views, True, earlier).tocsr(), side_matrix(views, False).tocsr()
        prompt_bag = torch.nn.EmbeddingBag(BUCKETS, dim, mode="sum")
        answer_bag = torch.nn.EmbeddingBag(BUCKETS, dim, mode="sum")
        for bag in (prompt_bag, answer_bag):
            torch.nn.init.normal_(bag.weight, std=0.1)
        scale = torch.nn.Parameter(torch.tensor(10.0))
        opt = torch.optim.Adam([*prompt_bag.parameters(), *answer_bag.parameters(), scale], lr=lr)
        by_group: dict[str, np.ndarray] = {}
        for g in sorted(set(groups)):
            by_group[g] = np.flatnonzero(np.array(groups) == g)

        def bag_input(m, idx):
            sub = m[idx]
            return (torch.from_numpy(sub.indices.astype(np.int64)), torch.from_numpy(sub.indptr[:-1].astype(np.int64)),
                    torch.from_numpy(sub.data.astype(np.float32)))

        for epoch in range(epochs):
            batches = []
            for idx in by_group.values():
                idx = rng.permutation(idx)
                batches += [idx[i:i + batch] for i in range(0, len(idx), batch) if len(idx[i:i + batch]) > 8]
            order = rng.permutation(len(batches))
            total = 0.0
            for b in order:
                idx = batches[b]
                pi, po, pw = bag_input(P, idx)
                ai, ao, aw = bag_input(A, idx)
                u = torch.nn.functional.normalize(prompt_bag(pi, po, per_sample_weights=pw), dim=1)
                v = torch.nn.functional.normalize(answer_bag(ai, ao, per_sample_weights=aw), dim=1)
                logits = scale * u @ v.T
                target = torch.arange(len(idx))
                loss = (torch.nn.functional.cross_entropy(logits, target)
                        + torch.nn.functional.cross_entropy(logits.T, target)) / 2
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach())
            log(f"assoc epoch {epoch + 1}/{epochs}: mean loss {total / max(len(order), 1):.3f} over {len(order)} batches")
        return cls(prompt_bag.weight.detach().numpy().copy(), answer_bag.weight.detach().numpy().copy(), earlier)


ASSOC_TABLES = "assoc_tables.npz"


@dataclass
class PairWithAssoc:
    """The pair model's logit and the association, as one calibrated logit that an answer belongs to its prompt:
    ``pair_weight`` x pair logit + ``assoc_weight`` x cosine + ``bias``, one set of three for instructions and
    one for conversations (index 0 and 1: in a conversation the pair model's shared bigrams say little and the
    association much), each a logistic fit on held-out pairs. Stands where a ``PairFit`` stands (``score``,
    ``save``)."""

    pair: PairFit
    assoc: AssocFit
    pair_weight: tuple[float, float]
    assoc_weight: tuple[float, float]
    bias: tuple[float, float]

    def score(self, views: list[RecordView], sets: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        chat = np.fromiter((v.multi_turn for v in views), dtype=bool, count=len(views)).astype(np.int64)
        w_pair, w_assoc, bias = (np.asarray(w, dtype=np.float64)[chat]
                                 for w in (self.pair_weight, self.assoc_weight, self.bias))
        logit = self.pair.score(views, sets)
        # a kind without the association (jquality-v5's instructions, weights 1, 0, 0): its rows are the pair
        # model's logit, bit for bit, and the association is not computed for them
        used = np.flatnonzero(w_assoc != 0.0)
        cosine = np.zeros(len(views))
        if used.size:
            cosine[used] = self.assoc.score([views[i] for i in used])
        return w_pair * logit + w_assoc * cosine + bias

    def save(self, path: Path) -> None:
        """The pair weights at ``path``, the association's tables beside them (the weights go to model.json)."""
        self.pair.save(path)
        self.assoc.save(Path(path).parent / ASSOC_TABLES)

    def to_dict(self) -> dict:
        return {"file": ASSOC_TABLES, "pair_weight": list(self.pair_weight), "assoc_weight": list(self.assoc_weight),
                "bias": list(self.bias), "index": ["instruction", "conversation"]}

    @classmethod
    def from_dict(cls, pair: PairFit, assoc: AssocFit, d: dict) -> PairWithAssoc:
        return cls(pair, assoc, *(tuple(float(x) for x in d[k]) for k in ("pair_weight", "assoc_weight", "bias")))

    @classmethod
    def fit_weights(cls, pair: PairFit, assoc: AssocFit, views: list[RecordView], twins: list[RecordView],
                    conversations_only: bool = False) -> PairWithAssoc:
        """The weights by logistic regression, apart for instructions and conversations: ``views`` (real
        pairs, 1) against ``twins`` (0). A kind with no pairs keeps the pair logit alone (1, 0, 0), and so do
        instructions with ``conversations_only``."""
        from scipy.optimize import minimize

        chat = np.array([v.multi_turn for v in views] * 2)
        X = np.column_stack([np.concatenate([pair.score(views), pair.score(twins)]),
                             np.concatenate([assoc.score(views), assoc.score(twins)]), np.ones(2 * len(views))])
        y = np.concatenate([np.ones(len(views)), np.zeros(len(twins))])

        def loss(w, X, y):
            z = X @ w
            p = 1.0 / (1.0 + np.exp(-z))
            return np.mean(np.logaddexp(0, z) - y * z), X.T @ (p - y) / len(y)

        fitted = []
        for kind in (False, True):
            m = chat == kind
            w = (minimize(loss, np.array([1.0, 0.0, 0.0]), args=(X[m], y[m]), jac=True, method="L-BFGS-B").x
                 if m.any() and (kind or not conversations_only) else np.array([1.0, 0.0, 0.0]))
            fitted.append(w)
        return cls(pair, assoc, *(tuple(float(w[j]) for w in fitted) for j in range(3)))
