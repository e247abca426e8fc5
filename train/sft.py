"""``jcurate train``: TRL ``SFTTrainer`` + PEFT on a stored subset, with its lineage in the store."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

from core.errors import JcurateError, first_line
from store.ids import new_id
from train.chat_template import TEMPLATES
from train.config import TrainJob
from train.data import load_records, split
from train.resources import estimate, peak_ram_mb, peak_vram_mb
from train.tiny import build_tiny_model


def _chat_template(job: TrainJob, tokenizer) -> str:
    name = job.data.chat_template
    if name in TEMPLATES:
        return TEMPLATES[name]
    template = Path(name).read_text(encoding="utf-8") if name != "model" else tokenizer.chat_template
    if not template:
        raise JcurateError(f"{job.model.model_name_or_path} has no chat template: use data.chat_template: chatml")
    if job.training.assistant_only_loss and "{% generation %}" not in template:
        raise JcurateError("assistant-only loss needs {% generation %} marks in the chat template; "
                           "use data.chat_template: chatml or add the marks to your template")
    return template


def _peft_config(job: TrainJob):
    if job.method in ("lora", "qlora"):
        from trl import get_peft_config

        return get_peft_config(job.model)
    if job.method == "prompt-tuning":
        from peft import PromptTuningConfig, PromptTuningInit

        pt = job.prompt_tuning
        kwargs = {"task_type": "CAUSAL_LM", "num_virtual_tokens": pt.num_virtual_tokens}
        if pt.init_text:
            kwargs.update(prompt_tuning_init=PromptTuningInit.TEXT, prompt_tuning_init_text=pt.init_text,
                          tokenizer_name_or_path=job.model.model_name_or_path)
        return PromptTuningConfig(**kwargs)
    return None


def _memory_estimate(job: TrainJob, peft_config):
    """Counts parameters on the meta device: nothing is loaded yet."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        cfg = AutoConfig.from_pretrained(job.model.model_name_or_path, revision=job.model.model_revision)
    except (OSError, ValueError) as e:
        raise _model_error(job, e) from None
    with torch.device("meta"):
        meta = AutoModelForCausalLM.from_config(cfg)
    params = sum(p.numel() for p in meta.parameters())
    if peft_config is not None:
        from peft import get_peft_model

        trainable = sum(p.numel() for p in get_peft_model(meta, peft_config).parameters() if p.requires_grad)
    else:
        trainable = params
    dtype = str(job.model.dtype or "float32")
    per_param = 0.5 if job.method == "qlora" else {"bfloat16": 2, "float16": 2}.get(dtype, 4 if dtype != "auto" else 2)
    t = job.training
    seq = t.max_length or 1024
    return estimate(params, trainable, per_param, t.per_device_train_batch_size, seq,
                    getattr(cfg, "hidden_size", 0), getattr(cfg, "num_hidden_layers", 0), t.gradient_checkpointing,
                    act_bytes=2 if t.bf16 or t.fp16 else 4, vocab=getattr(cfg, "vocab_size", 0))


def _load_model(job: TrainJob):
    import torch
    from transformers import AutoModelForCausalLM

    kwargs = {"revision": job.model.model_revision, "dtype": job.model.dtype or "auto"}
    if job.model.attn_implementation:
        kwargs["attn_implementation"] = job.model.attn_implementation
    if job.method == "qlora":
        if not torch.cuda.is_available():
            raise JcurateError("method qlora needs a CUDA GPU and the 'qlora' extra (bitsandbytes); use lora on CPU")
        from trl import get_kbit_device_map, get_quantization_config

        kwargs.update(quantization_config=get_quantization_config(job.model), device_map=get_kbit_device_map())
    return AutoModelForCausalLM.from_pretrained(job.model.model_name_or_path, **kwargs)


# files a train run leaves in its output folder (jcurate's own, and what save_model writes)
RUN_FILES = ("jcurate-train.yaml", "train_log.json", "adapter_model.safetensors", "model.safetensors")


def check_output_dir(job: TrainJob) -> None:
    """Refuses an output folder that holds an earlier train run: that run's row in ``train_runs`` points
    at the folder, so training into it would swap the model behind the earlier run's id (an eval of
    that id would measure this run). Checked before anything loads."""
    out = Path(job.training.output_dir)
    found = next((name for name in RUN_FILES if (out / name).exists()), None)
    if found is None:
        return
    owner = ""
    if job.data.subset and Path(job.data.db).is_file():
        from store.connection import connect

        con = connect(job.data.db, read_only=True)
        try:
            row = con.execute("""SELECT train_run_id FROM train_runs WHERE output_path = ?
                                 ORDER BY started_at DESC LIMIT 1""", [str(out)]).fetchone()
        finally:
            con.close()
        owner = f" (train run {row[0]} in {job.data.db})" if row else ""
    raise JcurateError(f"config key 'training.output_dir': {out} holds an earlier train run{owner}: its {found} "
                       f"would be overwritten and the earlier run's id would point at this one's model. Name a new "
                       f"output_dir, or move the folder aside")


def _model_error(job: TrainJob, e: Exception) -> JcurateError:
    name = job.model.model_name_or_path
    if name.startswith(("/", ".", "~")) or name.count("/") != 1 or Path(name).exists():
        where = (f"no folder {name}" if not Path(name).exists() else
                 f"the folder {name} holds no loadable model and tokenizer ({first_line(e, 200)})")
    else:
        where = (f"{name} is not a local folder and cannot be loaded from the Hugging Face hub or its cache "
                 f"({first_line(e, 200)}); jcurate sets HF_HUB_OFFLINE=1 unless HF_HUB_OFFLINE is set")
    return JcurateError(f"config key 'model.model_name_or_path': {where}")


def check_model(job: TrainJob) -> None:
    """The base model's config loads (a folder, or a hub id in the cache): one small file, no weights."""
    if job.build_tiny_model and not Path(job.model.model_name_or_path).exists():
        return  # built on first use
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(job.model.model_name_or_path, revision=job.model.model_revision)
    except (OSError, ValueError) as e:
        raise _model_error(job, e) from None


def prepare_trainer(job: TrainJob, log=print):
    """Checks, data, memory estimate, model and the SFTTrainer: everything but the training itself."""
    # everything that can be checked without a model is checked first
    records = load_records(job.data)
    model_path = Path(job.model.model_name_or_path)
    if job.build_tiny_model and not model_path.exists():
        log(f"building the tiny offline model at {model_path} (random weights: the numbers mean nothing)")
        build_tiny_model(model_path)

    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    try:
        tokenizer = AutoTokenizer.from_pretrained(job.model.model_name_or_path, revision=job.model.model_revision)
    except (OSError, ValueError) as e:  # no such folder, not in the cache offline, a folder without a tokenizer
        raise _model_error(job, e) from None
    tokenizer.chat_template = _chat_template(job, tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    train_rows, eval_rows = split(records, job.data)
    peft_config = _peft_config(job)
    est = _memory_estimate(job, peft_config)
    log(f"{job.method} on {job.model.model_name_or_path}: {len(train_rows)} train / {len(eval_rows)} eval records")
    log(est.table())

    try:
        model = _load_model(job)
    except OSError as e:  # a folder with a config and tokenizer but no weights
        raise _model_error(job, e) from None
    trainer = SFTTrainer(model=model, args=job.training, train_dataset=Dataset.from_list(train_rows),
                         eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
                         processing_class=tokenizer, peft_config=peft_config)
    log_through(trainer, log)
    return trainer, tokenizer, len(train_rows), len(eval_rows), est


def log_through(trainer, log) -> None:
    """The trainer's periodic logs as one line each through ``log`` (stderr in the CLI): transformers
    prints them as Python dicts on stdout (its printer, or its progress bar's ``write``), where they
    mixed with the command's result line, e.g. ``{'loss': '2.687', 'grad_norm': '1.638', ...}``."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback, TrainerCallback

    class QuietProgress(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            pass

    class LogLines(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in logs.items()
                              if k != "total_flos")
            log(f"step {state.global_step}/{state.max_steps}: {shown}")

    handler = trainer.callback_handler
    if any(isinstance(c, ProgressCallback) for c in handler.callbacks):
        handler.remove_callback(ProgressCallback)
        handler.add_callback(QuietProgress)
    handler.remove_callback(PrinterCallback)
    handler.add_callback(LogLines)


def run_training(job: TrainJob, log=print) -> dict:
    started = datetime.now(timezone.utc)
    trainer, tokenizer, n_train, n_eval, est = prepare_trainer(job, log)
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    metrics = {
        "train_loss_first": losses[0] if losses else None, "train_loss_last": losses[-1] if losses else None,
        "train_loss_mean": result.training_loss, "steps": trainer.state.global_step,
        "train_seconds": round(seconds, 2), "tokens_seen": int(trainer.state.num_input_tokens_seen or 0),
        "peak_ram_mb": round(peak_ram_mb(), 1), "peak_vram_mb": peak_vram_mb(),
        "n_train": n_train, "n_eval": n_eval, "memory_estimate": est.to_dict(),
    }
    metrics["tokens_per_second"] = round(metrics["tokens_seen"] / seconds, 1) if seconds else None
    if n_eval:
        metrics["eval_loss"] = trainer.evaluate().get("eval_loss")
    out = Path(job.training.output_dir)
    trainer.save_model(str(out))
    tokenizer.save_pretrained(str(out))
    resolved = {**job.raw, "method": job.method, "model": {k: v for k, v in vars(job.model).items()},
                "training": job.training.to_dict()}
    (out / "jcurate-train.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(resolved, default=str)),
                                                           allow_unicode=True, sort_keys=False), encoding="utf-8")
    (out / "train_log.json").write_text(json.dumps({"metrics": metrics, "log_history": trainer.state.log_history},
                                                   indent=1, default=str), encoding="utf-8")
    train_run_id = new_id("train", started)
    config_hash = hashlib.sha256(json.dumps(job.raw, sort_keys=True, default=str).encode()).hexdigest()[:16]
    _record(job, train_run_id, config_hash, metrics, out, started, log)
    log(f"trained in {seconds:.1f}s: loss {metrics['train_loss_first']} -> {metrics['train_loss_last']}, "
        f"{metrics['tokens_per_second']} tokens/s, peak RAM {metrics['peak_ram_mb']:.0f} MB"
        + (f", peak VRAM {metrics['peak_vram_mb']:.0f} MB" if metrics["peak_vram_mb"] else ""))
    return {"train_run_id": train_run_id, "output_dir": str(out), **metrics}


def _record(job: TrainJob, train_run_id: str, config_hash: str, metrics: dict, out: Path, started, log) -> None:
    """The train_runs row, and NOTICE.md with the base model's terms, when the data is a stored subset."""
    from licenses.catalogue import load_catalogue
    from licenses.models import resolve_model_license
    from licenses.notice import subset_notice
    from store.connection import connect
    from store.rows import insert_row
    from store.runs import git_commit

    catalogue = load_catalogue()
    base_model = job.model.model_name_or_path
    try:
        base = resolve_model_license(base_model, catalogue, revision=job.model.model_revision).license
    except JcurateError as e:  # trained all the same: the NOTICE says what is missing
        log(f"base model terms: {e}")
        base = None
    if job.data.subset is None:
        (out / "NOTICE.md").write_text(f"# NOTICE\n\nTrained from the file {job.data.file}: jcurate holds no "
                                       f"provenance for it. Base model: {base_model}.\n", encoding="utf-8")
        return
    con = connect(job.data.db)
    try:
        notice = subset_notice(con, job.data.subset, catalogue, base=base, base_model=base_model)
        if base is None:
            notice += (f"\n**Base model {base_model}: its terms are unknown (no model card license, no family rule, "
                       f"no hub_models entry in licenses/catalogue.yaml); declare them before sharing this model.**\n")
        (out / "NOTICE.md").write_text(notice, encoding="utf-8")
        insert_row(con, "train_runs", dict(
            train_run_id=train_run_id, subset=job.data.subset, base_model=base_model,
            base_revision=job.model.model_revision, method=job.method, config_hash=config_hash,
            config=json.dumps(job.raw, default=str), git_commit=git_commit(), metrics=json.dumps(metrics, default=str),
            output_path=str(out), started_at=started, finished_at=datetime.now(timezone.utc)))
    finally:
        con.close()
    log(f"train run {train_run_id} recorded in {job.data.db}")
