"""Bad config, manifest and sources stop with one line naming the key, before any work."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from core.errors import JcurateError
from curate.config import load_config
from curate.reading.manifest import load_manifest
from tests.conftest import ROOT, run_cli


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("text, message", [
    ("language: {min_ja_scor: 0.5}\n", "'language.min_ja_scor': unknown key"),
    ("near_dedup: {n_grams: five}\n", "'near_dedup.n_grams': expected int"),
    ("quality: {max_symbol_ratio: 3}\n", "'quality.max_symbol_ratio': must be between 0 and 1"),
    ("near_dedup: {tokens: words}\n", "'near_dedup.tokens': must be 'chars' or 'fugashi'"),
    ("decontamination: {eval_files: [nope.jsonl]}\n", "'decontamination.eval_files[0]': file not found"),
    ("language: [1, 2]\n", "'language': expected a mapping"),
    ("language: {min_ja_score: 0.5\n", "is not valid YAML"),
    ("scoring: {label_scorer: judgee}\n", "'scoring.label_scorer': must be label or judge, got 'judgee'"),
    ("quality: {min_output_chars: 100, max_output_chars: 10}\n",
     "'quality.min_output_chars': 100 is more than 'quality.max_output_chars' (10), which would drop every record"),
    ("quality: {min_instruction_chars: 30, max_text_chars: 20}\n",
     "'quality.min_instruction_chars': 30 is more than 'quality.max_text_chars' (20)"),
])
def test_bad_config_names_the_key(tmp_path, text, message):
    with pytest.raises(JcurateError, match=re.escape(message)):
        load_config(_write(tmp_path, "c.yaml", text))


@pytest.mark.parametrize("text", ["near_dedup: {n_grams: five}\n", "near_dedup: {min_jaccard: 1.5}\n",
                                  "near_dedup: {tokens: words}\n", "scoring: {label_scorer: judgee}\n"])
def test_every_config_error_names_the_file(tmp_path, text):
    """Type, range and choice errors alike start with the config file."""
    path = _write(tmp_path, "c.yaml", text)
    with pytest.raises(JcurateError, match=f"^{re.escape(str(path))}: config key 'near_dedup|^{re.escape(str(path))}: "
                                           f"config key 'scoring"):
        load_config(path)


def test_ints_are_accepted_for_floats(tmp_path):
    assert load_config(_write(tmp_path, "c.yaml", "language: {min_ja_score: 1}\n")).language.min_ja_score == 1.0


MANIFEST = """sources:
  - id: s
    path: {path}
    format: jsonl
    license: {license}
    fields: {fields}
"""


@pytest.mark.parametrize("license, fields, path, message", [
    ("CC-BY-9.9", "{instruction: instruction, output: output}", "data/sources/alpaca_ja.jsonl",
     "source 's': key 'license': 'CC-BY-9.9' is not in the license catalogue"),
    ("CC0-1.0", "{instruction: instruction, answer: output}", "data/sources/alpaca_ja.jsonl",
     "maps unknown record field\\(s\\) answer"),
    ("CC0-1.0", "{instruction: instruction, output: output}", "data/sources/missing.jsonl",
     "key 'path': no jsonl file found at data/sources/missing.jsonl"),
])
def test_bad_manifest_names_source_and_key(tmp_path, license, fields, path, message):
    manifest = _write(tmp_path, "sources.yaml", MANIFEST.format(path=path, license=license, fields=fields))
    with pytest.raises(JcurateError, match=message):
        load_manifest(manifest)


@pytest.mark.parametrize("written, stored", [("cc-by-4.0", "CC-BY-4.0"), ("apache-2.0", "Apache-2.0"),
                                             ("APACHE-2.0", "Apache-2.0"), ("odc-by", "ODC-BY-1.0")])
def test_a_license_in_another_case_or_the_hub_s_spelling_is_read_as_its_catalogue_id(tmp_path, written, stored):
    manifest = _write(tmp_path, "sources.yaml", MANIFEST.format(
        path="data/sources/alpaca_ja.jsonl", license=written, fields="{instruction: instruction, output: output}")
        + f"    generated_by: {{model: some/model, license: {written}}}\n")
    (source,) = load_manifest(manifest)
    assert (source.license, source.generated_by.license) == (stored, stored)


@pytest.mark.parametrize("written, message", [
    ("cc-by-4", "key 'license': 'cc-by-4' is not in the license catalogue (did you mean CC-BY-4.0? see"),
    ("CC BY-NC 4.0", "key 'license': 'CC BY-NC 4.0' is not in the license catalogue (did you mean CC-BY-NC-4.0? see"),
    ("gpl-3.0", "key 'license': 'gpl-3.0' is not in the license catalogue (see `jcurate licenses list`"),
])
def test_an_unknown_license_spelling_is_refused_with_the_closest_id(tmp_path, written, message):
    manifest = _write(tmp_path, "sources.yaml", MANIFEST.format(
        path="data/sources/alpaca_ja.jsonl", license=written, fields="{instruction: instruction, output: output}"))
    with pytest.raises(JcurateError, match=re.escape(f"source 's': {message}")):
        load_manifest(manifest)


def test_generated_by_an_openai_model_takes_its_terms_and_an_unknown_model_says_the_manifest_key(tmp_path):
    def source(model: str):
        manifest = _write(tmp_path, "sources.yaml", MANIFEST.format(
            path="data/sources/alpaca_ja.jsonl", license="CC-BY-4.0", fields="{instruction: instruction, output: output}")
            + f"    generated_by: {{model: {model}}}\n")
        return load_manifest(manifest)[0]

    assert {source(m).generated_by.license for m in ("gpt-4o", "gpt-3.5-turbo", "o1-mini")} == {"OpenAI-ToU"}
    with pytest.raises(JcurateError) as e:
        source("acme/mystery-7b")
    assert str(e.value).startswith(f"{tmp_path / 'sources.yaml'}: source 's': key 'generated_by': no license known "
                                   f"for model 'acme/mystery-7b': no model card with a license")
    assert str(e.value).endswith("Name its terms in the manifest: generated_by: {model: acme/mystery-7b, license: ID}, "
                                 "ID a license id of `jcurate licenses list` (e.g. Apache-2.0, Llama-3.1, OpenAI-ToU)")
    assert "--base-model" not in str(e.value)


def test_cli_prints_one_line_not_a_traceback(tmp_path):
    manifest = _write(tmp_path, "sources.yaml", MANIFEST.format(
        path="data/sources/alpaca_ja.jsonl", license="CC0-1.0", fields="{instruction: prompt, output: output}"))
    proc = subprocess.run([sys.executable, "-m", "jcurate.cli", "run", "--sources", str(manifest), "--out",
                           str(tmp_path / "out"), "--db", str(tmp_path / "db.duckdb")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("jcurate: error: source 's': field mapping instruction -> 'prompt'")
    assert not (tmp_path / "db.duckdb").exists(), "nothing is written before the inputs are valid"


def test_missing_config_file_is_one_line(tmp_path, capsys):
    assert run_cli("run", "--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o")) == 2
    assert "config file not found" in capsys.readouterr().err


def test_config_example_documents_the_defaults():
    assert load_config(ROOT / "config.example.yaml") == load_config(None)


def test_run_notes_when_no_process_can_cache_bytecode(monkeypatch, tmp_path):
    import importlib.util

    from jcurate.cli import bytecode_note

    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    assert bytecode_note() is None  # Python writes __pycache__ itself
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    compiled = tmp_path / "datatrove.cpython.pyc"
    monkeypatch.setattr(importlib.util, "cache_from_source", lambda path: str(compiled))
    assert "uv sync --compile-bytecode" in bytecode_note()  # nothing compiled and nothing will be
    compiled.write_bytes(b"")
    assert bytecode_note() is None  # installed with bytecode


def test_the_command_ends_with_everything_written(tmp_path):
    """``python -m jcurate.cli`` (as the ``jcurate`` script) ends without the interpreter's teardown
    (``entry``): still status 0, the whole report on a pipe, the store committed and datatrove's log
    complete."""
    import duckdb

    manifest = _write(tmp_path, "sources.yaml", MANIFEST.format(
        path="data/sources/alpaca_ja.jsonl", license="CC0-1.0", fields="{instruction: instruction, output: output}"))
    out, db = tmp_path / "out", tmp_path / "db.duckdb"
    proc = subprocess.run([sys.executable, "-m", "jcurate.cli", "run", "--sources", str(manifest), "--out", str(out),
                           "--db", str(db), "--workers", "1"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[-1].startswith(f"report: {out / 'report.json'}")
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
    assert con.execute("SELECT count(*) FROM records").fetchone()[0] > 100
    con.close()
    log = (out / "work/logs/datatrove.log").read_text(encoding="utf-8")
    last_stage = log.split("===== jcurate stage: dedup-decont =====")[-1].rstrip().splitlines()
    assert len(log.split("===== jcurate stage:")) == 7, "the six stages' logs"
    assert last_stage[-3].endswith("WRITER: 📒 jcurate records"), last_stage[-3:]
    assert last_stage[-1].lstrip().startswith("Stats: {XXXXX.parquet:"), "the last writer's statistics, whole"


def test_the_workers_log_goes_to_the_log_file_not_the_terminal(tmp_path):
    """With several workers (forked from the worker server) datatrove's per-task log reaches
    ``work/logs/datatrove.log``, each stage's under its heading, and not the command's stderr, where
    the progress lines are; the command's output on a pipe ends with it."""
    manifest = _write(tmp_path, "sources.yaml", MANIFEST.format(
        path="data/sources/alpaca_ja.jsonl", license="CC0-1.0", fields="{instruction: instruction, output: output}"))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "jcurate.cli", "run", "--sources", str(manifest), "--out", str(out),
                           "--db", str(tmp_path / "db.duckdb"), "--workers", "2"], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Launching pipeline" not in proc.stderr and "Stats: {" not in proc.stderr, proc.stderr[-2000:]
    assert "[6/6] dedup-decont done" in proc.stderr
    log = (out / "work/logs/datatrove.log").read_text(encoding="utf-8")
    stages = log.split("===== jcurate stage: ")[1:]
    assert [s.split(" =====")[0] for s in stages] == ["filter", "minhash-buckets", "near-pairs", "near-verify", "dedup-plan",
                                                   "dedup-decont"]
    for stage in stages:
        assert "Launching pipeline for rank=" in stage and "tasks completed" in stage, stage[:300]
    assert stages[-1].rstrip().splitlines()[-1].endswith("2/2 tasks completed."), "the last task's lines, whole"

