"""The ``jcurate`` command line: a thin layer over the library.

Bad input the user can fix (``JcurateError``) prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from curate.errors import JcurateError


def cmd_run(args) -> int:
    from curate.config import load_config
    from curate.manifest import load_manifest
    from curate.pipeline import STAGES, ExecutorOptions, run_stages
    from curate.report import build_report, format_report, write_report
    from licenses.catalogue import load_catalogue
    from licenses.store import ingest_run

    started = datetime.now(timezone.utc)
    config = load_config(args.config)
    catalogue = load_catalogue()
    sources = load_manifest(args.sources, catalogue)
    out = Path(args.out)
    print(f"jcurate run: {len(sources)} source(s) from {args.sources} -> {out} "
          f"(executor {args.executor}, {args.workers} worker(s))", file=sys.stderr)
    options = ExecutorOptions(kind=args.executor, workers=args.workers, slurm=config.slurm)
    timings = run_stages(sources, config, out, options, log=lambda m: print(m, file=sys.stderr))
    if args.executor == "slurm":
        print(f"submitted to Slurm. When the jobs finish: jcurate ingest --out {out} --sources {args.sources} "
              f"--db {args.db}")
        return 0
    report = build_report(out, timings)
    run_id = ingest_run(args.db, out, sources, catalogue, config=config.to_dict(), report=report,
                        sources_file=str(args.sources), executor=args.executor, workers=args.workers,
                        started_at=started, stages=STAGES)
    report["run_id"] = run_id
    path = write_report(out, report)
    print(format_report(report))
    print(f"report: {path}   store: {args.db} (run {run_id})")
    return 0


def cmd_ingest(args) -> int:
    from curate.config import load_config
    from curate.manifest import load_manifest
    from curate.pipeline import STAGES
    from curate.report import build_report, format_report, write_report
    from licenses.catalogue import load_catalogue
    from licenses.store import ingest_run

    config = load_config(args.config)
    catalogue = load_catalogue()
    sources = load_manifest(args.sources, catalogue)
    out = Path(args.out)
    report = build_report(out)
    report["run_id"] = ingest_run(args.db, out, sources, catalogue, config=config.to_dict(), report=report,
                                  sources_file=str(args.sources), executor="slurm", stages=STAGES)
    write_report(out, report)
    print(format_report(report))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from licenses.store import DEFAULT_DB

    parser = argparse.ArgumentParser(prog="jcurate", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="curate the sources: read, filter, dedup, decontaminate, fill the store")
    run.add_argument("--sources", default="data/sources.yaml", help="sources manifest (default: %(default)s)")
    run.add_argument("--out", default="out", help="output folder for shards and report (default: %(default)s)")
    run.add_argument("--config", default=None, help="pipeline config YAML (default: built-in defaults)")
    run.add_argument("--executor", default="local", choices=["local", "ray", "slurm"])
    run.add_argument("--workers", type=int, default=1, help="parallel tasks (default: %(default)s)")
    run.add_argument("--db", default=DEFAULT_DB, help="DuckDB provenance store (default: %(default)s)")
    run.set_defaults(func=cmd_run)

    ingest = sub.add_parser("ingest", help="load a finished run folder (e.g. after Slurm) into the store")
    ingest.add_argument("--out", default="out")
    ingest.add_argument("--sources", default="data/sources.yaml")
    ingest.add_argument("--config", default=None)
    ingest.add_argument("--db", default=DEFAULT_DB)
    ingest.set_defaults(func=cmd_ingest)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "workers", 1) < 1:
        parser.error("--workers must be at least 1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.getLogger("datasets").setLevel(logging.ERROR)
    try:
        return args.func(args)
    except JcurateError as e:
        print(f"jcurate: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jcurate: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
