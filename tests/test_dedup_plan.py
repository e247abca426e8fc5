"""The dedup plan's parts, each on its own: exact grouping, near clustering, merging, writing."""

from __future__ import annotations

import pyarrow.parquet as pq

from curate.config import NearDedupConfig
from curate.dedup import NearClustering, PlanEntry, PlanRecord, exact_duplicates, merge_plans, write_plan

TEXT = "東京は日本の首都であり、政治と経済の中心地として多くの人々が暮らしています。"


def rec(rid: str, h: str, order: int, row: int, pos: int, text: str = TEXT) -> PlanRecord:
    return PlanRecord(record_id=rid, content_hash=h, source_order=order, row=row, file="f.jsonl", rank=0,
                      doc_idx=pos, text=text)


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
