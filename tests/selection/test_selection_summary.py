"""The selection benchmark's cross-run summary: paired differences pooled over the seeds both arms have, and
every arm's means over the seeds of the arm in question (so that the rows compare)."""

from __future__ import annotations

import hashlib
import json

import pytest

from benchmarks.selection.summary import summary


def _arm(folder, arm, seed, dev, test, chars=100.0):
    (folder / "arms").mkdir(parents=True, exist_ok=True)
    result = {"arm": arm, "seed": seed, "mean_answer_chars": chars,
              "dev": {f"d{i}": [dev + 0.01 * i, dev, 10] for i in range(4)},
              "test": {f"t{i}": [test + 0.01 * i, test, 10] for i in range(4)}}
    (folder / "arms" / f"{arm.replace(':', '-')}-s{seed}.json").write_text(json.dumps(result), encoding="utf-8")


def test_pooled_over_shared_seeds_and_means_over_the_arm_s_seeds(tmp_path):
    run = tmp_path / "instruction-k100"
    for seed in (0, 1, 2):
        _arm(run, "random", seed, 2.10, 2.80)
        _arm(run, "longest", seed, 2.00, 2.70)
    _arm(run, "model:jquality-v4", 0, 1.90, 2.60, chars=900)
    _arm(run, "model:jquality-v4", 1, 1.92, 2.62, chars=900)
    _arm(run, "random", 5, 9.0, 9.0)  # a seed the arm has not: in neither the means nor the differences
    (tmp_path / "other-k100" / "arms").mkdir(parents=True)  # a run without the arm: left out
    text = summary(tmp_path, "model:jquality-v4", [])
    assert "| instruction-k100 | random | 0, 1 | 100 | 2.1150 | 2.8150 |" in text, text
    assert "| instruction-k100 | 0, 1 | model:jquality-v4 − random | -0.1900 [" in text
    assert "| instruction-k100 | 0, 1 | model:jquality-v4 − longest | -0.0900 [" in text
    assert "other-k100" not in text


def test_all_runs_pool_the_pairs_of_every_run_that_holds_both_arms(tmp_path):
    for name, gap in (("instruction-k100", -0.10), ("mixed-k100", -0.04)):
        for seed in (0, 1):
            _arm(tmp_path / name, "random", seed, 2.10, 2.80)
            _arm(tmp_path / name, "model:jquality-v4", seed, 2.10 + gap, 2.80 + gap)
    _arm(tmp_path / "instruction-k300", "model:jquality-v4", 0, 1.0, 1.0)  # no random here: not pooled
    text = summary(tmp_path, "model:jquality-v4", [])
    row = next(line for line in text.splitlines() if line.startswith("| all runs"))
    assert "(instruction-k100, mixed-k100)" in row and "instruction-k300" not in row, row
    assert "model:jquality-v4 − random | -0.0700 [" in row, "mean of 16 pairs: 8 at -0.10, 8 at -0.04"
    assert text.count("| all runs") == 1, "no run holds longest: no pooled row for it"


def test_only_the_seeds_asked_for(tmp_path):
    run = tmp_path / "instruction-k100"
    for seed, gap in ((0, -0.10), (1, -0.02)):
        _arm(run, "random", seed, 2.10, 2.80)
        _arm(run, "model:jquality-v4", seed, 2.10 + gap, 2.80 + gap)
    text = summary(tmp_path, "model:jquality-v4", [], only_seeds=[1])
    assert "| instruction-k100 | 1 | model:jquality-v4 − random | -0.0200 [" in text, text
    assert "| instruction-k100 | model:jquality-v4 | 1 | 100 | 2.0950 |" in text, "means over seed 1 alone"


def test_a_per_source_arm_names_its_selector_and_random_refuses_it():
    from benchmarks.selection.run import arm_tag, split_arm

    assert split_arm("model:jquality-v4+per-source") == ("model:jquality-v4", True, None)
    assert split_arm("model:jquality-v4+per-source-min4") == ("model:jquality-v4", True, 4.0)
    assert split_arm("model:jquality-v4+per-source-min3.5") == ("model:jquality-v4", True, 3.5)
    assert split_arm("longest") == ("longest", False, None)
    assert arm_tag("model:jquality-v4+per-source") == "model-jquality-v4+per-source", "its own result files"
    with pytest.raises(SystemExit, match="random\\+per-source"):
        split_arm("random+per-source")


def test_the_committed_layout_reads_like_a_run_folder(tmp_path):
    """``results/arms/<pool>-k<k>/<arm>-s<seed>.json`` (no ``arms/`` level), beside the base model's file."""
    run = tmp_path / "mixed-k100"
    for arm, dev in (("random", 2.10), ("model:jquality-v4", 2.00)):
        _arm(run, arm, 0, dev, 2.7)
        (run / "arms" / f"{arm.replace(':', '-')}-s0.json").rename(run / f"{arm.replace(':', '-')}-s0.json")
    (run / "arms").rmdir()
    (tmp_path / "base-t768.json").write_text("{}", encoding="utf-8")
    text = summary(tmp_path, "model:jquality-v4", [])
    assert "| mixed-k100 | 0 | model:jquality-v4 − random | -0.1000 [" in text, text


def test_a_committed_arm_is_reused_only_for_the_same_records_recipe_and_seed(tmp_path, monkeypatch):
    from benchmarks.selection import run

    monkeypatch.setattr(run, "KEPT", tmp_path)
    r1, r2 = ("r1", "質問", "", "def f():\n    return 1", ""), ("r2", "問い", "", "答え", "")
    print_ = run.arm_fingerprint([r1, r2], "recipe: a", 0, 768)
    assert print_ == run.arm_fingerprint([r1, r2], "recipe: a", 0, 768), "deterministic"
    unindented = (*r1[:3], "def f():\nreturn 1", "")
    others = {run.arm_fingerprint([r2, r1], "recipe: a", 0, 768), run.arm_fingerprint([r1, r2], "recipe: b", 0, 768),
              run.arm_fingerprint([r1, r2], "recipe: a", 1, 768), run.arm_fingerprint([r1, r2], "recipe: a", 0, 512),
              run.arm_fingerprint([unindented, r2], "recipe: a", 0, 768)}
    assert print_ not in others and len(others) == 5, "order, recipe, seed, token limit and texts each change it"
    old = hashlib.sha256(b"".join(p.encode() + b"\0" for p in ("r1", "r2", "recipe: a", "0", "768"))).hexdigest()[:16]
    assert run.arm_fingerprint([("r1",), ("r2",)], "recipe: a", 0, 768) == old, "ids alone: as committed before"
    path = run.kept_path("instruction", 100, "longest", 0)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"fingerprint": print_, "dev": {}}), encoding="utf-8")
    assert run.committed_result("instruction", 100, "longest", 0, print_) == {"fingerprint": print_, "dev": {}}
    assert run.committed_result("instruction", 100, "longest", 0, "another") is None, "other records: train again"
    assert run.committed_result("instruction", 100, "longest", 1, print_) is None, "nothing committed for seed 1"
