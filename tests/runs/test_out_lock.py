"""Two `jcurate run`s on one --out: the second refuses in one line, naming the first's pid; the first ends as
if alone. The lock goes with its process (a killed run's rerun: tests/runs/test_resume.py)."""

from __future__ import annotations

import subprocess
import sys
import time

import duckdb

from curate.running.out_lock import LOCK_FILE
from tests.conftest import ROOT, run_cli


def test_a_second_run_on_the_same_out_refuses_and_the_first_ends_alone(tmp_path, capsys):
    out, db = tmp_path / "out", tmp_path / "store.duckdb"
    first = subprocess.Popen([sys.executable, "-m", "jcurate.cli", "run", "--out", str(out), "--db", str(db),
                              "--workers", "1"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    lock = out / LOCK_FILE
    deadline = time.monotonic() + 120
    while not (lock.is_file() and lock.read_text().strip()) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert first.poll() is None, "the first run ended before the second started"
    capsys.readouterr()
    assert run_cli("run", "--out", str(out), "--db", str(tmp_path / "other.duckdb"), "--workers", "1") == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"jcurate: error: {out} is in use by another `jcurate run` (pid {first.pid}); nothing was run. "
        f"Wait for it to end, or give this run another --out"]
    assert first.wait(timeout=600) == 0, first.stderr.read()
    assert not (tmp_path / "other.duckdb").exists()
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM runs").fetchone() == (1,)
    finally:
        con.close()
    # the lock went with the first run: the same command again runs
    assert run_cli("run", "--out", str(out), "--db", str(db), "--workers", "1") == 0
