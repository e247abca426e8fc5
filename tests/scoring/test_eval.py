"""Evaluation: eval-set loading, generation + grading into the store, the paired bootstrap, and
the top-k vs random experiment end to end on the embedded default (tiny model, CPU)."""

from __future__ import annotations

import importlib.util
import json
import shutil

import duckdb
import numpy as np
import pytest
import yaml

from eval.compare import bootstrap_ci, compare_scores
from eval.tasks import load_tasks
from tests.conftest import ROOT

needs_torch = pytest.mark.skipif(importlib.util.find_spec("trl") is None or importlib.util.find_spec("matplotlib") is None,
                                 reason="needs the 'train' and 'eval' extras")


def test_both_shapes_load_and_bad_rows_are_reported_by_line(tmp_path):
    elyza = load_tasks(ROOT / "data/eval/elyza_style.jsonl")
    mt = load_tasks(ROOT / "data/eval/mt_bench_style.jsonl")
    assert len(elyza) == 30 and all(i.shape == "elyza" and i.eval_aspect and i.reference for i in elyza)
    assert len(mt) == 12 and all(i.shape == "mt-bench" and len(i.turns) == 2 for i in mt)
    bad = tmp_path / "mixed.jsonl"
    bad.write_text("\n".join([
        json.dumps({"input": "日本の首都は？", "output": "東京", "eval_aspect": "東京と答えれば5点"}, ensure_ascii=False),
        "{not json",
        json.dumps({"question": "形が違う"}, ensure_ascii=False),
        json.dumps({"turns": ["一問目", 3]}, ensure_ascii=False),
        json.dumps({"turns": ["一問目", "二問目"], "category": "writing"}, ensure_ascii=False),
    ]), encoding="utf-8")
    warnings = []
    items = load_tasks(bad, warn=warnings.append)
    assert [i.shape for i in items] == ["elyza", "mt-bench"]
    assert [w.split(": ", 1)[1].split(":")[0] for w in warnings] == [f"{bad} line 2", f"{bad} line 3", f"{bad} line 4"]


def test_bootstrap_matches_a_direct_computation():
    rng = np.random.default_rng(7)
    cats = ["math", "writing", "coding"]
    a = {f"q{i}": (cats[i % 3], float(rng.integers(1, 6))) for i in range(40)}
    b = {f"q{i}": (cats[i % 3], float(min(5, a[f"q{i}"][1] + rng.integers(-1, 3)))) for i in range(40)}
    b["only-b"] = ("math", 5.0)
    c = compare_scores(a, b, "A", "B", n_boot=2000, seed=3)
    items = sorted(a)
    diffs = np.array([b[k][1] - a[k][1] for k in items])
    assert c.n == 40 and c.diff == pytest.approx(diffs.mean())
    assert (c.wins, c.ties, c.losses) == ((diffs > 0).sum(), (diffs == 0).sum(), (diffs < 0).sum())
    direct_rng = np.random.default_rng(3)
    means = [diffs[direct_rng.integers(0, 40, size=40)].mean() for _ in range(2000)]
    assert (c.ci_low, c.ci_high) == pytest.approx((np.quantile(means, 0.025), np.quantile(means, 0.975)))
    assert c.ci_low <= c.diff <= c.ci_high
    math_items = [k for k in items if a[k][0] == "math"]
    assert c.per_category["math"][0] == pytest.approx(np.mean([a[k][1] for k in math_items]))
    assert bootstrap_ci(np.zeros(5)) == (0.0, 0.0)


@needs_torch
def test_experiment_end_to_end_on_the_default(default_run, tmp_path):
    from eval.experiment import load_experiment_config, run_experiment

    db = tmp_path / "store.duckdb"
    shutil.copy(default_run[1], db)
    tiny = tmp_path / "tiny"
    train = yaml.safe_load((ROOT / "train/configs/cpu-smoke.yaml").read_text(encoding="utf-8"))
    train["model"]["model_name_or_path"] = str(tiny)
    train["training"].update(max_steps=6, logging_steps=2, disable_tqdm=True)
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train, allow_unicode=True), encoding="utf-8")
    ev = yaml.safe_load((ROOT / "eval/configs/eval-cpu-smoke.yaml").read_text(encoding="utf-8"))
    ev.update(limit=2)
    ev["generation"]["max_new_tokens"] = 8
    ev["judge"]["model"] = str(tiny)
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(ev, allow_unicode=True), encoding="utf-8")
    exp = yaml.safe_load((ROOT / "eval/configs/experiment-cpu-smoke.yaml").read_text(encoding="utf-8"))
    exp.update(db=str(db), k=30, train_config=str(tmp_path / "train.yaml"), eval_config=str(tmp_path / "eval.yaml"),
               out_dir=str(tmp_path / "runs"))
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp, allow_unicode=True), encoding="utf-8")

    result = run_experiment(load_experiment_config(tmp_path / "exp.yaml"), log=lambda m: None)
    con = duckdb.connect(str(db), read_only=True)
    sizes = con.execute("SELECT name, n_records FROM subsets WHERE name LIKE 'cpu-smoke-%' ORDER BY name").fetchall()
    assert sizes == [("cpu-smoke-longest", 30), ("cpu-smoke-random", 30), ("cpu-smoke-topk", 30)]
    # longest: the 30 longest answers of the run's kept records that pass the license filter
    longest = con.execute("""SELECT min(length(r.output)) FROM subset_members m JOIN records r USING (record_id)
                             WHERE m.subset = 'cpu-smoke-longest'""").fetchone()[0]
    longer = con.execute("""SELECT count(*) FROM subset_members m JOIN records r USING (record_id)
                            WHERE m.subset = 'cpu-smoke-random' AND length(r.output) > ?""", [longest]).fetchone()[0]
    assert longer < 30 and con.execute("SELECT count(DISTINCT record_id) FROM scores WHERE scorer = 'answer_length'"
                                       ).fetchone()[0] >= 30
    for arm in ("topk", "random", "longest"):
        train_run = result["train_runs"][arm]
        ev = result["evals"][arm]
        assert ev["decont_overlap"] == 0
        rows = con.execute("SELECT item_id, score, answer FROM eval_results WHERE eval_run_id = ? AND train_run_id = ?",
                           [ev["eval_run_id"], train_run]).fetchall()
        assert len(rows) == 2 + 2 * 2  # 2 ELYZA items, 2 MT-Bench items of two turns
        assert all(r[1] is not None and 1 <= r[1] <= 10 for r in rows)
    # Q5 of the README: which train run used which subset, and how did it score (each scale apart)
    from tests.app.test_questions import questions

    q5 = con.execute(questions()["Q5"]).fetchall()
    assert sorted(r[1] for r in q5) == ["cpu-smoke-longest", "cpu-smoke-random", "cpu-smoke-topk"]
    for row in q5:
        assert row[5] == result["evals"][row[1].removeprefix("cpu-smoke-")]["eval_run_id"]
        assert 1 <= row[6] <= 5 and 1 <= row[7] <= 10, "the ELYZA mean on 1-5, the MT-Bench mean on 1-10"
    # the judge's score per scale (ELYZA 1-5, MT-Bench 1-10), never one mean of both
    elyza, mt_bench = result["comparisons"]["score:elyza"], result["comparisons"]["score:mt-bench"]
    assert "score" not in result["comparisons"] and result["comparison"] is elyza
    assert (elyza.n, mt_bench.n) == (2, 2 * 2) and (elyza.scale, mt_bench.scale) == ("elyza", "mt-bench")
    for c in (elyza, mt_bench):
        assert c.ci_low <= c.diff <= c.ci_high
    assert elyza.mean_b == pytest.approx(result["evals"]["topk"]["mean_score_elyza"])
    assert mt_bench.mean_a == pytest.approx(result["evals"]["random"]["mean_score_mt_bench"])
    nll = result["comparisons"]["ref_nll"]
    assert nll.n == 2 and nll.ci_low <= nll.diff <= nll.ci_high, "the 2 ELYZA items have references"
    assert set(result["against"]) == {"random", "longest"}
    assert result["against"]["longest"]["ref_nll"].run_a == result["evals"]["longest"]["eval_run_id"]
    report = (tmp_path / "runs/comparison.md").read_text(encoding="utf-8")
    assert "the scores mean nothing" in report and "bootstrap 95% CI" in report and "lower is better" in report
    assert "## top-k against random (A: cpu-smoke-random" in report and "## top-k against longest (A: cpu-smoke-longest" in report
    assert report.count("## ELYZA shape, 1-5: 2 paired item(s)") == report.count("## MT-Bench shape, 1-10: 4 paired") == 2
    assert (tmp_path / "runs/comparison.png").stat().st_size > 1000


@needs_torch
def test_grading_through_the_openai_backend(default_run, tmp_path):
    from eval.runner import load_eval_config, run_eval
    from tests.openai_server import ModelServer
    from train.tiny import build_tiny_model

    tiny = build_tiny_model(tmp_path / "tiny")
    db = tmp_path / "store.duckdb"
    shutil.copy(default_run[1], db)
    cfg = {"eval_files": [str(ROOT / "data/eval/elyza_style.jsonl")], "limit": 3, "model": str(tiny),
           "backend": "transformers", "db": str(db), "generation": {"max_new_tokens": 6},
           "judge": {"backend": "openai", "model": "tiny", "top_logprobs": 1000}}
    with ModelServer(str(tiny)) as server:
        cfg["judge"]["base_url"] = server.base_url
        (tmp_path / "eval.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
        first = run_eval(load_eval_config(tmp_path / "eval.yaml"), log=lambda m: None)
        requests = server.requests
        second = run_eval(load_eval_config(tmp_path / "eval.yaml"), log=lambda m: None)
        assert server.requests == requests, "the same answers are graded from the judge cache"
    assert first["graded"] == 3 and first["failed"] == 0 and 1 <= first["mean_score_elyza"] <= 5
    assert first["mean_score_mt_bench"] is None and "mean" not in first, "ELYZA items only, no mean of both scales"
    assert second["mean_score_elyza"] == pytest.approx(first["mean_score_elyza"])


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from train.tiny import build_tiny_model

    folder = tmp_path_factory.mktemp("tiny-models")
    return build_tiny_model(folder / "a", seed=0), build_tiny_model(folder / "b", seed=1)


@needs_torch
def test_reference_nll_counts_only_the_reference_tokens_and_follows_the_model(tiny_models):
    import torch

    from eval.generate import load_causal_lm
    from eval.likelihood import reference_nll, reference_pairs

    items = load_tasks(ROOT / "data/eval/elyza_style.jsonl")[:3]
    pairs = reference_pairs(items)
    lm, tok, device = load_causal_lm(str(tiny_models[0]))
    batched = reference_nll(lm, tok, pairs, batch_size=3)
    alone = reference_nll(lm, tok, pairs, batch_size=1)
    assert [r.nll for r in batched] == pytest.approx([r.nll for r in alone], abs=1e-4), "padding changes nothing"
    # by hand, for the first item: the full sequence, the loss on the reference's positions only
    _, prompt, reference = pairs[0]
    rendered = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    prompt_ids = tok(rendered, add_special_tokens=False)["input_ids"]
    ref_ids = tok(reference, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + ref_ids])
    with torch.no_grad():
        logp = torch.log_softmax(lm(input_ids=ids).logits.float()[0, :-1], dim=-1)
    token_nll = -logp.gather(-1, ids[0, 1:].unsqueeze(-1)).squeeze(-1)
    expected = float(token_nll[len(prompt_ids) - 1:].mean())
    assert batched[0].tokens == len(ref_ids)
    assert batched[0].nll == pytest.approx(expected, abs=1e-4)
    assert abs(float(token_nll.mean()) - expected) > 1e-3, "the prompt's tokens would change it: they are masked"
    other = reference_nll(*load_causal_lm(str(tiny_models[1]))[:2], pairs)
    assert all(abs(a.nll - b.nll) > 1e-3 for a, b in zip(batched, other)), "another model, other numbers"
    # the end tokens renormalised away: log p(token) - log(1 - p(end)) at the same positions, by hand
    from eval.likelihood import end_token_ids

    ends = end_token_ids(tok)
    assert tok.eos_token_id in ends
    positions = logp[len(prompt_ids) - 1:]
    not_end = torch.log1p(-positions[:, ends].exp().sum(-1))
    assert batched[0].nll_no_end == pytest.approx(float((token_nll[len(prompt_ids) - 1:] + not_end).mean()), abs=1e-4)
    assert all(r.nll_no_end <= r.nll + 1e-9 for r in batched), "removing the end's mass never lowers a token's share"


@needs_torch
def test_a_judge_free_eval_stores_the_reference_nll_and_compares_it(default_run, tiny_models, tmp_path, capsys):
    from eval.runner import load_eval_config, run_eval
    from tests.conftest import run_cli

    db = tmp_path / "store.duckdb"
    shutil.copy(default_run[1], db)
    runs = []
    for model in tiny_models:
        cfg = load_eval_config(None, eval_files=[str(ROOT / "data/eval/elyza_style.jsonl")], limit=4, model=str(model),
                               db=str(db))
        runs.append(run_eval(cfg, log=lambda m: None))
    assert all(r["graded"] == 0 and r["reference_nll_items"] == 4 for r in runs), "no judge: nothing generated"
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT item_id, score, answer, ref_nll, ref_tokens FROM eval_results WHERE eval_run_id = ?",
                       [runs[0]["eval_run_id"]]).fetchall()
    mean = con.execute("SELECT mean_ref_nll FROM eval_runs WHERE eval_run_id = ?", [runs[0]["eval_run_id"]]).fetchone()
    con.close()
    assert len(rows) == 4 and all(r[1] is None and r[2] is None and r[3] > 0 and r[4] > 0 for r in rows)
    assert mean[0] == pytest.approx(np.mean([r[3] for r in rows]))
    capsys.readouterr()
    assert run_cli("compare", runs[0]["eval_run_id"], runs[1]["eval_run_id"], "--metric", "ref_nll",
                   "--db", str(db)) == 0
    out = capsys.readouterr().out
    assert "lower is better" in out and "Paired items: 4" in out
    with pytest.raises(Exception, match="nothing to measure"):
        load_eval_config(None, reference_nll=False, model="x")


@needs_torch
def test_an_experiment_with_seeds_trains_each_arm_per_seed_and_pools_the_pairs(default_run, tmp_path):
    from eval.experiment import load_experiment_config, run_experiment

    db = tmp_path / "store.duckdb"
    shutil.copy(default_run[1], db)
    train = yaml.safe_load((ROOT / "train/configs/cpu-smoke.yaml").read_text(encoding="utf-8"))
    train["model"]["model_name_or_path"] = str(tmp_path / "tiny")
    train["training"].update(max_steps=2, logging_steps=1, disable_tqdm=True)
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train, allow_unicode=True), encoding="utf-8")
    ev = yaml.safe_load((ROOT / "eval/configs/eval-cpu-smoke.yaml").read_text(encoding="utf-8"))
    ev.update(limit=2, eval_files=[ev["eval_files"][0]])
    ev["generation"]["max_new_tokens"] = 4
    ev["judge"]["model"] = str(tmp_path / "tiny")
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(ev, allow_unicode=True), encoding="utf-8")
    exp = yaml.safe_load((ROOT / "eval/configs/experiment-cpu-smoke.yaml").read_text(encoding="utf-8"))
    exp.update(db=str(db), k=20, seeds=[0, 1], baselines=["random"], train_config=str(tmp_path / "train.yaml"),
               eval_config=str(tmp_path / "eval.yaml"), out_dir=str(tmp_path / "runs"))
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp, allow_unicode=True), encoding="utf-8")

    result = run_experiment(load_experiment_config(tmp_path / "exp.yaml"), log=lambda m: None)
    assert sorted(result["train_runs_by_seed"]) == [("random", 0), ("random", 1), ("topk", 0), ("topk", 1)]
    con = duckdb.connect(str(db), read_only=True)
    subsets = dict(con.execute("SELECT subset, count(*) FROM train_runs WHERE subset LIKE 'cpu-smoke-%' GROUP BY 1"
                               ).fetchall())
    assert subsets == {"cpu-smoke-topk": 2, "cpu-smoke-random-s0": 1, "cpu-smoke-random-s1": 1}, \
        "top-k trained twice on the same records, random drawn again per seed"
    drawn = [set(r[0] for r in con.execute("SELECT record_id FROM subset_members WHERE subset = ?",
                                            [f"cpu-smoke-random-s{s}"]).fetchall()) for s in (0, 1)]
    assert drawn[0] != drawn[1]
    nll = result["against"]["random"]["ref_nll"]
    assert nll.n == 2 * 2 and nll.ci_low <= nll.diff <= nll.ci_high, "2 ELYZA items under each of 2 seeds, paired"
    assert "seeds 0, 1 pooled, paired by (seed, item)" in (tmp_path / "runs/comparison.md").read_text(encoding="utf-8")
    con.close()
    # run again: its out_dir holds these train runs, and its subsets were trained on: both would be replaced
    from core.errors import JcurateError

    with pytest.raises(JcurateError, match=rf"out_dir {tmp_path / 'runs'} holds the train runs of an earlier "
                                           r"experiment \(topk-s0, random-s0, topk-s1, random-s1\)"):
        run_experiment(load_experiment_config(tmp_path / "exp.yaml"), log=lambda m: None)
    exp["out_dir"] = str(tmp_path / "runs2")
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp, allow_unicode=True), encoding="utf-8")
    with pytest.raises(JcurateError, match=r"subsets cpu-smoke-random-s0 \(train run train-.*were trained on already"):
        run_experiment(load_experiment_config(tmp_path / "exp.yaml"), log=lambda m: None)
    assert not (tmp_path / "runs2").exists()


def test_an_unknown_experiment_baseline_is_named(tmp_path):
    from core.errors import JcurateError
    from eval.experiment import load_experiment_config

    (tmp_path / "exp.yaml").write_text("k: 10\nbaselines: [random, shortest]\n", encoding="utf-8")
    with pytest.raises(JcurateError, match=r"exp.yaml: baselines must be one or more of random, longest"):
        load_experiment_config(tmp_path / "exp.yaml")
    (tmp_path / "exp.yaml").write_text("k: 10\nseeds: [0, 0]\n", encoding="utf-8")
    with pytest.raises(JcurateError, match=r"exp.yaml: seeds must be distinct integers"):
        load_experiment_config(tmp_path / "exp.yaml")


def test_an_eval_file_not_in_utf8_stops_and_a_repeated_id_is_a_bad_row(tmp_path):
    from core.errors import JcurateError

    rows = [{"id": 1, "input": "日本の首都はどこですか？", "output": "東京です。", "eval_aspect": "東京なら5点"},
            {"id": 2, "input": "富士山の高さは？", "output": "3776メートルです。", "eval_aspect": "正確なら5点"}]
    sjis = tmp_path / "sjis.jsonl"
    sjis.write_bytes("\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode("shift_jis"))
    with pytest.raises(JcurateError, match=rf"eval file {sjis} line 1: not UTF-8 text"):
        load_tasks(sjis)
    repeated = tmp_path / "repeated.jsonl"  # a BOM, and the second row under the first one's id
    repeated.write_text("\ufeff" + "\n".join(json.dumps({**r, "id": 1}, ensure_ascii=False) for r in rows),
                        encoding="utf-8")
    warnings = []
    items = load_tasks(repeated, warn=warnings.append)
    assert [i.item_id for i in items] == ["repeated:1"] and items[0].turns == [rows[0]["input"]]
    assert warnings == [f"skipped bad eval row: {repeated} line 2: id '1' repeats line 1's"]


@needs_torch
def test_an_eval_of_a_train_run_skips_bad_rows_and_names_its_numbers(default_run, tmp_path, capsys):
    from tests.conftest import run_cli
    from train.config import load_train_config
    from train.sft import run_training
    from train.tiny import build_tiny_model

    db = tmp_path / "store.duckdb"
    shutil.copy(default_run[1], db)
    assert run_cli("subset", "--name", "few", "--license-use", "commercial", "--top-k", "8", "--db", str(db)) == 0
    train = {"model": {"model_name_or_path": str(build_tiny_model(tmp_path / "tiny")), "dtype": "float32"},
             "data": {"subset": "few", "db": str(db), "eval_fraction": 0.0},
             "training": {"output_dir": str(tmp_path / "arm"), "max_steps": 1, "per_device_train_batch_size": 4,
                          "max_length": 64, "disable_tqdm": True}}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train), encoding="utf-8")
    train_run = run_training(load_train_config(tmp_path / "train.yaml"), log=lambda m: None)["train_run_id"]
    lines = (ROOT / "data/eval/elyza_style.jsonl").read_text(encoding="utf-8").splitlines()[:2]
    eval_file = tmp_path / "with_a_bad_row.jsonl"
    eval_file.write_text("\n".join([lines[0], '{"input": "閉じていない', lines[1]]) + "\n", encoding="utf-8")
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump({"eval_files": [str(eval_file)], "judge": {"model": None}}),
                                        encoding="utf-8")
    capsys.readouterr()
    assert run_cli("eval", "--config", str(tmp_path / "eval.yaml"), "--train-run", train_run, "--db", str(db)) == 0
    out, err = capsys.readouterr()
    assert f"skipped bad eval row: {eval_file} line 2" in err, "reported by line and skipped, as the docs say"
    assert "no judge scores (no judge.model); reference NLL " in out
    assert "nats/token on 2 items (lower is better); 0 training record(s) overlap the eval set" in out
    # two eval files of the same name: their items' ids would collide
    (tmp_path / "other").mkdir()
    shutil.copy(eval_file, tmp_path / "other" / eval_file.name)
    (tmp_path / "eval2.yaml").write_text(yaml.safe_dump({"eval_files": [str(eval_file), str(tmp_path / "other" /
                                                                                           eval_file.name)],
                                                         "judge": {"model": None}}), encoding="utf-8")
    assert run_cli("eval", "--config", str(tmp_path / "eval2.yaml"), "--train-run", train_run, "--db", str(db)) == 2
    assert "have the same name 'with_a_bad_row'" in capsys.readouterr().err


@needs_torch
def test_compare_says_what_it_left_unpaired_and_what_differs_beside_the_model(default_run, tiny_models, tmp_path,
                                                                               capsys):
    from eval.runner import load_eval_config, run_eval
    from tests.conftest import run_cli

    db = tmp_path / "store.duckdb"
    shutil.copy(default_run[1], db)
    runs = [run_eval(load_eval_config(None, eval_files=[str(ROOT / "data/eval/elyza_style.jsonl")], limit=limit,
                                      model=str(model), db=str(db)), log=lambda m: None)["eval_run_id"]
            for model, limit in zip(tiny_models, (2, 4))]
    capsys.readouterr()
    assert run_cli("compare", *runs, "--metric", "ref_nll", "--db", str(db)) == 0
    out, err = capsys.readouterr()
    assert "Paired items: 2 (0 item(s) of A and 2 of B have no pair in the other run and are left out" in out
    assert "> warning: eval settings differ: limit 2 vs 4" in out
    assert "warning: only 2 item(s) are in both runs: 0 of A's and 2 of B's are left out" in err
    # --out writes the report (with the default --format it was ignored, the report only printed)
    assert run_cli("compare", *runs, "--metric", "ref_nll", "--out", str(tmp_path / "r.md"), "--db", str(db)) == 0
    assert capsys.readouterr().out == f"report: {tmp_path / 'r.md'}\n"
    assert (tmp_path / "r.md").read_text(encoding="utf-8").startswith(f"# {runs[1]} vs {runs[0]}")


@needs_torch
def test_an_experiment_stops_before_training_on_arms_that_are_the_same_records_or_a_bad_eval_config(default_run,
                                                                                                    tmp_path):
    from core.errors import JcurateError
    from eval.experiment import load_experiment_config, run_experiment

    db = tmp_path / "store.duckdb"
    shutil.copy(default_run[1], db)
    train = yaml.safe_load((ROOT / "train/configs/cpu-smoke.yaml").read_text(encoding="utf-8"))
    train["model"]["model_name_or_path"] = str(tmp_path / "tiny")
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train, allow_unicode=True), encoding="utf-8")
    exp = {"name": "big", "db": str(db), "license_use": "commercial", "k": 100_000, "baselines": ["random"],
           "train_config": str(tmp_path / "train.yaml"), "eval_config": str(ROOT / "eval/configs/eval-cpu-smoke.yaml"),
           "out_dir": str(tmp_path / "runs")}

    def experiment(**changes):
        """Writes the experiment config with ``changes`` and runs it."""
        exp.update(changes)
        (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp), encoding="utf-8")
        run_experiment(load_experiment_config(tmp_path / "exp.yaml"), log=lambda m: None)

    # k above the pool: every arm is the whole pool, top-k and random the same records
    with pytest.raises(JcurateError, match=r"top-k and random hold the same \d+ records .* Nothing was trained"):
        experiment()
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM train_runs").fetchone()[0] == 0
    con.close()
    # an eval config that does not load stops the experiment before any subset, not after the training
    with pytest.raises(JcurateError, match=r"eval config not found"):
        experiment(name="late", k=20, eval_config=str(tmp_path / "no-such-eval.yaml"))
    train["training"]["max_step"] = 3
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train, allow_unicode=True), encoding="utf-8")
    with pytest.raises(JcurateError, match=rf"train config {tmp_path / 'train.yaml'}: config key 'training.max_step'"):
        experiment(eval_config=str(ROOT / "eval/configs/eval-cpu-smoke.yaml"))
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM subsets WHERE name LIKE 'late-%'").fetchone()[0] == 0
    con.close()
    # a misspelt license_use is named as the config key it is, not as a command-line flag
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump({**exp, "license_use": "comercial"}), encoding="utf-8")
    with pytest.raises(JcurateError, match=r"exp.yaml: config key 'license_use' must be one of commercial, "
                                           r"non-commercial, academic .* got 'comercial'"):
        load_experiment_config(tmp_path / "exp.yaml")


@needs_torch
def test_an_eval_of_both_shapes_stores_each_scales_mean_in_its_own_column(tiny_models, tmp_path):
    """ELYZA answers are graded 1-5, MT-Bench turns 1-10: eval_runs keeps a mean per scale (mean_score mixes
    them), also in a store written before those columns, which gains them."""
    from eval.runner import load_eval_config, run_eval

    db = tmp_path / "store.duckdb"
    older = duckdb.connect(str(db))  # eval_runs as a store from before the per-scale columns has it
    older.execute("""CREATE TABLE eval_runs (
        eval_run_id VARCHAR PRIMARY KEY, train_run_id VARCHAR, model VARCHAR, adapter VARCHAR, eval_files JSON,
        judge_model VARCHAR, config JSON, decont_overlap INTEGER, mean_score DOUBLE, created_at TIMESTAMPTZ)""")
    older.close()
    tiny = str(tiny_models[0])
    cfg = load_eval_config(None, eval_files=[str(ROOT / "data/eval/elyza_style.jsonl"),
                                             str(ROOT / "data/eval/mt_bench_style.jsonl")],
                           limit=2, model=tiny, backend="transformers", db=str(db), reference_nll=False,
                           generation={"max_new_tokens": 4}, judge={"backend": "transformers", "model": tiny})
    result = run_eval(cfg, log=lambda m: None)
    con = duckdb.connect(str(db), read_only=True)
    scores = con.execute("SELECT item_id, score FROM eval_results WHERE eval_run_id = ?",
                         [result["eval_run_id"]]).fetchall()
    shapes = dict(con.execute("SELECT item_id, shape FROM eval_results WHERE eval_run_id = ?",
                              [result["eval_run_id"]]).fetchall())
    assert shapes == {item: "elyza" if item.startswith("elyza_style:") else "mt-bench" for item, _ in scores}, \
        "each result's shape, so its judge's scale, stored"
    mixed, elyza, mt_bench = con.execute("""SELECT mean_score, mean_score_elyza, mean_score_mt_bench FROM eval_runs
                                             WHERE eval_run_id = ?""", [result["eval_run_id"]]).fetchone()
    con.close()
    by_file = {f: [s for item, s in scores if item.startswith(f + ":")] for f in ("elyza_style", "mt_bench_style")}
    assert len(by_file["elyza_style"]) == 2 and len(by_file["mt_bench_style"]) == 2 * 2, "2 items, 2 turns each"
    assert all(s is not None for s in by_file["elyza_style"] + by_file["mt_bench_style"])
    assert elyza == pytest.approx(np.mean(by_file["elyza_style"])) and 1 <= elyza <= 5
    assert mt_bench == pytest.approx(np.mean(by_file["mt_bench_style"])) and 1 <= mt_bench <= 10
    assert mixed == pytest.approx(np.mean(by_file["elyza_style"] + by_file["mt_bench_style"])), "kept as it was"
    assert result["mean_by_shape"] == {"elyza": (pytest.approx(elyza), 2), "mt-bench": (pytest.approx(mt_bench), 4)}
    assert result["mean_score_elyza"] == pytest.approx(elyza) and result["mean_score_mt_bench"] == pytest.approx(mt_bench)
    assert "mean" not in result, "the result holds no mean of both scales"


def _store_eval_run(con, eval_run: str, eval_files: list[str], results: dict[str, tuple]) -> None:
    """An eval run as ``run_eval`` stores it; ``results``: item key -> (category, score, ref_nll, shape)."""
    from store.rows import insert_row, insert_rows

    insert_row(con, "eval_runs", dict(eval_run_id=eval_run, model="m", eval_files=json.dumps(eval_files),
                                      config=json.dumps({"eval_files": eval_files}), created_at="2026-01-01"))
    insert_rows(con, "eval_results", [dict(eval_run_id=eval_run, item_id=key, category=cat, score=score, ref_nll=nll,
                                           shape=shape) for key, (cat, score, nll, shape) in results.items()])


def test_compare_on_the_judges_score_compares_each_scale_apart_and_never_pools_them(tmp_path, capsys):
    """ELYZA answers are graded 1-5, MT-Bench turns 1-10: `jcurate compare --metric score` gives each scale its
    means and paired difference with its interval (items both runs scored), and no number of both; --metric
    ref_nll (nats/token, one scale) is compared in one, as before."""
    from store.connection import connect
    from tests.conftest import run_cli

    elyza_a, elyza_b = [3, 4, 2, 5, 3], [4, 4, 3, 5, 4]  # B - A: +0.6
    mt_a, mt_b = [8, 6, 9, 7], [6, 5, 8, 7]  # B - A: -1.0 (pooled with ELYZA's: -0.111)
    mt_keys = ["mt:1#t1", "mt:1#t2", "mt:2#t1", "mt:2#t2"]
    runs = {"eval-a": {**{f"el:{i}#t1": ("elyza", s, 2.0 + i / 10, "elyza") for i, s in enumerate(elyza_a)},
                       **{k: ("writing", s, 1.5 if k.endswith("#t1") else None, "mt-bench") for k, s in zip(mt_keys, mt_a)},
                       "mt:3#t1": ("math", 10.0, None, "mt-bench")},  # in A only
            "eval-b": {**{f"el:{i}#t1": ("elyza", s, 1.9 + i / 10, "elyza") for i, s in enumerate(elyza_b)},
                       **{k: ("writing", s, 1.7 if k.endswith("#t1") else None, "mt-bench") for k, s in zip(mt_keys, mt_b)},
                       "el:9#t1": ("elyza", 1.0, None, "elyza")}}  # in B only
    db = tmp_path / "store.duckdb"
    con = connect(db)
    for run, results in runs.items():
        _store_eval_run(con, run, ["el.jsonl", "mt.jsonl"], results)
    con.close()

    capsys.readouterr()
    assert run_cli("compare", "eval-a", "eval-b", "--db", str(db)) == 0
    out, err = capsys.readouterr()
    assert "Paired items: 9 (1 item(s) of A and 1 of B have no pair in the other run" in out
    assert "warning: only 9 item(s) are in both runs: 1 of A's and 1 of B's are left out" in err
    elyza, mt_bench = out.split("## ELYZA shape, 1-5: 5 paired item(s)")[1].split("## MT-Bench shape, 1-10: 4 paired item(s)")
    for section, a, b in ((elyza, elyza_a, elyza_b), (mt_bench, mt_a, mt_b)):
        diffs = np.array(b, dtype=float) - np.array(a, dtype=float)
        low, high = bootstrap_ci(diffs)
        assert f"| A: eval-a | {np.mean(a):.4f} |" in section and f"| B: eval-b | {np.mean(b):.4f} |" in section
        assert f"Mean difference B - A: **{diffs.mean():+.4f}** (bootstrap 95% CI {low:+.4f} .. {high:+.4f})" in section
    assert "| elyza | 3.40 | 4.00 | 5 |" in elyza and "| writing | 7.50 | 6.50 | 4 |" in mt_bench
    pooled = np.mean(np.r_[elyza_b, mt_b]) - np.mean(np.r_[elyza_a, mt_a])
    assert f"{pooled:+.4f}" not in out and f"{np.mean(elyza_a + mt_a):.4f}" not in out, "no number of both scales"
    assert out.count("Mean difference") == 2

    # the reference NLL, on one scale: one comparison, as before
    assert run_cli("compare", "eval-a", "eval-b", "--metric", "ref_nll", "--db", str(db)) == 0
    out = capsys.readouterr().out
    assert "Paired items: 7" in out and out.count("Mean difference") == 1 and "## " not in out
    nll_diffs = np.array([-0.1] * 5 + [0.2, 0.2])
    assert f"Mean difference B - A: **{nll_diffs.mean():+.4f}**" in out

    # a run in one scale only: the other scale is named, not compared
    con = connect(db)
    _store_eval_run(con, "eval-c", ["mt.jsonl"], {k: ("writing", 5.0, None, "mt-bench") for k in mt_keys})
    con.close()
    assert run_cli("compare", "eval-a", "eval-c", "--db", str(db)) == 0
    out = capsys.readouterr().out
    assert "## MT-Bench shape, 1-10: 4 paired item(s)" in out and out.count("Mean difference") == 1
    assert "## ELYZA shape, 1-5: no item with a score in both runs (5 in A, 0 in B): not compared" in out


def test_compare_reads_the_scale_of_an_older_stores_results_from_its_eval_files(tmp_path, capsys):
    """A store from before eval_results.shape: each scored item's shape is read again from the eval run's eval
    files (results are stored by the file's name and the row's id); an item not found there is refused."""
    from store.connection import connect
    from tests.conftest import run_cli

    el, mt = tmp_path / "old_el.jsonl", tmp_path / "old_mt.jsonl"
    el.write_text("\n".join(json.dumps({"id": i, "input": f"問{i}", "output": "答"}, ensure_ascii=False)
                            for i in (1, 2)), encoding="utf-8")
    mt.write_text(json.dumps({"question_id": 1, "turns": ["一", "二"]}, ensure_ascii=False), encoding="utf-8")
    db = tmp_path / "store.duckdb"
    con = connect(db)
    for run, scores in (("old-a", (2, 3, 9, 7)), ("old-b", (4, 4, 5, 6))):
        _store_eval_run(con, run, [str(el), str(mt)], dict(zip(["old_el:1#t1", "old_el:2#t1", "old_mt:1#t1",
                                                                "old_mt:1#t2"], [("c", s, None, None) for s in scores])))
    con.close()
    older = duckdb.connect(str(db))
    older.execute("ALTER TABLE eval_results DROP COLUMN shape")  # as the store was before the column
    older.close()
    capsys.readouterr()
    assert run_cli("compare", "old-a", "old-b", "--db", str(db)) == 0
    out = capsys.readouterr().out
    assert "## ELYZA shape, 1-5: 2 paired item(s)" in out and "Mean difference B - A: **+1.5000**" in out
    assert "## MT-Bench shape, 1-10: 2 paired item(s)" in out and "Mean difference B - A: **-2.5000**" in out
    mt.unlink()
    assert run_cli("compare", "old-a", "old-b", "--db", str(db)) == 2
    err = capsys.readouterr().err
    assert "eval run old-a stored no shape for its results" in err and "2 of them (old_mt:1#t1, ...)" in err
    assert "cannot be told" in err and err.count("\n") == 1
