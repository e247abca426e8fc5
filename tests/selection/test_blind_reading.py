"""The blind pairwise reading of the selection benchmark: sampling with a repetition penalty, pairs that hide
the arms, and verdicts unblinded into wins, ties and losses."""

from __future__ import annotations

import argparse
import json

import pytest

from benchmarks.selection import blind_pairs

ARMS = {"model:jquality-v2": "回答甲{}", "random": "回答乙{}", "longest": "回答丙{}"}


def _setup(tmp_path, n_items=6):
    realdata = tmp_path / "realdata"
    (realdata / "eval").mkdir(parents=True)
    rows = [{"id": i, "input": f"質問{i}です。", "output": f"参照{i}"} for i in range(1, n_items + 1)]
    (realdata / "eval" / "elyza_tasks_100.jsonl").write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    out = tmp_path / "out"
    (out / "answers").mkdir(parents=True)
    for arm, text in ARMS.items():
        lines = [json.dumps({"item_id": f"elyza_tasks_100:{i}", "arm": arm, "seed": 0, "answer": text.format(i)})
                 for i in range(1, n_items + 1)]
        (out / "answers" / f"{arm.replace(':', '-')}-s0.jsonl").write_text("\n".join(lines), encoding="utf-8")
    return argparse.Namespace(out=out, default="model:jquality-v2", against=["random", "longest"], seed=0,
                              shares=2, realdata=realdata, name="blind")


def test_pairs_hide_the_arm_and_verdicts_unblind_to_wins_ties_losses(tmp_path, capsys):
    args = _setup(tmp_path)
    blind_pairs.make(args)
    shares = [(args.out / "blind" / f"share-{s}.md").read_text(encoding="utf-8") for s in range(2)]
    assert not any(name in text for text in shares for name in ("jquality", "random", "longest")), \
        "no arm's name reaches the readers"
    assert all(f"回答{x}" in "".join(shares) for x in "甲乙丙")
    key = json.loads((args.out / "blind_key.json").read_text(encoding="utf-8"))["pairs"]
    assert len(key) == 12 and not (args.out / "blind" / "key.json").exists(), "the key is kept out of the readers' folder"
    for other in ("random", "longest"):
        items = [k["item_id"] for k in key.values() if other in (k["A"], k["B"])]
        assert sorted(items) == sorted(f"elyza_tasks_100:{i}" for i in range(1, 7)), "each item once per comparison"
    assert {k["A"] for k in key.values()} >= {"model:jquality-v2", "random"}, "the default is shown first or second"

    # readers prefer the default against random, and tie every pair against longest
    lines = {0: [], 1: []}
    for pid, k in key.items():
        share = int(pid.split("-")[0])
        if "random" in (k["A"], k["B"]):
            verdict = "A" if k["A"] == "model:jquality-v2" else "B"
        else:
            verdict = "tie"
        lines[share].append(f"{pid}\t{verdict}\tread it")
    for share, rows in lines.items():
        (args.out / "blind" / f"verdicts-{share}.tsv").write_text("\n".join(rows), encoding="utf-8")
    blind_pairs.score(args)
    table = (args.out / "blind" / "results.md").read_text(encoding="utf-8")
    assert "| random | 6 | 6 | 0 | 0 | 1.00" in table
    assert "| longest | 6 | 0 | 6 | 0 | –" in table


def test_a_bad_verdict_line_names_its_file_and_line(tmp_path):
    args = _setup(tmp_path, n_items=2)
    blind_pairs.make(args)
    (args.out / "blind" / "verdicts-0.tsv").write_text("0-000\tA\tfine\n0-001\tbetter\twhy\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"verdicts-0.tsv line 2"):
        blind_pairs.score(args)


def test_a_repetition_penalty_reaches_the_decoder(tmp_path):
    from eval.generate import GenerationConfig, TransformersGenerator
    from train.tiny import build_tiny_model

    gen = TransformersGenerator(str(build_tiny_model(tmp_path / "tiny")))
    conv = [[{"role": "user", "content": "日本の首都はどこですか。"}]]

    def answer(penalty: float) -> str:
        return gen.generate(conv, GenerationConfig(max_new_tokens=24, repetition_penalty=penalty))[0]

    assert answer(1.0) == answer(1.0), "greedy decoding is deterministic"
    assert answer(5.0) != answer(1.0), "the penalty changes what greedy decoding picks"


def test_a_second_reading_leaves_out_what_the_first_holds_and_scores_pooled(tmp_path):
    args = _setup(tmp_path, n_items=6)
    first_answers = args.out / "answers" / "model-jquality-v2-s0.jsonl"
    all_lines = first_answers.read_text(encoding="utf-8").splitlines()
    first_answers.write_text("\n".join(all_lines[:2]), encoding="utf-8")  # the default answered 2 items so far
    blind_pairs.make(args)
    first = json.loads((args.out / "blind_key.json").read_text(encoding="utf-8"))["pairs"]
    assert len(first) == 4
    for pid, k in first.items():  # the first reading: the default loses every pair
        verdict = "B" if k["A"] == "model:jquality-v2" else "A"
        with (args.out / "blind" / f"verdicts-{pid.split('-')[0]}.tsv").open("a", encoding="utf-8") as f:
            f.write(f"{pid}\t{verdict}\tread it\n")

    first_answers.write_text("\n".join(all_lines), encoding="utf-8")  # all 6 answered now
    more = argparse.Namespace(**{**vars(args), "name": "blind-more", "after": ["blind"]})
    blind_pairs.make(more)
    second = json.loads((args.out / "blind-more_key.json").read_text(encoding="utf-8"))["pairs"]
    seen = {(k["item_id"], k["A"], k["B"]) for k in first.values()}
    assert len(second) == 8 and not seen & {(k["item_id"], k["A"], k["B"]) for k in second.values()}, \
        "no comparison is shown twice"
    for pid, k in second.items():  # the second: the default wins every pair
        verdict = "A" if k["A"] == "model:jquality-v2" else "B"
        with (args.out / "blind-more" / f"verdicts-{pid.split('-')[0]}.tsv").open("a", encoding="utf-8") as f:
            f.write(f"{pid}\t{verdict}\tread it\n")

    blind_pairs.score(argparse.Namespace(**{**vars(args), "name": ["blind", "blind-more"]}))
    table = (args.out / "blind-more" / "results.md").read_text(encoding="utf-8")
    assert "12 of 12 pairs read (readings blind, blind-more pooled)" in table
    assert "| random | 6 | 4 | 0 | 2 | 0.67" in table and "| longest | 6 | 4 | 0 | 2 | 0.67" in table

    other = argparse.Namespace(**{**vars(args), "name": "blind-x", "after": ["blind"], "default": "random",
                                  "against": ["longest"]})
    with pytest.raises(SystemExit, match="same arm and seed"):
        blind_pairs.make(other)


def test_a_second_reading_of_the_same_pairs_and_how_far_the_readings_agree(tmp_path, capsys):
    args = _setup(tmp_path, n_items=4)
    args.against = ["random"]
    blind_pairs.make(args)
    blind_pairs.reread(argparse.Namespace(out=args.out, name=["blind"], to="again"))
    for s in range(2):
        assert (args.out / "again" / f"share-{s}.md").read_text(encoding="utf-8") == \
            (args.out / "blind" / f"share-{s}.md").read_text(encoding="utf-8"), "the same pairs, order and sides"
    key = json.loads((args.out / "again_key.json").read_text(encoding="utf-8"))["pairs"]
    assert key == json.loads((args.out / "blind_key.json").read_text(encoding="utf-8"))["pairs"]
    default_side = {pid: "A" if k["A"] == "model:jquality-v2" else "B" for pid, k in key.items()}
    other_side = {pid: "B" if side == "A" else "A" for pid, side in default_side.items()}
    pids = sorted(key)
    # first reading: win, win, tie, loss; second: win, tie, tie, win
    first = [default_side[pids[0]], default_side[pids[1]], "tie", other_side[pids[3]]]
    second = [default_side[pids[0]], "tie", "tie", default_side[pids[3]]]
    for name, verdicts in (("blind", first), ("again", second)):
        for s in range(2):
            rows = [f"{pid}\t{v}\twhy" for pid, v in zip(pids, verdicts) if pid.startswith(f"{s}-")]
            (args.out / name / f"verdicts-{s}.tsv").write_text("\n".join(rows), encoding="utf-8")
    blind_pairs.agree(argparse.Namespace(out=args.out, name=["blind", "again"]))
    table = (args.out / "again" / "agreement.md").read_text(encoding="utf-8")
    # outcomes (1, 1, 0, -1) and (1, 0, 0, 1): 2 of 4 the same; chance 0.5*0.5 + 0.25*0.5 + 0.25*0 = 0.375
    kappa = (0.5 - 0.375) / (1 - 0.375)
    assert f"| random | 4 | 2 (0.50) | {kappa:.2f} | 2 / 1 / 1 | 2 / 2 / 0 | 1 | 1 |" in table
    with pytest.raises(SystemExit, match="holds verdicts already"):
        blind_pairs.reread(argparse.Namespace(out=args.out, name=["blind"], to="again"))
