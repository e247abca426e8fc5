"""SFT on CPU with the tiny offline Llama: LoRA and prompt tuning lower the loss, adapters
round-trip, only assistant tokens carry loss, lineage lands in the store, bad configs fail early."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil

import duckdb
import pytest
import yaml

from core.errors import JcurateError
from tests.conftest import run_cli

pytestmark = pytest.mark.skipif(importlib.util.find_spec("trl") is None,
                                reason="training needs the 'train' extra: uv sync --extra train")
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="module")
def setup(default_run, tmp_path_factory):
    from train.tiny import build_tiny_model

    tmp = tmp_path_factory.mktemp("train")
    db = tmp / "store.duckdb"
    shutil.copy(default_run[1], db)
    assert run_cli("subset", "--name", "sft-small", "--license-use", "commercial", "--top-k", "24", "--score",
                   "classifier", "--db", str(db)) == 0
    return {"db": db, "model": build_tiny_model(tmp / "tiny"), "tmp": tmp}


def write_config(setup, name, **overrides) -> str:
    cfg = {
        "method": "lora",
        "model": {"model_name_or_path": str(setup["model"]), "dtype": "float32", "lora_r": 8, "lora_alpha": 16,
                  "lora_dropout": 0.0, "lora_target_modules": "all-linear"},
        "data": {"subset": "sft-small", "db": str(setup["db"]), "eval_fraction": 0.0},
        "training": {"output_dir": str(setup["tmp"] / name), "max_steps": 30, "per_device_train_batch_size": 4,
                     "learning_rate": 1e-2, "max_length": 128, "logging_steps": 5, "seed": 0,
                     "disable_tqdm": True},
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            cfg.setdefault(key, {}).update(value)
        else:
            cfg[key] = value
    path = setup["tmp"] / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return str(path)


def test_lora_lowers_the_loss_and_records_lineage(setup):
    from train.config import load_train_config
    from train.sft import run_training

    result = run_training(load_train_config(write_config(setup, "lora")), log=lambda m: None)
    assert result["train_loss_last"] < result["train_loss_first"]
    assert result["tokens_per_second"] > 0 and result["peak_ram_mb"] > 0
    assert result["memory_estimate"]["trainable"] < result["memory_estimate"]["params"]
    out = setup["tmp"] / "lora"
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json", "jcurate-train.yaml",
                 "NOTICE.md", "train_log.json"):
        assert (out / name).is_file(), name
    notice = (out / "NOTICE.md").read_text(encoding="utf-8")
    assert "subset `sft-small`" in notice and "Base model" in notice
    con = duckdb.connect(str(setup["db"]), read_only=True)
    row = con.execute("SELECT subset, method, base_model, output_path, metrics FROM train_runs "
                      "WHERE train_run_id = ?", [result["train_run_id"]]).fetchone()
    assert row[:4] == ("sft-small", "lora", str(setup["model"]), str(out))
    assert json.loads(row[4])["steps"] == 30
    # from the model back to every source record and license behind it
    licenses = con.execute("""SELECT DISTINCT rl.license FROM train_runs t JOIN subset_members m ON m.subset = t.subset
                              JOIN record_license rl USING (record_id) WHERE t.train_run_id = ?""",
                           [result["train_run_id"]]).fetchall()
    assert licenses and {r[0] for r in licenses} <= {"CC-BY-4.0", "CC-BY-SA-4.0", "Apache-2.0", "Gemma"}


def test_adapter_reloads_merges_and_generates(setup):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = setup["tmp"] / "lora"
    if not (out / "adapter_model.safetensors").exists():
        pytest.skip("needs the LoRA run of the previous test")
    tok = AutoTokenizer.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(setup["model"], dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(base, out).eval()
    ids = tok.apply_chat_template([{"role": "user", "content": "日本の首都は？"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        adapted = peft_model(ids).logits
    merged = peft_model.merge_and_unload().eval()
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, adapted, atol=1e-4)
        generated = merged.generate(ids, max_new_tokens=5, do_sample=False)
    assert generated.shape[1] == ids.shape[1] + 5


def test_prompt_tuning_lowers_the_loss(setup):
    from train.config import load_train_config
    from train.sft import run_training

    path = write_config(setup, "prompt", method="prompt-tuning",
                        prompt_tuning={"num_virtual_tokens": 8, "init_text": "次の指示に日本語で答えてください。"},
                        training={"learning_rate": 3e-2})
    result = run_training(load_train_config(path), log=lambda m: None)
    assert result["train_loss_last"] < result["train_loss_first"]
    assert json.loads((setup["tmp"] / "prompt" / "adapter_config.json").read_text())["peft_type"] == "PROMPT_TUNING"


def test_only_assistant_tokens_carry_loss(setup):
    from train.config import load_train_config
    from train.sft import prepare_trainer

    trainer, tok, *_ = prepare_trainer(load_train_config(write_config(setup, "mask")), log=lambda m: None)
    example = trainer.train_dataset[0]
    batch = trainer.data_collator([example])
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    mask = (labels != -100).tolist()
    first = mask.index(True)
    assert all(mask[first:]), "single-turn: one contiguous block of assistant tokens, to the end (or truncation)"
    prompt, learned = tok.decode(ids[:first]), tok.decode(ids[first:])
    assert "<|im_start|>user" in prompt and prompt.endswith("<|im_start|>assistant\n")
    assert "<|im_start|>" not in learned and learned.strip()


def test_bad_configs_fail_before_any_model_is_loaded(setup):
    from train.config import load_train_config
    from train.sft import prepare_trainer

    with pytest.raises(JcurateError, match="'training.learning_rat': unknown key for SFTConfig"):
        load_train_config(write_config(setup, "bad1", training={"learning_rat": 1e-3}))
    with pytest.raises(JcurateError, match="'model.lora_rank': unknown key for ModelConfig"):
        load_train_config(write_config(setup, "bad2", model={"lora_rank": 8}))
    job = load_train_config(write_config(setup, "bad3", data={"subset": "no-such-subset"},
                                         model={"model_name_or_path": "/nonexistent/model"}))
    with pytest.raises(JcurateError, match="no subset named 'no-such-subset'"):
        prepare_trainer(job, log=lambda m: None)
    assert run_cli("train", "--config", write_config(setup, "bad4", method="dpo")) == 2


def test_a_key_found_wrong_at_the_data_names_the_config_file(setup, capsys):
    """data.subset is looked up when the data loads: the message names the file the key is in, as the
    errors of the config's own checks do."""
    path = write_config(setup, "bad5", data={"subset": "no-such-subset"})
    capsys.readouterr()
    assert run_cli("train", "--config", path) == 2
    assert f"jcurate: error: {path}: config key 'data.subset': no subset named 'no-such-subset'" in \
        capsys.readouterr().err


def test_a_value_of_the_wrong_type_is_named_before_any_model_is_loaded(setup):
    from train.config import load_train_config

    with pytest.raises(JcurateError, match=r"'training.max_steps': expected an integer, got 'abc'"):
        load_train_config(write_config(setup, "typed1", training={"max_steps": "abc"}))
    with pytest.raises(JcurateError, match=r"'training.bf16': expected true/false or null, got 'no'"):
        load_train_config(write_config(setup, "typed2", training={"bf16": "no"}))
    # YAML reads 3e-3 (no dot) as a string: it is the number the user wrote, as TRL would need it
    path = setup["tmp"] / "typed3.yaml"
    path.write_text(open(write_config(setup, "typed3"), encoding="utf-8").read().replace(
        "learning_rate: 0.01", "learning_rate: 3e-3"), encoding="utf-8")
    assert yaml.safe_load(path.read_text(encoding="utf-8"))["training"]["learning_rate"] == "3e-3"
    assert load_train_config(path).training.learning_rate == 0.003


def test_a_model_that_cannot_be_loaded_is_one_line(setup, capsys):
    empty = setup["tmp"] / "empty-model"
    empty.mkdir(exist_ok=True)
    for name, model, expected in (
            ("nomodel1", str(setup["tmp"] / "no-such-model"), f"no folder {setup['tmp'] / 'no-such-model'}"),
            ("nomodel2", str(empty), f"the folder {empty} holds no loadable model"),
            ("nomodel3", "no-such-org/no-such-model", "no-such-org/no-such-model is not a local folder and cannot be loaded")):
        capsys.readouterr()
        path = write_config(setup, name, model={"model_name_or_path": model})
        assert run_cli("train", "--config", path) == 2
        err = capsys.readouterr().err
        assert f"jcurate: error: {path}: config key 'model.model_name_or_path': {expected}" in err
        assert "Traceback" not in err


def test_train_refuses_an_output_folder_that_holds_an_earlier_run(setup, capsys):
    path = write_config(setup, "again", training={"max_steps": 2})
    assert run_cli("train", "--config", path) == 0
    adapter = setup["tmp"] / "again" / "adapter_model.safetensors"
    before = adapter.read_bytes()
    con = duckdb.connect(str(setup["db"]), read_only=True)
    (first,) = con.execute("SELECT train_run_id FROM train_runs WHERE output_path = ?",
                           [str(setup["tmp"] / "again")]).fetchone()
    con.close()
    capsys.readouterr()
    assert run_cli("train", "--config", write_config(setup, "again", training={"max_steps": 2, "seed": 5})) == 2
    err = capsys.readouterr().err
    assert f"holds an earlier train run (train run {first} in {setup['db']})" in err
    assert adapter.read_bytes() == before, "the earlier run's model is untouched: its id still names it"


def test_train_prints_only_its_result_on_stdout_and_its_progress_as_lines_on_stderr(setup, capsys):
    """The trainer's logs were Python dicts on stdout, mixed with the result line a script reads."""
    capsys.readouterr()
    assert run_cli("train", "--config", write_config(setup, "quiet", training={"max_steps": 4, "logging_steps": 2,
                                                                               "disable_tqdm": False})) == 0
    out, err = capsys.readouterr()
    assert out.count("\n") == 1 and out.startswith("train run ") and "{" not in out
    assert "step 2/4: loss " in err and "step 4/4: loss " in err and "{'loss'" not in err


def test_a_subset_a_train_run_used_is_not_replaced(setup, capsys):
    """`jcurate subset --replace` of a trained subset would change what the train run's lineage links to."""
    assert run_cli("subset", "--name", "sft-replace", "--license-use", "commercial", "--top-k", "12", "--score",
                   "classifier", "--db", str(setup["db"])) == 0
    assert run_cli("train", "--config", write_config(setup, "replace-run", data={"subset": "sft-replace"},
                                                     training={"max_steps": 1})) == 0
    con = duckdb.connect(str(setup["db"]), read_only=True)
    (run,) = con.execute("SELECT train_run_id FROM train_runs WHERE subset = 'sft-replace'").fetchone()
    members = con.execute("SELECT record_id FROM subset_members WHERE subset = 'sft-replace' ORDER BY 1").fetchall()
    con.close()
    capsys.readouterr()
    assert run_cli("subset", "--name", "sft-replace", "--license-use", "commercial", "--random", "12", "--replace",
                   "--db", str(setup["db"])) == 2
    assert f"train run(s) {run} trained on this subset" in capsys.readouterr().err
    con = duckdb.connect(str(setup["db"]), read_only=True)
    after = con.execute("SELECT record_id FROM subset_members WHERE subset = 'sft-replace' ORDER BY 1").fetchall()
    con.close()
    assert after == members
    # a subset no train run used is rebuilt as before
    assert run_cli("subset", "--name", "sft-small-2", "--license-use", "commercial", "--random", "5",
                   "--db", str(setup["db"])) == 0
    assert run_cli("subset", "--name", "sft-small-2", "--license-use", "commercial", "--random", "6", "--replace",
                   "--db", str(setup["db"])) == 0


@pytest.mark.parametrize("name", ["cpu-smoke", "qwen2.5-0.5b-lora", "qwen2.5-0.5b-qlora", "llm-jp-3-1.8b-lora",
                                  "llm-jp-3-1.8b-qlora"])
def test_shipped_recipes_validate(name):
    from tests.conftest import ROOT
    from train.config import load_train_config

    job = load_train_config(ROOT / "train/configs" / f"{name}.yaml")
    assert job.method in ("lora", "qlora") and job.training.assistant_only_loss
