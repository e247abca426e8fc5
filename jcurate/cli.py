"""The ``jcurate`` command line: a thin layer over the library.

Bad input the user can fix (``JcurateError``) prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

from core.errors import JcurateError


def bytecode_note() -> str | None:
    """A hint where no process can cache compiled modules: PYTHONDONTWRITEBYTECODE is set and the
    environment was installed without bytecode, so the run and each of its workers compile ~1,000
    modules from source (1-2 s each)."""
    if not sys.dont_write_bytecode:
        return None
    import importlib.util

    import datatrove

    if Path(importlib.util.cache_from_source(datatrove.__file__)).is_file():
        return None
    return ("note: PYTHONDONTWRITEBYTECODE is set and the environment holds no bytecode, so every process of the "
            "run compiles its modules again (1-2 s each): `uv sync --compile-bytecode` once removes that")


def cmd_run(args) -> int:
    if args.executor == "local" and args.workers > 1:
        from curate.running.worker_server import start_worker_server

        start_worker_server()  # first: it imports the pipeline's modules while this process does
    from curate.config import load_config
    from curate.handover.declarations import check_store_before_run
    from curate.handover.ingest import EarlyRecords, ingest_run
    from curate.reading.manifest import load_manifest
    from curate.running.out_lock import lock_out_folder
    from curate.running.pipeline import FILTER_STAGE_DROPS, STAGES, ExecutorOptions, mark_finished, run_stages
    from curate.running.report import build_report, files_without_rows_lines, format_report, write_report
    from licenses.catalogue import load_catalogue

    started = datetime.now(timezone.utc)
    from store.integrity import damage

    if problem := damage(args.db):  # before any work: a damaged store would fail the run's ingest, at the end
        raise JcurateError(f"the store {args.db} cannot be read ({problem}); nothing was run. Move it aside and run "
                           f"again with a fresh --db; to keep an earlier run's shards, load them into a fresh store: "
                           f"jcurate ingest --out <that run's OUT> --sources <its manifest> --db NEW.duckdb")
    config = load_config(args.config)
    catalogue = load_catalogue()
    sources = load_manifest(args.sources, catalogue)
    relicense = tuple(args.relicense or ())
    check_store_before_run(args.db, sources, str(args.sources), relicense)
    out = Path(args.out)
    lock_out_folder(out)  # held until this process ends, however it ends: one run per --out
    print(f"jcurate run: {len(sources)} source(s) from {args.sources} -> {out} "
          f"(executor {args.executor}, {args.workers} worker(s))", file=sys.stderr)
    if note := bytecode_note():
        print(note, file=sys.stderr)
    for s in sources:
        if s.hub_id:
            print(f"source '{s.id}': hub dataset {s.hub_id} at revision {s.hub_revision}, {len(s.files)} file(s)"
                  + (f", license {s.license} from its dataset card (the manifest names none)"
                     if s.license_from_card else ""), file=sys.stderr)
    options = ExecutorOptions(kind=args.executor, workers=args.workers, slurm=config.slurm, verbose=args.verbose,
                              fresh=args.fresh)
    # the records go into the store while the stages after the filter stage run (curate.handover.ingest.EarlyRecords)
    early = EarlyRecords(args.db, out, FILTER_STAGE_DROPS) if args.executor != "slurm" else None
    try:
        timings = run_stages(sources, config, out, options, log=lambda m: print(m, file=sys.stderr),
                             after_stage=lambda name: early.start() if early and name == "filter" else None)
        if args.executor == "slurm":
            print(f"submitted to Slurm. When the jobs finish: jcurate ingest --out {out} --sources {args.sources} "
                  f"--db {args.db}" + "".join(f" --relicense {r}" for r in relicense))
            return 0
        report = build_report(out, timings, sources)
        for line in files_without_rows_lines(report):
            print(line, file=sys.stderr)
        report["hub_sources"] = {s.id: {"hub": s.hub_id, "revision": s.hub_revision, "license": s.license,
                                        "license_from": "dataset card" if s.license_from_card else "manifest"}
                                 for s in sources if s.hub_id}
        run_id = ingest_run(args.db, out, sources, catalogue, config=config.to_dict(), report=report,
                            sources_file=str(args.sources), executor=args.executor, workers=args.workers,
                            started_at=started, stages=STAGES, early=early, relicense=relicense)
    except BaseException:
        if early is not None:
            early.abort()  # nothing of the run stays in the store
        raise
    report["run_id"] = run_id
    report["scoring"] = score_after_run(args.db, out / "models", config.scoring, run_id,
                                        shipped=(report.get("scoring") or {}).get("shipped"))
    path = write_report(out, report)
    mark_finished(out)
    print(format_report(report))
    print_relicensed(report, run_id)
    print(f"report: {path}   store: {args.db} (run {run_id})")
    return 0


def print_relicensed(report: dict, run_id: str) -> None:
    """One line per source whose declaration the run changed (``--relicense``), to stderr."""
    for c in report.get("relicensed") or []:
        held = f"; subsets holding them: {', '.join(c['subsets'])} (files exported before carry the earlier terms)" \
            if c["subsets"] else ""
        print(f"relicensed source '{c['source_id']}' (run {run_id}, --relicense): its {c['records']} stored record(s) "
              f"are now under {c['to']}, was {c['from']} (run {c['from_run']}){held}", file=sys.stderr)


def score_after_run(db: str, model_dir: Path, scoring, run_id: str, shipped: dict | None = None) -> dict:
    """Scores the run's kept records with the shipped scorer (unless ``shipped``: the workers did and
    the ingest stored them), then trains the classifier on the labels in the store (where there are
    enough) and scores them with it too."""
    from curate.scoring import shipped_scorer
    from curate.scoring.classifier import score_run, train_classifier

    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    if not scoring.shipped:
        shipped = "disabled (scoring.shipped: false)"
    elif shipped:
        log(f"shipped scorer {shipped['model']} scored {shipped['scored']} kept records of {run_id} (in the workers)")
    else:
        shipped = shipped_scorer.score_run(db, run_id, shipped_scorer.ShippedScorer(scoring.shipped_model), log=log)
    result: dict = {"shipped": shipped}
    if not scoring.classifier:
        return {**result, "classifier": "disabled (scoring.classifier: false)"}
    try:
        model = train_classifier(db, model_dir, label_scorer=scoring.label_scorer, min_labels=scoring.min_labels,
                                 log=log)
    except JcurateError as e:
        log(f"classifier skipped: {e}")
        return {**result, "classifier": f"skipped: {e}"}
    n = score_run(db, model["model_id"], run_id, log=log)
    note = ("no LLM judge ran: the classifier learned the labels the sources ship. To use a judge, set `judge:` in "
            "the config (an OpenAI-compatible server such as `vllm serve`, or a transformers model), run "
            "`jcurate judge --sample 500`, then `jcurate classifier train --labels judge` and `jcurate classifier score`.")
    if scoring.label_scorer == "label":
        log(note)
    return {**result, "classifier": model, "scored": n,
            "judge": None if scoring.label_scorer == "label" else "judge labels",
            "note": note if scoring.label_scorer == "label" else None}


def cmd_judge(args) -> int:
    from curate.config import load_config
    from curate.scoring.judge import check_judge_answers, make_judge, run_judge

    if args.sample is None and not args.all:
        raise JcurateError("say how many records to judge: --sample N (stratified per source) or --all")
    config = load_config(args.config)
    judge = make_judge(config.judge)
    check_judge_answers(judge, args.config or "the config (--config)")
    summary = run_judge(args.db, judge, None if args.all else args.sample, seed=args.seed,
                        run_id=args.run, log=lambda m: print(m, file=sys.stderr))
    print(", ".join(f"{k} {v}" for k, v in summary.items()))
    if summary["judged"] and summary["failed"] == summary["judged"]:
        raise JcurateError(f"all {summary['judged']} judgements failed (the reason is above; they are recorded as "
                           f"failed and tried again by the same command): check the judge: section of "
                           f"{args.config or 'the config'} and its server")
    return 0


def cmd_judge_server(args) -> int:
    """llama.cpp's OpenAI-compatible server in the foreground, until Ctrl-C."""
    import time

    from curate.scoring.llama_server import LlamaServer

    server = LlamaServer(model=args.model, alias=args.alias, chat_format=args.chat_format,
                         logits_all=not args.no_logprobs, n_ctx=args.n_ctx, n_threads=args.threads, port=args.port)
    server.start()
    mode = ("constrained choice only (judge.constrained_choice: true, judge.logprobs: false)" if args.no_logprobs
            else "logprobs (--logits_all true: the whole vocabulary at every prompt position, slow on a CPU)")
    print(f"llama.cpp serving {args.model} as {args.alias!r} at {server.base_url}, {mode}; log {server.log_path}. "
          f"Config: judge: {{backend: openai, base_url: {server.base_url}, model: {args.alias}}}. Ctrl-C stops it.",
          file=sys.stderr)
    try:
        while server.process.poll() is None:
            time.sleep(1)
        raise JcurateError(f"llama.cpp's server exited with {server.process.returncode}; its log ends:\n"
                           f"{server.log_tail()}")
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


def cmd_classifier(args) -> int:
    from curate.scoring.classifier import score_run, train_classifier

    if args.classifier_command == "train":
        result = train_classifier(args.db, args.model_dir, label_scorer=args.labels)
        print(f"model {result['model_id']}: {result['path']} (training data hash {result['data_hash']})")
    else:
        if args.model is not None:
            check_classifier_named(args.db, args.model)
        score_run(args.db, args.model, args.run)
    return 0


def check_classifier_named(db: str, model_id: str) -> None:
    """``classifier score --model ID`` of a classifier the store does not hold: refused, naming the ones it holds
    (``score_run`` would say the store holds no classifier at all)."""
    from store.connection import connect

    con = connect(db, read_only=True)
    try:
        held = [r[0] for r in con.execute("SELECT model_id FROM classifier_models ORDER BY trained_at DESC").fetchall()]
    finally:
        con.close()
    if model_id not in held:
        raise JcurateError(f"no classifier {model_id!r} in {db}: "
                           + (f"its classifiers, latest first: {', '.join(held)}" if held
                              else "it holds none; run `jcurate classifier train` first"))


def cmd_ingest(args) -> int:
    from curate.config import load_config
    from curate.handover.declarations import check_relicense_names
    from curate.handover.ingest import check_manifest_covers_shards, ingest_run
    from curate.reading.manifest import load_manifest
    from curate.running.pipeline import STAGES, mark_finished, unfinished_run_problem
    from curate.running.report import build_report, files_without_rows_lines, format_report, write_report
    from licenses.catalogue import load_catalogue

    out = Path(args.out)
    if problem := unfinished_run_problem(out):
        raise JcurateError(f"{problem}; nothing was stored")
    config = load_config(args.config)
    catalogue = load_catalogue()
    sources = load_manifest(args.sources, catalogue)
    relicense = tuple(args.relicense or ())
    check_relicense_names(sources, relicense)
    check_manifest_covers_shards(out, sources, args.sources)
    report = build_report(out, sources=sources)
    for line in files_without_rows_lines(report):
        print(line, file=sys.stderr)
    report["run_id"] = ingest_run(args.db, out, sources, catalogue, config=config.to_dict(), report=report,
                                  sources_file=str(args.sources), executor="slurm", stages=STAGES,
                                  relicense=relicense)
    write_report(out, report)
    mark_finished(out)
    print(format_report(report))
    print_relicensed(report, report["run_id"])
    return 0


def cmd_sql(args) -> int:
    from store.query import interactive_shell, write_query

    if args.query is None:
        return interactive_shell(args.db)
    write_query(args.db, args.query, sys.stdout, args.format, max_rows=args.max_rows or None)
    return 0


def top_k_selection(args) -> tuple[bool, float | None]:
    """(per source, the quotas' minimum score) of ``subset --top-k``: by default the quotas over each source's
    records scoring 4 or more; ``--per-source`` alone the pool's shares; ``--global`` (or ``--diversity``, which
    walks one ranking) the best k of all sources together."""
    from curate.handover.subsets import DEFAULT_QUOTA_MIN_SCORE

    quotas = [f for f, on in (("--per-source", args.per_source), ("--quota-min-score", args.quota_min_score is not None))
              if on]
    one_ranking = [f for f, on in (("--global", args.global_top_k), ("--diversity", args.diversity is not None)) if on]
    if quotas and one_ranking:
        raise JcurateError(f"{' and '.join(quotas + one_ranking)}: per-source quotas and one ranking over all sources "
                           f"are alternatives: pick one")
    if args.top_k is None:
        if quotas or args.global_top_k:
            raise JcurateError(f"{(quotas or ['--global'])[0]} says how a top-k is taken: add --top-k N")
        return False, None
    if one_ranking:
        return False, None
    if not quotas:
        return True, DEFAULT_QUOTA_MIN_SCORE
    return True, args.quota_min_score


def refuse_replacing_a_trained_subset(db: str, name: str) -> None:
    """``--replace`` of a subset a train run used would change the records that run's lineage links to
    (``train_runs.subset``): refused, naming the runs. (Library callers that rebuild their own subsets,
    such as the selection benchmark, call ``create_subset`` directly.)"""
    from store.connection import connect
    from store.runs import train_runs_of

    if not Path(db).is_file():
        return
    con = connect(db, read_only=True)
    try:
        runs = train_runs_of(con, [name]).get(name)
    finally:
        con.close()
    if runs:
        raise JcurateError(f"--replace {name}: train run(s) {', '.join(runs)} trained on this subset; rebuilding it "
                           f"would change what they link to. Build the new subset under another name; nothing "
                           f"was changed")


def cmd_subset(args) -> int:
    from curate.handover.subsets import SubsetCriteria, create_subset
    from licenses.catalogue import load_catalogue

    if args.top_k is None and args.random is None and args.score:
        raise JcurateError("--score ranks for --top-k N: add --top-k")
    per_source, quota_min_score = top_k_selection(args)
    if args.replace:
        refuse_replacing_a_trained_subset(args.db, args.name)
    criteria = SubsetCriteria(
        name=args.name, run_id=args.run, license_use=args.license_use, no_share_alike=args.no_share_alike,
        exclude_generated_by=tuple(args.exclude_generated_by or ()), top_k=args.top_k, score=args.score,
        per_source=per_source, quota_min_score=quota_min_score,
        random=args.random, seed=args.seed, diversity=args.diversity, embedding_backend=args.embedding_backend,
        embedding_model=args.embedding_model,
    )
    result = create_subset(args.db, criteria, load_catalogue(), Path(args.out) if args.out else None,
                           replace=args.replace)
    for note in result["notes"]:
        print(f"jcurate: warning: {note}", file=sys.stderr)
    print(f"subset {result['name']}: {result['n_records']} records from run {result['run_id']}"
          + (f", ranked by {result['score']}" if result.get("score") else "")
          + (f" -> {result['export']} (+ {result['notice']}, dataset card {result['card']})"
             if "export" in result else ""))
    return 0


def cmd_licenses_check(args) -> int:
    import json

    from curate.handover.subsets import subset_exists
    from licenses.catalogue import load_catalogue
    from licenses.models import resolve_model_license
    from licenses.notice import subset_licenses
    from licenses.rules import check
    from store.connection import connect

    catalogue = load_catalogue()
    base = resolved = None
    if args.base_model:
        resolved = resolve_model_license(args.base_model, catalogue)
        base = resolved.license
    con = connect(args.db, read_only=True)
    try:
        if not subset_exists(con, args.subset):
            raise JcurateError(f"no subset named {args.subset!r} in {args.db} (jcurate sql \"SELECT name FROM subsets\")")
        licenses = subset_licenses(con, args.subset, catalogue)
    finally:
        con.close()
    verdict = check(licenses, base)
    if args.format == "json":
        print(json.dumps(verdict.to_dict(), ensure_ascii=False, indent=1))
    else:
        subject = f"subset {args.subset}" + (f" + a model fine-tuned from {args.base_model} ({base.id}, from its "
                                             f"{resolved.source})" if base else "")
        print(f"{subject}\n  licenses: {', '.join(lic.id for lic in licenses)}")
        if resolved and resolved.note:
            print(f"  NOTE: {resolved.note}")
        print(f"  commercial use: {'yes' if verdict.commercial else 'NO'}")
        print(f"  redistribution: {'yes' if verdict.redistribute else 'NO'}")
        if verdict.training_restricted:
            print("  training restriction: YES")
        for reason in verdict.reasons:
            print(f"  - {reason}")
    return 0


def cmd_licenses_list(args) -> int:
    from licenses.catalogue import load_catalogue

    for lic in load_catalogue().licenses.values():
        print(f"{lic.id:<18} {lic.use:<15} {lic.name}")
    return 0


def cmd_train(args) -> int:
    from train.config import load_train_config
    from train.sft import check_output_dir, run_training

    job = load_train_config(args.config)
    try:
        check_output_dir(job)
        result = run_training(job, log=lambda m: print(m, file=sys.stderr))
    except JcurateError as e:  # a key found wrong once the data or model is looked at: named with its file too
        if str(e).startswith("config key"):
            raise JcurateError(f"{args.config}: {e}") from None
        raise
    print(f"train run {result['train_run_id']}: {result['output_dir']} (loss {result['train_loss_first']} -> "
          f"{result['train_loss_last']}, {result['tokens_per_second']} tokens/s, peak RAM {result['peak_ram_mb']:.0f} MB)")
    return 0


def cmd_eval(args) -> int:
    from eval.runner import load_eval_config, run_eval

    cfg = load_eval_config(args.config, train_run=args.train_run, db=args.db)
    result = run_eval(cfg, log=lambda m: print(m, file=sys.stderr))
    print(eval_summary(result))
    return 0


def eval_summary(result: dict) -> str:
    """One line saying what each number of an eval run is: the judge's scores per scale (ELYZA-shape
    answers are graded 1-5, MT-Bench turns 1-10), the reference NLL, the decontamination overlap."""
    from eval.tasks import SCALES

    if result["graded"]:
        shapes = ", ".join(f"{SCALES[s]}: {m:.3f} on {n}" for s, (m, n) in result.get("mean_by_shape", {}).items())
        judge = (f"judge scores on {result['graded']} answers ({result['failed']} failed)"
                 + (f": {shapes}" if shapes else ""))
    else:
        judge = "no judge scores (no judge.model)"
    nll = (f"reference NLL {result['mean_ref_nll']:.4f} nats/token on {result['reference_nll_items']} items "
           f"(lower is better)" if result.get("mean_ref_nll") is not None else "no reference NLL")
    overlap = result["decont_overlap"]
    decont = ("" if overlap is None else
              f"; {overlap} training record(s) overlap the eval set" + ("" if overlap == 0 else " (they inflate it)"))
    return f"eval run {result['eval_run_id']}: {judge}; {nll}{decont}"


def cmd_compare(args) -> int:
    from eval.compare import compare_runs, differences, load_run_scores, plot, resolve_eval_run, to_markdown
    from store.connection import connect

    con = connect(args.db, read_only=True)
    try:
        (eval_a, note_a), (eval_b, note_b) = resolve_eval_run(con, args.run_a), resolve_eval_run(con, args.run_b)
        run_a, a = load_run_scores(con, eval_a, args.metric)
        run_b, b = load_run_scores(con, eval_b, args.metric)
        warnings = [n for n in (note_a, note_b) if n] + differences(con, eval_a, eval_b, args.metric)
    finally:
        con.close()
    for w in warnings:  # before the comparison, which may stop on what they name
        print(f"warning: {w}", file=sys.stderr)
    comparison = compare_runs(a, b, run_a, run_b, metric=args.metric)  # the judge's score: per scale
    if comparison.only_a or comparison.only_b:
        print(f"warning: only {comparison.n} item(s) are in both runs: {comparison.only_a} of A's and "
              f"{comparison.only_b} of B's are left out", file=sys.stderr)
    report = to_markdown(comparison, warnings=warnings)
    if args.plot:
        plot(comparison, args.plot)
    if args.out:  # written whatever --format says (with text, --out was once ignored without a word)
        try:
            Path(args.out).write_text(report, encoding="utf-8")
        except OSError as e:
            raise JcurateError(f"--out {args.out}: cannot write the report ({e.strerror or e.__class__.__name__})"
                               ) from None
        print(f"report: {args.out}")
    else:
        print(report)
    return 0


def cmd_experiment(args) -> int:
    from eval.experiment import load_experiment_config, run_experiment

    result = run_experiment(load_experiment_config(args.config), log=lambda m: print(m, file=sys.stderr))
    print(open(result["report"], encoding="utf-8").read())
    return 0


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(args) -> str | None:
    """The service token: ``--token-file`` (first line), else ``JCURATE_TOKEN``, else ``--token``
    (which other users of the machine can read in ``ps``: the two others are the documented ways)."""
    if args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise JcurateError(f"--token-file {args.token_file}: cannot read it ({e.__class__.__name__})") from None
        if not token or not token[0].strip():
            raise JcurateError(f"--token-file {args.token_file}: the file is empty")
        return token[0].strip()
    return os.environ.get("JCURATE_TOKEN") or args.token or None


def cmd_serve(args) -> int:
    import uvicorn

    from jcurate.service.app import ServeSettings, create_app
    from jcurate.service.ports import check_port

    token = read_token(args)
    if not _is_loopback(args.host) and not token:
        raise JcurateError(f"--host {args.host} is not a loopback address: set a token (JCURATE_TOKEN or "
                           f"--token-file FILE) so that only clients holding it get in")
    if not Path(args.db).is_file():
        raise JcurateError(f"no store at {args.db}: run `jcurate run` first (or pass --db)")
    check_port(args.host, args.port)  # before the index is loaded: a taken port is known at once
    for name in ("max_batch", "max_text_chars", "max_body_bytes", "sql_max_rows"):
        if getattr(args, name) < 1:
            raise JcurateError(f"--{name.replace('_', '-')} must be at least 1")
    if args.reload_interval < 0:
        raise JcurateError("--reload-interval must be 0 (never) or positive")
    if args.sql_timeout <= 0:
        raise JcurateError("--sql-timeout must be positive")
    settings = ServeSettings(db=args.db, token=token, config=args.config, max_batch=args.max_batch,
                             max_text_chars=args.max_text_chars, max_body_bytes=args.max_body_bytes,
                             sql_max_rows=args.sql_max_rows, sql_timeout=args.sql_timeout,
                             reload_interval=args.reload_interval)
    if args.config:
        from curate.config import load_config
        from curate.scoring.judge import check_judge_answers, make_judge

        config = load_config(args.config)  # a bad config stops here, not in every worker
        if config.judge.model and config.judge.backend == "openai":  # an in-process judge loads at its first use
            check_judge_answers(make_judge(config.judge), args.config, "the service did not start")
    from store.connection import connect
    from store.runs import resolve_run

    con = connect(args.db, read_only=True)
    try:
        resolve_run(con)  # an empty store stops here too
    finally:
        con.close()
    where = f"http://{args.host}:{args.port}/ (API docs at /docs){' — token required' if token else ''}"
    common = dict(host=args.host, port=args.port, log_level=args.log_level, access_log=args.log_level == "debug")
    if args.workers > 1:
        import json
        from dataclasses import asdict

        from jcurate.service.app import SETTINGS_ENV

        # each worker process builds its own scorer and duplicate index (memory x workers)
        os.environ[SETTINGS_ENV] = json.dumps(asdict(settings))
        print(f"jcurate serve: {args.workers} worker processes, each loading {args.db}; {where}",
              file=sys.stderr, flush=True)
        uvicorn.run("jcurate.service.app:app_from_env", factory=True, workers=args.workers, **common)
        return 0
    print(f"jcurate serve: loading {args.db} (filters, classifier, duplicate index) ...", file=sys.stderr, flush=True)
    app = create_app(settings)
    info = app.state.scorer.describe()
    print(f"jcurate serve: run {info['run_id']}, {info['indexed_records']} records indexed in "
          f"{info['index_seconds']} s, classifier {info['classifier'] or 'none'}, judge {info['judge'] or 'none'}; "
          f"{where}", file=sys.stderr, flush=True)
    uvicorn.run(app, **common)
    return 0


def count_type(what: str, minimum: int, bound: str):
    """An argparse type for a count of ``what`` of at least ``minimum`` (``bound`` says it in the message)."""
    def count(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"a number of {what}, got {text!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"a number of {what}, {bound}, got {n}")
        return n

    return count


positive_int = count_type("records", 1, "at least 1")  # a number of records to take
row_count = count_type("rows", 0, "0 (all) or more")  # jcurate sql --max-rows


def build_parser() -> argparse.ArgumentParser:
    from store import DEFAULT_DB, TABLE_ROWS

    parser = argparse.ArgumentParser(prog="jcurate", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="curate the sources: read, filter, dedup, decontaminate, fill the store")
    run.add_argument("--sources", default="data/sources.yaml", help="sources manifest (default: %(default)s)")
    run.add_argument("--out", default="out", help="output folder for shards and report (default: %(default)s)")
    run.add_argument("--config", default=None, help="pipeline config YAML (default: built-in defaults)")
    run.add_argument("--executor", default="local", choices=["local", "ray", "slurm"])
    run.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                     help="parallel tasks; one large file is split by rows (default: the number of cores, %(default)s)")
    run.add_argument("--db", default=DEFAULT_DB, help="DuckDB provenance store (default: %(default)s)")
    run.add_argument("--fresh", action="store_true",
                     help="start afresh: by default a run killed before it finished, started again with the same "
                          "sources, config, executor and workers on the same --out, skips the tasks it completed")
    run.add_argument("--relicense", action="append", metavar="SOURCE",
                     help="change the stored declaration (license, generated_by, attribution) of source SOURCE to "
                          "the manifest's: its stored records and the subsets holding them take it (refused without)")
    run.add_argument("-v", "--verbose", action="store_true",
                     help="show datatrove's per-task logs here instead of in OUT/work/logs/datatrove.log")
    run.set_defaults(func=cmd_run)

    ingest = sub.add_parser("ingest", help="load a finished run folder (e.g. after Slurm) into the store")
    ingest.add_argument("--out", default="out")
    ingest.add_argument("--sources", default="data/sources.yaml")
    ingest.add_argument("--config", default=None)
    ingest.add_argument("--db", default=DEFAULT_DB)
    ingest.add_argument("--relicense", action="append", metavar="SOURCE",
                        help="change the stored declaration (license, generated_by, attribution) of source SOURCE to "
                             "the manifest's: its stored records and the subsets holding them take it (refused without)")
    ingest.set_defaults(func=cmd_ingest)

    judge = sub.add_parser("judge", help="score kept records with the LLM judge of the config's judge: section")
    judge.add_argument("--sample", type=int, default=None, help="a per-source stratified sample of N records")
    judge.add_argument("--all", action="store_true", help="judge every kept record")
    judge.add_argument("--seed", type=int, default=0)
    judge.add_argument("--run", default=None, help="run id (default: the latest)")
    judge.add_argument("--config", default=None)
    judge.add_argument("--db", default=DEFAULT_DB)
    judge.set_defaults(func=cmd_judge)

    jserver = sub.add_parser("judge-server", help="llama.cpp's OpenAI-compatible server for the judge (judge-server "
                                                  "group), by default the packaged Gemma 3 270M GGUF")
    jserver.add_argument("--model", default="packaged:gemma-3-270m", help="a GGUF file, or packaged:gemma-3-270m")
    jserver.add_argument("--alias", default="gemma-3-270m", help="the model name the server answers to")
    jserver.add_argument("--chat-format", default="gemma", help="llama_cpp chat format (the packaged GGUF has no "
                                                               "template)")
    jserver.add_argument("--port", type=int, default=8000)
    jserver.add_argument("--n-ctx", type=int, default=4096)
    jserver.add_argument("--threads", type=int, default=None)
    jserver.add_argument("--no-logprobs", action="store_true",
                         help="start without --logits_all: much faster, answers constrained choices only")
    jserver.set_defaults(func=cmd_judge_server)

    clf = sub.add_parser("classifier", help="the fastText quality classifier")
    clf_sub = clf.add_subparsers(dest="classifier_command", required=True)
    ctrain = clf_sub.add_parser("train", help="train on judge labels or the labels sources ship; held-out metrics")
    ctrain.add_argument("--labels", default="label", help="scorer whose scores are the labels: label | judge")
    ctrain.add_argument("--model-dir", default="models")
    ctrain.add_argument("--db", default=DEFAULT_DB)
    ctrain.set_defaults(func=cmd_classifier)
    cscore = clf_sub.add_parser("score", help="score every kept record of a run")
    cscore.add_argument("--model", default=None, help="classifier model id (default: the latest)")
    cscore.add_argument("--run", default=None, help="run id (default: the latest)")
    cscore.add_argument("--db", default=DEFAULT_DB)
    cscore.set_defaults(func=cmd_classifier)

    train = sub.add_parser("train", help="SFT (TRL + PEFT) on a stored subset or a file")
    train.add_argument("--config", required=True, help="train YAML (see train/configs/)")
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="generate on eval sets and grade with the judge, and/or the reference NLL")
    ev.add_argument("--config", required=True, help="eval YAML (see eval/configs/)")
    ev.add_argument("--train-run", default=None, help="evaluate this train run (base model + adapter)")
    ev.add_argument("--db", default=None, help="the store (default: the config's db)")
    ev.set_defaults(func=cmd_eval)

    cmp_ = sub.add_parser("compare", help="compare two eval runs (or evaluated train runs): paired bootstrap")
    cmp_.add_argument("run_a", help="A, the baseline: an eval run id, or a train run id (its latest eval run)")
    cmp_.add_argument("run_b", help="B, compared with A: every difference is B - A")
    cmp_.add_argument("--metric", choices=["score", "ref_nll"], default="score",
                      help="the judge's score (higher is better; per scale: ELYZA 1-5, MT-Bench 1-10) or the "
                           "reference NLL (lower is better)")
    cmp_.add_argument("--format", choices=["text", "md"], default="text",
                      help="the report is Markdown either way (kept for scripts that pass it)")
    cmp_.add_argument("--out", default=None, help="write the report to this file instead of printing it")
    cmp_.add_argument("--plot", default=None, help="PNG of per-category means (a panel per scale)")
    cmp_.add_argument("--db", default=DEFAULT_DB)
    cmp_.set_defaults(func=cmd_compare)

    exp = sub.add_parser("experiment", help="top-k vs random-k: subsets, training, evaluation, comparison")
    exp.add_argument("--config", required=True, help="experiment YAML (see eval/configs/experiment-cpu-smoke.yaml)")
    exp.set_defaults(func=cmd_experiment)

    sql = sub.add_parser("sql", help="read-only SQL over the store; no query opens the duckdb shell")
    sql.add_argument("query", nargs="?", help="a SELECT (or EXPLAIN / PRAGMA) statement")
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sql.add_argument("--max-rows", type=row_count, default=TABLE_ROWS, metavar="N",
                     help="rows a table shows; the rest are counted (0: all; csv and json hold every row) "
                          "(default: %(default)s)")
    sql.add_argument("--db", default=DEFAULT_DB)
    sql.set_defaults(func=cmd_sql)

    subset = sub.add_parser("subset", help="a license-filtered top-k or random subset of a run's kept records")
    subset.add_argument("--name", required=True)
    subset.add_argument("--run", default=None, help="run id (default: the latest run)")
    subset.add_argument("--license-use", choices=["commercial", "non-commercial", "academic"], default=None,
                        help="the DPI ladder: commercial ⊂ non-commercial ⊂ academic; unknown licenses never pass")
    subset.add_argument("--no-share-alike", action="store_true", help="leave out share-alike records")
    subset.add_argument("--exclude-generated-by", action="append", metavar="MODEL_OR_LICENSE",
                        help="leave out records generated by this model or under this model license (repeatable)")
    subset.add_argument("--top-k", type=positive_int, default=None, metavar="N",
                        help="the N best by --score: by default per source, each source's quota in proportion to "
                             "its eligible records scoring 4 or more (--global: one ranking over all sources)")
    subset.add_argument("--per-source", action="store_true",
                        help="take the top-k from each source in proportion to its share of all the eligible records "
                             "(the default quotas count only the records scoring 4 or more)")
    subset.add_argument("--quota-min-score", type=float, default=None, metavar="S",
                        help="each source's quota in proportion to its eligible records scoring at least S (default "
                             "4: sources the scorer rates poor get little or nothing)")
    subset.add_argument("--global", dest="global_top_k", action="store_true",
                        help="the best k of all sources together, no quotas (the default until 2026-12-07)")
    subset.add_argument("--score", default=None,
                        help="scorer to rank by for --top-k: shipped, classifier, judge, label (default: the store's "
                             "classifier where it scored the run, else shipped)")
    subset.add_argument("--random", type=positive_int, default=None, metavar="N",
                        help="a random sample of N (baseline arm)")
    subset.add_argument("--seed", type=int, default=0)
    subset.add_argument("--diversity", type=float, default=None, metavar="T",
                        help="walk the ranking and skip a record within cosine distance T of one already selected")
    subset.add_argument("--embedding-backend", choices=["use", "sentence-transformers"], default="use",
                        help="use = multilingual USE shipped in a package (offline); or any sentence-transformers model")
    subset.add_argument("--embedding-model", default=None, help="model name for sentence-transformers")
    subset.add_argument("--out", default=None, help="a .jsonl or .parquet file, or a folder: a path without an "
                                                     "extension (HF datasets save_to_disk)")
    subset.add_argument("--replace", action="store_true", help="rebuild a subset of the same name")
    subset.add_argument("--db", default=DEFAULT_DB)
    subset.set_defaults(func=cmd_subset)

    serve = sub.add_parser("serve", help="the scoring and provenance service: HTTP API and provenance page")
    serve.add_argument("--db", default=DEFAULT_DB)
    serve.add_argument("--host", default="127.0.0.1", help="a non-loopback address needs a token (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--token-file", default=None, metavar="FILE",
                       help="clients must send 'Authorization: Bearer TOKEN', TOKEN being the file's first line "
                            "(or set JCURATE_TOKEN)")
    serve.add_argument("--token", default=None, help="the token on the command line (visible in `ps`: prefer "
                                                     "JCURATE_TOKEN or --token-file)")
    serve.add_argument("--config", default=None,
                       help="pipeline config YAML to score with: filters, MinHash, judge: (default: the latest run's)")
    serve.add_argument("--max-batch", type=int, default=256, help="records per POST /v1/score (default: %(default)s)")
    serve.add_argument("--max-text-chars", type=int, default=20_000,
                       help="characters per record, all fields (default: %(default)s)")
    serve.add_argument("--max-body-bytes", type=int, default=8 * 1024 * 1024, help="request body size limit")
    serve.add_argument("--sql-max-rows", type=int, default=10_000, help="rows per POST /v1/sql (default: %(default)s)")
    serve.add_argument("--sql-timeout", type=float, default=10.0, help="seconds per POST /v1/sql (default: %(default)s)")
    serve.add_argument("--reload-interval", type=float, default=60.0, metavar="SECONDS",
                       help="look this often for a newer run or classifier and rebuild the scorer (0: never)")
    serve.add_argument("--workers", type=int, default=1,
                       help="server processes; each scores one batch at a time and holds its own index")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                       help="the server's log level; debug also logs every request (default: %(default)s)")
    serve.set_defaults(func=cmd_serve)

    lic = sub.add_parser("licenses", help="the license catalogue and license checks")
    lic_sub = lic.add_subparsers(dest="licenses_command", required=True)
    lcheck = lic_sub.add_parser("check", help="may a subset (and a model trained on it) be used commercially / shared?")
    lcheck.add_argument("--subset", required=True)
    lcheck.add_argument("--base-model", default=None, help="a hub id mapped in the catalogue, or a license id")
    lcheck.add_argument("--format", choices=["text", "json"], default="text")
    lcheck.add_argument("--db", default=DEFAULT_DB)
    lcheck.set_defaults(func=cmd_licenses_check)
    llist = lic_sub.add_parser("list", help="the license ids of the catalogue")
    llist.set_defaults(func=cmd_licenses_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "workers", 1) < 1:
        parser.error("--workers must be at least 1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.getLogger("datasets").setLevel(logging.ERROR)
    try:
        require_store(args)
        return args.func(args)
    except JcurateError as e:
        print(f"jcurate: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        if not stdout_reader_gone():
            raise  # another pipe or socket of the command: a failure to show
        return quiet_stdout()
    except Exception as e:
        if (full := disk_full(e, getattr(args, "out", None))) is None:
            raise
        print(f"jcurate: error: {full}", file=sys.stderr)
        return 28
    except KeyboardInterrupt:
        print(f"jcurate: interrupted{AFTER_INTERRUPT.get(args.command, '')}", file=sys.stderr)
        return 130


# what to do after Ctrl-C, for the commands that keep what they finished
AFTER_INTERRUPT = {"run": "; run the same command again to resume from the finished tasks",
                   "judge": "; run the same command again to judge only the records not judged yet"}


# the commands that read a store a run made; a writing connection to a --db that names no file would
# create an empty store there (run and ingest make stores; eval's --db is optional)
READS_A_STORE = ("subset", "sql", "licenses", "serve", "judge", "classifier", "compare")


def require_store(args) -> None:
    db = getattr(args, "db", None)
    if args.command in READS_A_STORE and db is not None and not Path(db).is_file():
        raise JcurateError(f"no store at {db}: run `jcurate run` first (or pass --db)")


# the exit status of a command whose reader closed the pipe (`jcurate … | head`), as a shell reports a
# process that SIGPIPE ended: Python ignores the signal, so the write raises BrokenPipeError instead
BROKEN_PIPE = 128 + 13


def stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reading end was closed (poll reports an error on the writing end)."""
    import select

    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poll.poll(0))
    except (OSError, ValueError, AttributeError):  # no file descriptor behind stdout
        return False


def quiet_stdout() -> int:
    """Stop writing to a pipe whose reader has gone, without a traceback: stdout is pointed at
    /dev/null, so that the output still buffered is not written (and fails) again at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return BROKEN_PIPE


def disk_full(error: BaseException, out: str | None) -> str | None:
    """One line for a disk that filled up during a command, or None when ``error`` is something else:
    the folder being written, the space free on its disk, what the run had written so far, and that the
    same command resumes (finished tasks are kept; ``jcurate run`` starts again where it stopped)."""
    chain, seen = [error], set()
    while chain[-1] is not None and id(chain[-1]) not in seen:  # the cause a worker's failure carries
        seen.add(id(chain[-1]))
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    full = next((e for e in chain if e is not None and (getattr(e, "errno", None) == errno.ENOSPC
                                                         or "No space left on device" in str(e))), None)
    if full is None:
        return None
    folder = Path(getattr(full, "filename", None) or out or ".")
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free / 2**20
    written = ""
    if out and Path(out).is_dir():
        size = sum(f.stat().st_size for f in Path(out).rglob("*") if f.is_file()) / 2**20
        written = f"; this run had written {size:,.0f} MiB to {out}, so free at least as much again"
    return (f"no space left on the disk of {folder} ({free:,.0f} MiB free){written}. Nothing finished is lost: "
            f"free space and run the same command again, it resumes")


def entry() -> None:
    """The ``jcurate`` command: ``main``, then the process ends without the interpreter's teardown of
    the ~1,400 modules a run imports (datatrove, pyarrow, pandas, scipy: 0.4 s after every run, 3% of a
    60k-record one). Everything is written before: the store is closed, the exit handlers run (they close
    loguru's sinks, datatrove's log, and logging's handlers, shut a local Ray instance down, let
    multiprocessing clean up) and the output streams are flushed here. Worker processes of multiprocessing
    end the same way (``os._exit``)."""
    import atexit

    code = main()
    atexit._run_exitfuncs()  # what the interpreter would run before its teardown
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:  # the reader closed the pipe
            code = code or BROKEN_PIPE
        except (OSError, ValueError):  # a closed stream: nothing more can be written to it
            code = code or 1
    os._exit(code or 0)


if __name__ == "__main__":
    entry()
