"""Shared fixtures: one real run of the pipeline on the embedded default, reused by many tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def run_cli(*args: str) -> int:
    from jcurate.cli import main

    return main(list(args))


@pytest.fixture(scope="session")
def default_run(tmp_path_factory):
    """`jcurate run` on data/sources.yaml: (out dir, db path)."""
    os.chdir(ROOT)
    tmp = tmp_path_factory.mktemp("default-run")
    out, db = tmp / "out", tmp / "store.duckdb"
    # one worker: the filter tasks run in this process, so their log lines land in this run's stage
    # log. With several, they run in forkserver workers, whose fd 2 is the one the server started
    # with: in a test process that holds many runs, possibly another run's log file.
    assert run_cli("run", "--out", str(out), "--db", str(db), "--workers", "1") == 0
    return out, db
