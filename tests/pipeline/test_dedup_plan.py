"""The dedup plan's parts on real Parquet shards and bucket files: exact grouping, near clustering,
merging, writing, and candidate pairs that do not depend on the task split."""

from __future__ import annotations

import struct

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.errors import JcurateError
from curate.config import NearDedupConfig
from curate.dedup.plan import Plan, PlanEntry, PlanTable, decide, read_band_groups

TEXT = "東京は日本の首都であり、政治と経済の中心地として多くの人々が暮らしています。"


def rec(rid: str, h: str, order: int, row: int, output: str = TEXT, instruction: str = "東京について",
        input_: str = "") -> dict:
    return {"record_id": rid, "content_hash": h, "source_order": order, "row": row, "file": "f.jsonl",
            "instruction": instruction, "input": input_, "output": output, "messages": None}


def shards(tmp_path, *tasks: list[dict]):
    """Writes each task's records as the filter stage does (``filtered/RANK.parquet``, in task order)."""
    folder = tmp_path / "filtered"
    folder.mkdir(exist_ok=True)
    for rank, records in enumerate(tasks):
        pq.write_table(pa.Table.from_pylist(records, schema=pa.schema([
            ("record_id", pa.string()), ("content_hash", pa.string()), ("source_order", pa.int32()),
            ("row", pa.int64()), ("file", pa.string()), ("instruction", pa.string()), ("input", pa.string()),
            ("output", pa.string()), ("messages", pa.string())])), folder / f"{rank:05d}.parquet")
    return folder


def buckets(tmp_path, *chains: list[tuple[int, int, int, int]]):
    """One bucket file per band: datatrove's chains of (task, index, task, index) pairs."""
    folder = tmp_path / "buckets"
    folder.mkdir(exist_ok=True)
    for band, chain in enumerate(chains):
        with open(folder / f"{band:03d}.dups", "wb") as f:
            for pair in chain:
                f.write(struct.pack("<4I", *pair))
    return folder


def plan_of(tmp_path, tasks, *chains, near=None, exact=True):
    """({record_id: PlanEntry}, the near clustering's counts) of the plan over these shards and chains."""
    folder = shards(tmp_path, *tasks)
    plan, clusters = decide(folder, buckets(tmp_path, *chains), exact, near or NearDedupConfig())
    return plan.entries(), clusters


def test_exact_duplicates_keep_the_first_source_then_the_lowest_row(tmp_path):
    records = [rec("b:5", "h1", 1, 5), rec("a:9", "h1", 0, 9), rec("a:2", "h1", 0, 2), rec("c:1", "h2", 2, 1)]
    plan = Plan.of(PlanTable.load(shards(tmp_path, records))).entries()
    assert plan == {"b:5": PlanEntry("exact_dedup", "a:2", "a:2"), "a:9": PlanEntry("exact_dedup", "a:2", "a:2")}


def test_near_clustering_verifies_pairs_and_joins_them_transitively(tmp_path):
    near_text = TEXT.replace("多くの", "たくさんの")
    nearer = near_text.replace("人々", "人たち")
    other = "富士山は静岡県と山梨県にまたがる日本一高い山で、標高は三七七六メートルです。"
    records = [rec("a:0", "h0", 0, 0), rec("a:1", "h1", 0, 1, near_text), rec("a:2", "h2", 0, 2, other),
               rec("a:3", "h3", 0, 3, nearer)]
    plan, clustering = plan_of(tmp_path, [records], [(0, 1, 0, 0), (0, 0, 0, 2)], [(0, 1, 0, 3)])
    assert plan == {"a:1": PlanEntry("near_dedup", "a:0", "a:0"), "a:3": PlanEntry("near_dedup", "a:0", "a:0")}
    assert (clustering.checked, clustering.rejected) == (3, 1), "the unrelated pair is checked and rejected"


def test_an_exact_duplicate_stands_for_its_survivor_and_joins_the_near_group(tmp_path):
    """b:0 (an exact copy of a:1) is the LSH candidate of a:0, in another task: a:1 stands for it, is
    a near duplicate of a:0, and b:0 joins a:0's group as an exact duplicate of a:1."""
    near_text = TEXT.replace("多くの", "たくさんの")
    tasks = [[rec("a:0", "h0", 0, 0), rec("a:1", "h1", 0, 1, near_text)], [rec("b:0", "h1", 1, 0, near_text)]]
    plan, _ = plan_of(tmp_path, tasks, [(0, 0, 1, 0)])
    assert plan == {"a:1": PlanEntry("near_dedup", "a:0", "a:0"), "b:0": PlanEntry("exact_dedup", "a:1", "a:0")}


def test_the_plan_file_round_trips(tmp_path):
    plan, _ = decide(shards(tmp_path, [rec("x:0", "h0", 0, 0), rec("x:1", "h0", 0, 1)]), None, True, None)
    plan.write(tmp_path / "plan.parquet")
    assert pq.read_table(tmp_path / "plan.parquet").to_pylist() == [
        {"record_id": "x:1", "stage": "exact_dedup", "duplicate_of": "x:0", "cluster_id": "x:0"}]


PASSAGE = ("マグネシウムは原子番号12の元素で、元素記号はMgである。アルカリ土類金属の一つで、地殻に多く含まれ、"
           "軽量な合金の材料として航空機や自動車に使われる。燃やすと強い白い光を出すため、かつては写真撮影にも用いられた。")


def test_a_shared_passage_with_another_question_and_answer_is_not_a_duplicate(tmp_path):
    a = rec("q:0", "h0", 0, 0, instruction="マグネシウムの元素記号は？", input_=PASSAGE, output="Mg")
    b = rec("q:1", "h1", 0, 1, instruction="マグネシウムの原子番号はいくつ？", input_=PASSAGE, output="12")
    assert plan_of(tmp_path, [[a, b]], [(0, 0, 0, 1)])[0] == {}


def test_same_prompt_with_a_near_identical_answer_is_a_duplicate_and_a_different_answer_is_configurable(tmp_path):
    a = rec("q:0", "h0", 0, 0, instruction="マグネシウムの元素記号は何ですか？", input_=PASSAGE, output="Mgです。")
    b = rec("q:1", "h1", 0, 1, instruction="マグネシウムの元素記号は何ですか?", input_=PASSAGE, output="Mg です")
    c = rec("q:2", "h2", 0, 2, instruction="マグネシウムの元素記号は何ですか？", input_=PASSAGE,
            output="アルカリ土類金属の一つで、記号は大文字のMと小文字のgを組み合わせたものです。")
    chains = [(0, 0, 0, 1)], [(0, 0, 0, 2)]
    assert plan_of(tmp_path, [[a, b, c]], *chains)[0] == {"q:1": PlanEntry("near_dedup", "q:0", "q:0")}
    drop = NearDedupConfig(same_prompt_different_answer="drop")
    assert set(plan_of(tmp_path, [[a, b, c]], *chains, near=drop)[0]) == {"q:1", "q:2"}


def test_candidate_groups_are_rebuilt_from_datatrove_s_chains_and_paired_in_survivor_order(tmp_path):
    """The same band-signature group, written by datatrove in two task splits' orders, gives the same
    clusters: the records are paired in survivor order, not in the order the tasks wrote them."""
    folder = buckets(tmp_path, [(0, 0, 0, 2), (0, 2, 0, 1), (1, 5, 1, 7)])  # a chain of three, then a pair
    (group, rank, doc), = read_band_groups(folder)  # one band
    members = {}
    for g, r, d in zip(group.tolist(), rank.tolist(), doc.tolist()):
        members.setdefault(g, []).append((r, d))
    assert sorted(members.values()) == [[(0, 0), (0, 2), (0, 1)], [(1, 5), (1, 7)]]
    other = "富士山は静岡県と山梨県にまたがる日本一高い山で、標高は三七七六メートルです。"
    near = TEXT.replace("多くの", "たくさんの")
    # x0 ~ x2, and x1 unlike both: the chain x0-x2-x1 would join x0 and x2, the chain x0-x1-x2 would not
    records = [rec("x:0", "h0", 0, 0), rec("x:1", "h1", 0, 1, other), rec("x:2", "h2", 0, 2, near)]
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one, _ = plan_of(tmp_path / "one", [records], [(0, 0, 0, 2), (0, 2, 0, 1)])
    two, _ = plan_of(tmp_path / "two", [records], [(0, 1, 0, 0), (0, 0, 0, 2)])
    assert one == two == {}, "paired in survivor order x0-x1, x1-x2: neither verifies"


def test_records_in_no_bucket_and_runs_without_near_dedup(tmp_path):
    records = [rec("a:0", "h0", 0, 0), rec("a:1", "h0", 0, 1)]
    plan, clusters = decide(shards(tmp_path, records), None, True, None)
    assert plan.entries() == {"a:1": PlanEntry("exact_dedup", "a:0", "a:0")} and clusters is None
    assert decide(tmp_path / "filtered", None, False, None)[0].entries() == {}
    assert decide(tmp_path / "nothing", None, True, None)[0].entries() == {}


def _perturbed(records: list[dict]) -> list[dict]:
    """Each record, then copies with a word or a sentence changed in one part, or a part emptied."""
    out = []
    for r in records:
        out.append(r)
        for j, (field, edit) in enumerate([("output", lambda t: t.replace("。", "です。", 1)),
                                           ("instruction", lambda t: t[: len(t) // 2]),
                                           ("output", lambda t: t + "さらに詳しく説明すると、" + t[::-1]),
                                           ("input", lambda t: ""), ("output", lambda t: t[:3])]):
            copy = dict(r, record_id=f"{r['record_id']}~{j}", content_hash=f"{r['content_hash']}~{j}")
            copy[field] = edit(copy[field] or "")
            out.append(copy)
    return out


def test_batched_pair_verification_decides_as_the_per_pair_rule(tmp_path, monkeypatch):
    """``verify_pairs`` (many pairs per numpy call) against ``near_duplicate_similarity`` pair by pair,
    on the handwritten records and perturbed copies: both tokenizers, both answer rules, empty parts;
    and the same answers and groups with the pairs cut into slices verified on threads."""
    import itertools
    import json
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    import numpy as np

    from curate.dedup import plan
    from curate.dedup.near_duplicates import near_duplicate_similarity
    from curate.dedup.plan import NearClusters, PartShingleStore, verify_pairs, verify_pairs_in_threads

    monkeypatch.setattr(plan, "MIN_PAIRS_PER_THREAD", 10)  # so that these few hundred pairs are cut

    rows = [json.loads(line) for line in Path("data/handwritten/qa_knowledge.jsonl").read_text(encoding="utf-8").splitlines()]
    base = [rec(f"h:{i}", f"h{i}", 0, i, output=r["output"], instruction=r["instruction"], input_=r.get("input") or "")
            for i, r in enumerate(rows[:12])]
    records = [dict(r, row=k) for k, r in enumerate(_perturbed(base))]
    table = PlanTable.load(shards(tmp_path, records))
    pairs = np.array([(a, b) for a, b in itertools.combinations(range(len(table)), 2) if a // 6 == b // 6 or (a + b) % 7 == 0])
    for near in (NearDedupConfig(), NearDedupConfig(same_prompt_different_answer="drop"),
                 NearDedupConfig(tokens="fugashi", n_grams=3)):
        store = PartShingleStore.build(table, np.unique(pairs), near, batch_rows=17)  # several chunks
        one_by_one = [near_duplicate_similarity(store.parts(a), store.parts(b), near.min_jaccard,
                                                near.same_prompt_different_answer) is not None for a, b in pairs]
        assert verify_pairs(store, pairs, near).tolist() == one_by_one
        assert 0 < sum(one_by_one) < len(pairs), "some pairs verify and some do not"
        with ThreadPoolExecutor(3) as pool:
            assert verify_pairs_in_threads(store, pairs, near, pool, 3).tolist() == one_by_one
        # groups: the same whatever the batches (a pair already joined is skipped) and threads
        roots = [NearClusters(near, batch_pairs=size, threads=threads).roots(table, pairs)
                 for size, threads in ((1, 1), (7, 1), (len(pairs), 1), (len(pairs), 3), (50, 2))]
        assert all(np.array_equal(roots[0], r) for r in roots[1:])


def _write_part_shingles(folder, tasks: list[list[dict]], near: NearDedupConfig) -> None:
    """What the filter stage's ``PartShingleWriter`` writes for these tasks (messages as the reader
    leaves them: a list, not JSON)."""
    import json

    from datatrove.data import Document

    from curate.dedup.part_shingles import PartShingleWriter

    writer = PartShingleWriter(str(folder), near)
    for rank, records in enumerate(tasks):
        docs = [Document(text="", id=r["record_id"],
                         metadata={**r, "messages": json.loads(r["messages"]) if r["messages"] else None})
                for r in records]
        assert [d.id for d in writer.run(iter(docs), rank=rank, world_size=len(tasks))] == [r["record_id"] for r in records]


def test_part_shingles_written_by_the_filter_stage_equal_those_of_the_shards_texts(tmp_path):
    """The plan's shingles mapped from the files the filter tasks wrote against those it computes from
    the shards' texts: the same per record (two tasks, a chat record, empty parts), the same pair
    decisions and groups, for both tokenizers."""
    import itertools
    import json
    from pathlib import Path

    import numpy as np

    from curate.dedup.plan import NearClusters, PartShingleStore, verify_pairs

    rows = [json.loads(line) for line in Path("data/handwritten/qa_knowledge.jsonl").read_text(encoding="utf-8").splitlines()]
    base = [rec(f"h:{i}", f"h{i}", 0, i, output=r["output"], instruction=r["instruction"], input_=r.get("input") or "")
            for i, r in enumerate(rows[:8])]
    records = [dict(r, row=k) for k, r in enumerate(_perturbed(base))]
    chat = json.dumps([{"role": "user", "content": "東京の人口は?"}, {"role": "assistant", "content": TEXT}],
                      ensure_ascii=False)
    records.append(rec("c:0", "c0", 1, 0, output="", instruction="") | {"messages": chat})
    tasks = [records[::2], records[1::2]]
    table = PlanTable.load(shards(tmp_path, *tasks))
    pairs = np.array([(a, b) for a, b in itertools.combinations(range(len(table)), 2) if a // 6 == b // 6 or (a + b) % 5 == 0])
    positions = np.unique(pairs)
    for near in (NearDedupConfig(), NearDedupConfig(tokens="fugashi", n_grams=3)):
        folder = tmp_path / f"shingles-{near.tokens}"
        _write_part_shingles(folder, tasks, near)
        mapped = PartShingleStore.from_files(table, positions, folder, near)
        computed = PartShingleStore.build(table, positions, near, batch_rows=13)
        for p in positions.tolist():
            a, b = mapped.parts(p), computed.parts(p)
            for part in ("prompt", "context", "answer"):
                assert np.array_equal(getattr(a, part), getattr(b, part)), (p, part)
                assert getattr(a, part).dtype == getattr(b, part).dtype
        assert verify_pairs(mapped, pairs, near).tolist() == verify_pairs(computed, pairs, near).tolist()
        roots = NearClusters(near, shingles_folder=folder).roots(table, pairs)
        assert np.array_equal(roots, NearClusters(near).roots(table, pairs))
        assert (roots != np.arange(len(table))).any(), "some records join a group"


def test_shared_counts_by_sparse_rows_and_by_sorting_agree_and_unsorted_rows_fall_back():
    """``shared_counts``: the sparse-matrix path (32-bit hashes) against the sorted-keys path on the same
    pairs (two chunks, empty parts, hashes past 2**31), and a row that is not sorted and unique (which
    the sparse path cannot take) still counted right, by sorting."""
    import numpy as np

    from curate.dedup.plan import PartShingleStore, shared_counts

    rng = np.random.default_rng(7)
    sets = [np.unique(rng.choice(np.array([1, 5, 9, 2**31 + 3, 2**32 - 1, 77, 1000], dtype=np.uint32),
                                 size=rng.integers(0, 7))) for _ in range(30)]
    chunks, bounds = [], []
    for part_sets in (sets[:15], sets[15:]):  # two chunks; each record: prompt = its set, context empty, answer = its set
        values, offsets, at = [], [], 0
        for s in part_sets:
            offsets.append([at, at + s.size, at + s.size, at + 2 * s.size])
            values += [s, s]
            at += 2 * s.size
        chunks.append(np.concatenate(values).astype(np.uint32))
        bounds += offsets
    store = PartShingleStore(chunks, np.repeat([0, 1], 15), np.array(bounds, dtype=np.int64), np.arange(30))
    pairs = np.array([(a, b) for a in range(30) for b in range(a + 1, 30)])
    expected = [len(np.intersect1d(sets[a], sets[b])) for a, b in pairs]
    assert shared_counts(store, pairs, 0).tolist() == expected
    assert shared_counts(store, pairs, 1).tolist() == [0] * len(pairs)  # empty contexts
    wide = PartShingleStore([c.astype(np.uint64) for c in chunks], store.chunk_of, store.bounds, store.row_of)
    assert shared_counts(wide, pairs, 2).tolist() == expected  # the sorting path (64-bit hashes)
    assert sum(expected) > 0
    # a row out of order: the sparse path would allocate a column per hash value; it is counted by sorting
    first = int(np.flatnonzero([s.size >= 2 for s in sets[:15]])[0])
    a, b, _, _ = store.bounds[first].tolist()
    chunks[0][a:b] = chunks[0][a:b][::-1].copy()
    assert not store.part_rows(np.array([first]), 0).has_canonical_format
    assert shared_counts(store, pairs, 0).tolist() == expected


def test_a_cut_part_shingle_file_is_a_clear_error(tmp_path):
    import numpy as np
    import pytest

    from core.errors import JcurateError
    from curate.dedup.plan import PartShingleStore

    records = [rec("a:0", "h0", 0, 0), rec("a:1", "h1", 0, 1, TEXT + "です")]
    table = PlanTable.load(shards(tmp_path, records))
    near = NearDedupConfig()
    _write_part_shingles(tmp_path / "sh", [records], near)
    values = tmp_path / "sh/00000.shingles"
    values.write_bytes(values.read_bytes()[:-8])  # a task killed while writing
    with pytest.raises(JcurateError, match="00000.shingles holds .* --fresh"):
        PartShingleStore.from_files(table, np.array([0, 1]), tmp_path / "sh", near)
    (tmp_path / "sh/00000.counts").unlink()
    with pytest.raises(JcurateError, match="filter task 0 are unreadable"):
        PartShingleStore.from_files(table, np.array([0, 1]), tmp_path / "sh", near)


def test_the_plan_lists_its_duplicates_and_the_last_stage_copies_them_as_dropped_rows(tmp_path):
    """``write_duplicate_lists`` then the intermediate reader: each dropped record's row as the filter
    stage wrote it (every column), with stage, reason and the record it duplicates, a shard per filter
    task in row order (across read batches), no file for a task without drops; only the records kept
    become documents."""
    import pyarrow.parquet as pq

    from curate.dedup.plan import decide_with_table, write_duplicate_lists
    from curate.running.outputs import RECORD_COLUMNS, RECORD_SCHEMA, IntermediateReader

    def full(r: dict) -> dict:
        row = dict.fromkeys(RECORD_COLUMNS) | {k: v for k, v in r.items() if k in RECORD_COLUMNS}
        return row | {"text": f"{r['instruction']}\n{r['output']}", "signals": '{"kana_ratio": 0.5}', "label": 3.0}

    near_copy = TEXT.replace("多くの", "たくさんの")
    first = [full(rec("a:0", "h0", 0, 0)), full(rec("a:1", "h1", 0, 1, near_copy)), full(rec("a:2", "h0", 0, 2))]
    # more rows than one read batch: the dropped rows sit on both sides of a batch boundary
    first += [full(rec(f"b:{i}", f"hb{i}", 1, i, f"{i}番目の答えです。" * 3)) for i in range(1500)]
    first += [full(rec("a:5", "h0", 2, 0))]
    second = [full(rec("a:3", "h3", 0, 3, "富士山は静岡県と山梨県にまたがる日本一高い山です。")), full(rec("a:4", "h0", 0, 4))]
    folder = tmp_path / "filtered"
    folder.mkdir()
    for rank, rows in enumerate([first, second]):
        pq.write_table(pa.Table.from_pylist(rows, schema=RECORD_SCHEMA), folder / f"{rank:05d}.parquet")
    plan, _, table = decide_with_table(folder, buckets(tmp_path, [(0, 0, 0, 1)]), True, NearDedupConfig())
    assert plan.entries() == {"a:2": PlanEntry("exact_dedup", "a:0", "a:0"), "a:4": PlanEntry("exact_dedup", "a:0", "a:0"),
                              "a:5": PlanEntry("exact_dedup", "a:0", "a:0"), "a:1": PlanEntry("near_dedup", "a:0", "a:0")}
    assert write_duplicate_lists(table, plan, tmp_path / "lists") == {"exact_dedup": 3, "near_dedup": 1}
    assert pq.read_table(tmp_path / "lists/00000.parquet").to_pylist() == [
        {"row": 1, "stage": "near_dedup", "value": "a:0"}, {"row": 2, "stage": "exact_dedup", "value": "a:0"},
        {"row": 1503, "stage": "exact_dedup", "value": "a:0"}]
    reader = IntermediateReader(str(folder), duplicates_folder=str(tmp_path / "lists"), dropped_folder=str(tmp_path / "dropped"))
    kept = [d.id for d in reader.run()]
    assert kept == ["a:0"] + [f"b:{i}" for i in range(1500)] + ["a:3"]
    assert sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "dropped").rglob("*.parquet")) == [
        "dropped/exact_dedup/00000.parquet", "dropped/exact_dedup/00001.parquet", "dropped/near_dedup/00000.parquet"]
    exact0 = pq.read_table(tmp_path / "dropped/exact_dedup/00000.parquet")
    assert exact0.schema.equals(RECORD_SCHEMA)
    dropped = {"stage": "exact_dedup", "reason": "exact_duplicate", "value": "a:0"}
    assert exact0.to_pylist() == [first[2] | dropped, first[-1] | dropped]
    near0 = pq.read_table(tmp_path / "dropped/near_dedup/00000.parquet").to_pylist()
    assert near0 == [first[1] | {"stage": "near_dedup", "reason": "near_duplicate", "value": "a:0"}]
    assert len(list(IntermediateReader(str(folder)).run())) == len(first) + len(second)


def test_table_positions_look_up_each_task_s_rows_and_refuse_what_is_not_there(tmp_path):
    import numpy as np

    table = PlanTable.load(shards(tmp_path, [rec("b:0", "h0", 1, 0), rec("b:1", "h1", 1, 1)],
                                  [rec("a:0", "h2", 0, 0), rec("a:1", "h3", 0, 1), rec("a:2", "h4", 0, 2)]))
    # survivor order: source 0 (task 1's rows) first, then source 1 (task 0's rows)
    rank = np.array([1, 1, 1, 0, 0, 0, 2, 1])
    doc = np.array([0, 1, 2, 0, 1, 2, 0, 7])
    assert table.positions(rank, doc).tolist() == [0, 1, 2, 3, 4, -1, -1, -1]
    assert [table.record_ids[int(p)].as_py() for p in table.positions(rank[:5], doc[:5])] == ["a:0", "a:1", "a:2",
                                                                                             "b:0", "b:1"]


def test_verify_tasks_in_any_number_decide_what_one_task_decides(tmp_path):
    """The pipeline's way: ``NearPairVerifier`` tasks verify shares of the candidate pairs and the plan joins
    their edges. 1, 2, 3 or 7 tasks: every fate, duplicate-of and group is what ``decide`` finds alone."""
    import json
    from pathlib import Path

    from curate.dedup.plan import NearPairVerifier, PlanTableWriter, decide_from_edges

    rows = [json.loads(line) for line in Path("data/handwritten/qa_knowledge.jsonl").read_text(encoding="utf-8").splitlines()]
    base = [rec(f"h:{i}", f"h{i}", 0, i, output=r["output"], instruction=r["instruction"], input_=r.get("input") or "")
            for i, r in enumerate(rows[:10])]
    records = [dict(r, row=k) for k, r in enumerate(_perturbed(base))]
    records += [dict(records[3], record_id="x:3", source_order=1), dict(records[8], record_id="x:8", source_order=1)]
    tasks = [records[::2], records[1::2]]
    where = {r["record_id"]: (rank, i) for rank, task in enumerate(tasks) for i, r in enumerate(task)}
    at = [where[r["record_id"]] for r in records]
    # band 0: runs of 6 records in input order; band 1: records whose index agrees mod 5 (mostly not duplicates)
    chains = [[(*at[i], *at[i + 1]) for i in range(len(at) - 1) if i // 6 == (i + 1) // 6],
              [(*at[i], *at[i + 5]) for i in range(len(at) - 5)]]
    folder = shards(tmp_path, *tasks)
    bucket_folder = buckets(tmp_path, *chains)
    near = NearDedupConfig()
    shingles = tmp_path / "shingles"
    _write_part_shingles(shingles, tasks, near)
    alone, clusters = decide(folder, bucket_folder, True, near, str(shingles))
    entries = alone.entries()
    assert {e.stage for e in entries.values()} == {"exact_dedup", "near_dedup"} and clusters.rejected > 0
    # the table built once by task 0 of the stage before (task 1 writes nothing), mapped by every later task
    table = tmp_path / "plan_table"
    for rank in (1, 0):
        list(PlanTableWriter(str(folder), str(table), exact=True).run(iter(()), rank, 2))
        assert table.is_dir() == (rank == 0)
    # the pipeline's near-pairs stage: T tasks, each reading its share of the bands, hand every verify task
    # exactly its share of every band's pairs (those whose first record lies in its blocks), and the plan is the same
    from curate.dedup.plan import NearPairSharder, candidate_pairs, read_pair_shards, share_blocks

    opened = PlanTable.open(table, ids=False)
    every = candidate_pairs(opened, read_band_groups(bucket_folder))
    for pair_tasks, world_size in ((1, 1), (2, 2), (2, 3), (1, 3), (2, 7)):
        pairs_folder = tmp_path / f"pairs-{pair_tasks}-{world_size}"
        for rank in range(pair_tasks):
            list(NearPairSharder(str(bucket_folder), str(pairs_folder), str(table), verify_tasks=world_size)
                 .run(None, rank, pair_tasks))
        assert not list(pairs_folder.rglob("*.partial.npy"))
        owners = share_blocks(every[:, 0], len(opened), world_size)
        for owner in range(world_size):
            assert np.array_equal(read_pair_shards(pairs_folder, owner, pair_tasks, len(opened)),
                                  every[owners == owner])
        edges = tmp_path / f"edges-{pair_tasks}-{world_size}"
        shared = None if world_size == 1 else str(table)  # one task without the saved table: it builds its own
        for rank in range(world_size):
            list(NearPairVerifier(str(folder), str(pairs_folder), pair_tasks, str(edges), exact=True, near=near,
                                  shingles_folder=str(shingles), table_folder=shared).run(None, rank, world_size))
        assert len(list(edges.glob("*.npy"))) == world_size and not list(edges.glob("*.partial.npy"))
        plan, _ = decide_from_edges(folder, edges, True, tasks=world_size, table_folder=shared)
        assert plan.entries() == entries, (pair_tasks, world_size)
    # a near-pairs task that did not finish is named
    (tmp_path / "pairs-2-3" / "00002" / "00001.npy").unlink()
    with pytest.raises(JcurateError, match="near-dup pairs task 1 of 2 did not finish"):
        read_pair_shards(tmp_path / "pairs-2-3", 2, 2, len(opened))
    # a verify task that did not finish is named, not silently left out
    (tmp_path / "edges-2-3" / "00001.npy").unlink()
    with pytest.raises(JcurateError, match="verify task 1 of 3 did not finish"):
        decide_from_edges(folder, tmp_path / "edges-2-3", True, tasks=3)


def test_a_saved_table_opens_as_the_one_loaded_and_a_missing_one_is_named(tmp_path):
    from curate.dedup.plan import PlanTable

    records = [rec("a:0", "h0", 0, 0), rec("a:1", "h0", 0, 1), rec("b:0", "h1", 1, 0), rec("b:1", "h2", 1, 1)]
    folder = shards(tmp_path, records[:3], records[3:])
    for exact in (True, False):
        loaded = PlanTable.load(folder, exact=exact)
        loaded.save(tmp_path / "table")
        opened = PlanTable.open(tmp_path / "table")
        assert opened.record_ids.to_pylist() == loaded.record_ids.to_pylist() == ["a:0", "a:1", "b:0", "b:1"]
        for name in ("task_keys", "key_positions", "exact_of"):
            assert np.array_equal(getattr(opened, name), getattr(loaded, name)), name
        assert opened.shards == loaded.shards and len(opened) == 4
        rank, doc = np.array([0, 0, 1, 0]), np.array([0, 1, 0, 2])
        assert opened.positions(rank, doc).tolist() == loaded.positions(rank, doc).tolist()
        assert Plan.of(opened).entries() == Plan.of(loaded).entries()
    assert len(PlanTable.open(tmp_path / "table", ids=False)) == 4, "positions without the ids"
    assert not (tmp_path / "table.partial").exists()
    with pytest.raises(JcurateError, match=r"records' order in .*missing-table is missing or unreadable"):
        PlanTable.open(tmp_path / "missing-table")


def test_verify_tasks_fewer_than_the_cores_use_the_idle_ones_as_threads(tmp_path):
    """One verify task per worker; with fewer workers than cores each task verifies on the cores the others
    leave idle (one worker on 2 cores: 2 threads, 1.3x faster at a million records), never fewer than one."""
    from curate.config import PipelineConfig
    from curate.dedup.plan import NearPairVerifier, verify_threads
    from curate.reading.manifest import load_manifest
    from curate.running.pipeline import build_stages

    sources = load_manifest("data/sources.yaml")
    for workers in (1, 2, 64):
        stages = {name: (steps, tasks) for name, steps, tasks in build_stages(sources, PipelineConfig(), tmp_path, workers)}
        steps, tasks = stages["near-verify"]
        verifier = next(s for s in steps if isinstance(s, NearPairVerifier))
        assert tasks == workers and verifier.threads == max(1, verify_threads() // workers)
