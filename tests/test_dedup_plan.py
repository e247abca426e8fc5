"""The dedup plan's parts, each on its own: exact grouping, near clustering, merging, writing."""

from __future__ import annotations

import pyarrow.parquet as pq

from curate.config import NearDedupConfig
from curate.dedup import NearClustering, PlanEntry, PlanRecord, exact_duplicates, merge_plans, write_plan

TEXT = "東京は日本の首都であり、政治と経済の中心地として多くの人々が暮らしています。"


def rec(rid: str, h: str, order: int, row: int, pos: int, output: str = TEXT, instruction: str = "東京について",
        input_: str = "") -> PlanRecord:
    return PlanRecord(record_id=rid, content_hash=h, source_order=order, row=row, file="f.jsonl", rank=0,
                      doc_idx=pos, instruction=instruction, input=input_, output=output, messages=None)


def test_exact_duplicates_keep_the_first_source_then_the_lowest_row():
    records = [rec("b:5", "h1", 1, 5, 0), rec("a:9", "h1", 0, 9, 1), rec("a:2", "h1", 0, 2, 2), rec("c:1", "h2", 2, 1, 3)]
    plan = exact_duplicates(records)
    assert plan == {"b:5": PlanEntry("exact_dedup", "a:2", "a:2"), "a:9": PlanEntry("exact_dedup", "a:2", "a:2")}


def test_near_clustering_verifies_pairs_and_joins_them_transitively():
    near_text = TEXT.replace("多くの", "たくさんの")
    other = "富士山は静岡県と山梨県にまたがる日本一高い山で、標高は三七七六メートルです。"
    records = [rec("a:0", "h0", 0, 0, 0), rec("a:1", "h1", 0, 1, 1, near_text), rec("a:2", "h2", 0, 2, 2, other)]
    clustering = NearClustering(NearDedupConfig())
    plan = clustering.clusters(records, [((0, 1), (0, 0)), ((0, 0), (0, 2))], exact={})
    assert plan == {"a:1": PlanEntry("near_dedup", "a:0", "a:0")}
    assert (clustering.checked, clustering.rejected) == (2, 1), "the unrelated pair is checked and rejected"


def test_an_exact_duplicate_stands_for_its_survivor_and_joins_the_near_group():
    exact = {"b:0": PlanEntry("exact_dedup", "a:1", "a:1")}
    near = {"a:1": PlanEntry("near_dedup", "a:0", "a:0")}
    merged = merge_plans(exact, near)
    assert merged["b:0"] == PlanEntry("exact_dedup", "a:1", "a:0")
    assert merged["a:1"] == near["a:1"]


def test_write_plan_round_trips(tmp_path):
    path = tmp_path / "plan.parquet"
    write_plan({"x:1": PlanEntry("near_dedup", "x:0", "x:0")}, path)
    assert pq.read_table(path).to_pylist() == [
        {"record_id": "x:1", "stage": "near_dedup", "duplicate_of": "x:0", "cluster_id": "x:0"}]


PASSAGE = ("マグネシウムは原子番号12の元素で、元素記号はMgである。アルカリ土類金属の一つで、地殻に多く含まれ、"
           "軽量な合金の材料として航空機や自動車に使われる。燃やすと強い白い光を出すため、かつては写真撮影にも用いられた。")


def test_a_shared_passage_with_another_question_and_answer_is_not_a_duplicate():
    a = rec("q:0", "h0", 0, 0, 0, instruction="マグネシウムの元素記号は？", input_=PASSAGE, output="Mg")
    b = rec("q:1", "h1", 0, 1, 1, instruction="マグネシウムの原子番号はいくつ？", input_=PASSAGE, output="12")
    assert NearClustering(NearDedupConfig()).clusters([a, b], [((0, 0), (0, 1))], exact={}) == {}


def test_same_prompt_with_a_near_identical_answer_is_a_duplicate_and_a_different_answer_is_configurable():
    a = rec("q:0", "h0", 0, 0, 0, instruction="マグネシウムの元素記号は何ですか？", input_=PASSAGE, output="Mgです。")
    b = rec("q:1", "h1", 0, 1, 1, instruction="マグネシウムの元素記号は何ですか?", input_=PASSAGE, output="Mg です")
    c = rec("q:2", "h2", 0, 2, 2, instruction="マグネシウムの元素記号は何ですか？", input_=PASSAGE,
            output="アルカリ土類金属の一つで、記号は大文字のMと小文字のgを組み合わせたものです。")
    pairs = [((0, 0), (0, 1)), ((0, 0), (0, 2))]
    assert NearClustering(NearDedupConfig()).clusters([a, b, c], pairs, exact={}) == {
        "q:1": PlanEntry("near_dedup", "q:0", "q:0")}
    drop = NearClustering(NearDedupConfig(same_prompt_different_answer="drop"))
    assert set(drop.clusters([a, b, c], pairs, exact={})) == {"q:1", "q:2"}


def test_candidate_groups_are_rebuilt_from_datatrove_s_chains_and_paired_in_survivor_order(tmp_path):
    """The same band-signature group, written by datatrove in two task splits' orders, gives the same
    clusters: the records are paired in survivor order, not in the order the tasks wrote them."""
    import struct

    from curate.dedup import candidate_groups

    with open(tmp_path / "000.dups", "wb") as f:  # two groups: a chain of three, then a pair
        for pair in [(0, 0, 0, 2), (0, 2, 0, 1), (1, 5, 1, 7)]:
            f.write(struct.pack("<4I", *pair))
    assert list(candidate_groups(tmp_path)) == [[(0, 0), (0, 2), (0, 1)], [(1, 5), (1, 7)]]
    other = "富士山は静岡県と山梨県にまたがる日本一高い山で、標高は三七七六メートルです。"
    near = TEXT.replace("多くの", "たくさんの")
    # x0 ~ x2, and x1 unlike both: the chain x0-x2-x1 would join x0 and x2, the chain x0-x1-x2 would not
    records = [rec("x:0", "h0", 0, 0, 0), rec("x:1", "h1", 0, 1, 1, other), rec("x:2", "h2", 0, 2, 2, near)]
    one = NearClustering(NearDedupConfig()).clusters(records, [[(0, 0), (0, 2), (0, 1)]], exact={})
    two = NearClustering(NearDedupConfig()).clusters(records, [[(0, 1), (0, 0), (0, 2)]], exact={})
    assert one == two == {}, "paired in survivor order x0-x1, x1-x2: neither verifies"
