"""The one-permutation MinHash step: its batched arithmetic against the definition written out one
n-gram at a time, its normalisation against datatrove's, its LSH property on real records, and its
bucket files read by datatrove's own bucket stage."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
from datatrove.data import Document
from datatrove.pipeline.dedup.minhash import MinhashDedupBuckets
from datatrove.utils.text import ngrams, simplify_text

from curate.config import NearDedupConfig
from curate.dedup.minhash import OnePermutationMinhashSignature, mix64, simplified_chars
from curate.dedup.near_duplicates import NORM, char_shingle_hashes, jaccard, minhash_config
from curate.text.char_ngrams import coefficients
from curate.text.tokenizers import make_tokenizer

ROOT = Path(__file__).resolve().parents[2]
EDGE = ["", "短い", " a b ", "五文字です", "ＡＢＣＤＥＦ　ｇ", "ダイヤモンド、ダイヤモンド！",
        "Ｈｅｌｌｏ\u3000Ｗｏｒｌｄ\n\tＡＩ", "🙂🙂🙂🙂🙂🙂"]


def real_texts(limit: int = 400) -> list[str]:
    rows = [json.loads(line) for line in (ROOT / "data/audit/records.jsonl").read_text(encoding="utf-8").splitlines()]
    return [r.get("output") or "" for r in rows[:limit]]


def reference_signature(text: str, n: int, seed: int, num_hashes: int) -> np.ndarray | None:
    """The signature by its definition: hash each n-gram, put it in the bin its high bits name, keep the
    smallest low bits per bin, fill an empty bin from the next non-empty one (+2**32 per step)."""
    chars = simplified_chars(text)
    if len(chars) < n:
        return None
    coeffs = [int(c) for c in coefficients(seed, n)]
    bins: dict[int, int] = {}
    for gram in ngrams(list(chars), n):
        h = sum(ord(c) * k for c, k in zip(gram, coeffs)) & ((1 << 64) - 1)
        h = int(mix64(np.array([h], dtype=np.uint64))[0])
        b, v = ((h >> 32) * num_hashes) >> 32, h & 0xFFFFFFFF
        bins[b] = min(bins.get(b, v), v)
    out = []
    for i in range(num_hashes):
        step = next(s for s in range(num_hashes) if (i + s) % num_hashes in bins)
        out.append(bins[(i + step) % num_hashes] + step * (1 << 32))
    return np.array(out, dtype=np.uint64)


def step(tmp_path, near=None, tokens="chars") -> OnePermutationMinhashSignature:
    near = near or NearDedupConfig(tokens=tokens)
    return OnePermutationMinhashSignature(str(tmp_path / "sigs"), config=minhash_config(near),
                                          language=make_tokenizer(tokens))


def test_normalisation_is_datatrove_s_with_spaces_dropped():
    import sys

    from curate.dedup.minhash import WHITESPACE

    assert WHITESPACE == "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace())
    for text in real_texts() + EDGE:
        expected = "".join(c for c in simplify_text(text, NORM) if not c.isspace())
        assert simplified_chars(text) == expected, text


def test_simplified_codes_equal_simplified_chars_of_each_text():
    """The lookup-table normalisation of many texts at once against the regex, text by text: real
    texts, the edge cases, a text holding the batch separator, and every code point of the BMP and
    beyond in runs of 97 (lower() of one character may be two, İ -> i̇)."""
    import sys

    from curate.dedup.minhash import _SEPARATOR, simplified_codes

    everything = "".join(chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c < 0xE000)
    runs = [everything[i:i + 97] for i in range(0, len(everything), 97)]
    for texts in (real_texts() + EDGE, runs, ["a" + _SEPARATOR + "b", "ΟΔΟΣ ΟΔΟΣ"], [], [""]):
        codes, lengths = simplified_codes(texts)
        assert lengths.tolist() == [len(simplified_chars(t)) for t in texts]
        assert "".join(map(chr, codes.tolist())) == "".join(simplified_chars(t) for t in texts)


def test_batched_signatures_equal_the_definition(tmp_path):
    s = step(tmp_path)
    texts = real_texts(150) + EDGE
    signatures, has = s.signatures(texts)
    for text, sig, present in zip(texts, signatures, has):
        expected = reference_signature(text, s.config.n_grams, s.config.seed, s.num_hashes)
        assert present == (expected is not None), text
        if present:
            assert np.array_equal(sig, expected), text


def test_bins_agree_as_often_as_the_texts_overlap(tmp_path):
    """The LSH property: the share of equal signature positions estimates the n-gram Jaccard."""
    s = step(tmp_path, NearDedupConfig(num_buckets=64, hashes_per_bucket=8))
    rng = random.Random(0)
    texts = [t for t in real_texts() if len(t) > 60]
    errors = []
    for text in texts[:120]:
        cut = rng.randint(len(text) // 4, len(text) - 10)
        variant = text[:cut] + "まったく別の文章をここに足しました。" + text[cut + rng.randint(0, 8):]
        (a, b), _ = s.signatures([text, variant])
        estimate = float((a == b).mean())
        errors.append(estimate - jaccard(char_shingle_hashes(text, 5), char_shingle_hashes(variant, 5)))
    assert abs(np.mean(errors)) < 0.03  # unbiased
    assert np.sqrt(np.mean(np.square(errors))) < 0.08  # K = 512: standard error about 0.02


def test_word_ngrams_take_the_same_binning(tmp_path):
    s = step(tmp_path, tokens="fugashi")
    (a, b, c), has = s.signatures(["東京は日本の首都です。人口が多い。", "東京は日本の首都です。人口が多い。", "短い"])
    assert has.tolist() == [True, True, False]
    assert np.array_equal(a, b) and a.shape == (s.num_hashes,)


def test_bucket_files_feed_datatrove_s_bucket_stage(tmp_path):
    """Two near copies and an unrelated record over two tasks: datatrove's MinhashDedupBuckets reads
    the sorted signature files and pairs the copies (doc indices per task as datatrove counts them)."""
    near = NearDedupConfig()
    s = step(tmp_path, near)
    base = real_texts()[5]
    docs = [[Document(text=base, id="a"), Document(text="全く関係のない短い文章です。今日は晴れ。", id="b")],
            [Document(text="", id="c"), Document(text=base + "以上です。", id="d")]]
    for rank, task in enumerate(docs):
        list(s.run(iter(task), rank=rank, world_size=2))
    for bi in range(near.num_buckets):
        data = (tmp_path / f"sigs/bucket_{bi:03d}/{0:05d}.minhash.sig").read_bytes()
        records = np.frombuffer(data, dtype=s._record_dtype())
        assert records.size == 2 and records[0].tolist() <= records[1].tolist()  # both of task 0, sorted
        assert records.tobytes() == np.sort(records.copy(), order=records.dtype.names).tobytes()
    buckets = MinhashDedupBuckets(str(tmp_path / "sigs"), str(tmp_path / "buckets"), config=minhash_config(near))
    for bucket in range(near.num_buckets):
        buckets.run(rank=bucket, world_size=near.num_buckets)
    pairs = set()
    for dups in (tmp_path / "buckets").glob("*.dups"):
        raw = np.frombuffer(dups.read_bytes(), dtype="<u4").reshape(-1, 4)
        pairs |= {tuple(map(int, row)) for row in raw}
    assert pairs == {(0, 0, 1, 1)}  # task 0 doc 0 ("a") with task 1 doc 1 ("d"): "c" had no n-grams


def test_bucket_files_are_in_datatrove_s_sort_order(tmp_path):
    s = step(tmp_path)
    texts = real_texts(400) + [real_texts(400)[7]] * 3  # equal signatures too: ties broken by index
    list(s.run(iter([Document(text=t, id=str(i)) for i, t in enumerate(texts)])))
    for bi in range(s.config.num_buckets):
        records = np.frombuffer((tmp_path / f"sigs/bucket_{bi:03d}/00000.minhash.sig").read_bytes(),
                                dtype=s._record_dtype())
        assert records.size == sum(len(simplified_chars(t)) >= 5 for t in texts)
        assert records.tobytes() == np.sort(records.copy(), order=records.dtype.names).tobytes()


def test_sorted_buckets_write_datatrove_s_dups_files_byte_for_byte(tmp_path):
    """Signatures of real records (with exact copies, so groups of three and more) over three tasks:
    the numpy bucket stage writes what datatrove's heap merge writes."""
    from curate.dedup.minhash import SortedMinhashBuckets

    near = NearDedupConfig()
    s = step(tmp_path, near)
    texts = real_texts(300)
    tasks = [texts[:120] + texts[:10], texts[120:250] + texts[5:15], texts[250:] + texts[:3]]
    for rank, task in enumerate(tasks):
        list(s.run(iter([Document(text=t, id=f"{rank}-{i}") for i, t in enumerate(task)]), rank=rank, world_size=3))
    config = minhash_config(near)
    theirs = MinhashDedupBuckets(str(tmp_path / "sigs"), str(tmp_path / "theirs"), config=config)
    ours = SortedMinhashBuckets(str(tmp_path / "sigs"), str(tmp_path / "ours"), config=config)
    for bucket in range(near.num_buckets):
        theirs.run(rank=bucket, world_size=near.num_buckets)
        list(ours.run(rank=bucket, world_size=near.num_buckets))
    written = 0
    for bucket in range(near.num_buckets):
        a = (tmp_path / f"theirs/{bucket:05d}_00.dups").read_bytes()
        assert a == (tmp_path / f"ours/{bucket:05d}_00.dups").read_bytes(), bucket
        written += len(a) // 16
    assert written >= 13 * near.num_buckets  # every exact copy pairs in every band
    # merged a few rows of first hash values at a time (the memory bound of a large run): the same bytes
    for range_rows in (7, 50):
        ranged = SortedMinhashBuckets(str(tmp_path / "sigs"), str(tmp_path / f"ranged-{range_rows}"), config=config)
        for bucket in range(near.num_buckets):
            ranged.merge_bucket(bucket, range_rows=range_rows)
            assert (tmp_path / f"theirs/{bucket:05d}_00.dups").read_bytes() == \
                (tmp_path / f"ranged-{range_rows}/{bucket:05d}_00.dups").read_bytes(), (range_rows, bucket)


def test_range_cuts_split_sorted_files_evenly_and_never_an_unsorted_one():
    from curate.dedup.minhash import range_cuts

    rng = np.random.default_rng(0)
    files = [np.sort(rng.integers(0, 2**32, n, dtype=np.uint64)) for n in (40_000, 25_000, 35_000)]
    cuts = range_cuts(files, 10_000)
    assert 8 <= len(cuts) <= 9 and (np.diff(cuts.astype(np.int64)) > 0).all()
    sizes = np.diff([0, *[sum(int(np.searchsorted(f, c)) for f in files) for c in cuts], 100_000])
    assert sizes.max() < 15_000, sizes  # about 10,000 rows each
    assert not len(range_cuts(files, 100_000)), "everything fits in one range"
    files[1][[10, 20]] = files[1][[20, 10]]
    assert not len(range_cuts(files, 10_000)), "a file not sorted by its first hash is merged whole"


def test_sorted_buckets_with_fewer_tasks_than_buckets_write_the_same_files(tmp_path):
    """Two tasks for 20 buckets (as `jcurate run --workers 2` runs the stage), each merging its ``bucket_shares``,
    with an even split and with task 0 lightened: every bucket's file is the one a task per bucket writes."""
    from curate.dedup.minhash import SortedMinhashBuckets

    near = NearDedupConfig()
    s = step(tmp_path, near)
    texts = real_texts(200)
    for rank, task in enumerate([texts[:110] + texts[:10], texts[110:] + texts[50:60]]):
        list(s.run(iter([Document(text=t, id=f"{rank}-{i}") for i, t in enumerate(task)]), rank=rank, world_size=2))
    config = minhash_config(near)
    per_bucket = SortedMinhashBuckets(str(tmp_path / "sigs"), str(tmp_path / "one"), config=config)
    for bucket in range(near.num_buckets):
        list(per_bucket.run(rank=bucket, world_size=near.num_buckets))
    shared = SortedMinhashBuckets(str(tmp_path / "sigs"), str(tmp_path / "two"), config=config)
    for rank in range(2):
        list(shared.run(rank=rank, world_size=2))
    files = sorted(p.name for p in (tmp_path / "one").glob("*.dups"))
    assert len(files) == near.num_buckets
    assert files == sorted(p.name for p in (tmp_path / "two").glob("*.dups"))
    assert sum((tmp_path / "one" / f).stat().st_size for f in files) > 0
    for f in files:
        assert (tmp_path / "one" / f).read_bytes() == (tmp_path / "two" / f).read_bytes(), f
    # task 0 lightened for the records' order (as jcurate run does): other tasks merge its buckets, the same files
    lighter = SortedMinhashBuckets(str(tmp_path / "sigs"), str(tmp_path / "three"), config=config, task_zero_extra=4)
    for rank in range(2):
        list(lighter.run(rank=rank, world_size=2))
    for f in files:
        assert (tmp_path / "one" / f).read_bytes() == (tmp_path / "three" / f).read_bytes(), f


def test_merged_order_is_the_sort_of_every_key_on_sorted_files_and_falls_back_on_unsorted_ones():
    """``merged_order`` (a stable sort of the signature as one byte string) against ``np.lexsort`` of
    (hashes..., file, doc): three files sorted as the signature step writes them, with equal signatures,
    signatures equal in their first hash only, values past 2**63 and 32-bit hashes; then a file that is
    not sorted by doc among equal signatures, which the fast path cannot take."""
    from curate.dedup.minhash import merged_order

    rng = np.random.default_rng(3)
    for dtype in (np.uint64, np.uint32):
        top = np.iinfo(dtype).max
        files = []
        for size in (40, 55, 30):
            sig = rng.choice(np.array([0, 1, 2, top // 2 + 1, top], dtype=dtype), size=(size, 5))
            sig[5:10] = sig[0]  # equal signatures in each file
            doc = rng.permutation(size).astype(np.uint32)
            order = np.lexsort([doc, *reversed(list(sig.T))])
            files.append((sig[order], doc[order]))
        for unsorted in (False, True):
            if unsorted:
                sig, doc = files[1]
                files[1] = (sig, doc[::-1].copy())  # equal signatures no longer in doc order
            hashes = [np.concatenate([s[:, i] for s, _ in files]) for i in range(5)]
            doc = np.concatenate([d for _, d in files])
            file_index = np.repeat(np.arange(3), [len(d) for _, d in files])
            expected = np.lexsort([doc, file_index, *reversed(hashes)])
            order, same = merged_order(hashes, file_index, doc)
            assert order.tolist() == expected.tolist(), (dtype, unsorted)
            assert same.tolist() == np.all([h[expected][1:] == h[expected][:-1] for h in hashes], axis=0).tolist()
            assert 0 < same.sum() < same.size
            by_signature = np.lexsort([*reversed(hashes)])  # stable: the fast path's order
            assert (by_signature.tolist() == expected.tolist()) is not unsorted  # the unsorted case needs the fallback


def test_bucket_shares_cover_every_bucket_once_and_lighten_task_zero():
    from curate.dedup.minhash import bucket_shares

    for buckets in (1, 7, 20):
        for world in range(1, buckets + 1):
            for extra in (0, 4):
                shares = bucket_shares(buckets, world, extra)
                assert len(shares) == world
                assert sorted(b for s in shares for b in s) == list(range(buckets)), (buckets, world, extra)
    assert [len(s) for s in bucket_shares(20, 2)] == [10, 10]
    assert [len(s) for s in bucket_shares(20, 2, 4)] == [8, 12]
    assert bucket_shares(20, 20, 4)[0] == []  # task 0 does only the order when there are tasks enough
