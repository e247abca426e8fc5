"""Large runs fail cleanly: a disk that fills up, and a store that cannot be read.

Both are real: a size-capped tmpfs (mounted by the test, which needs the privilege to mount; skipped with
the reason where it has none) and a copy of a real store with a block overwritten.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from store.integrity import damage

ROOT = Path(__file__).resolve().parents[2]


def jcurate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jcurate.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def fates(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("""SELECT record_id, kept, dropped_at, reason, value FROM record_fate
                              WHERE run_id = (SELECT run_id FROM latest_run) ORDER BY record_id""").fetchall()
    finally:
        con.close()


@pytest.fixture
def small_disk(tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True,
                          text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a size-capped tmpfs here ({done.stderr.strip()}): the disk-full test needs it")
    yield folder
    subprocess.run(["umount", str(folder)], capture_output=True)


def test_a_full_disk_is_one_line_and_the_same_command_resumes(small_disk, tmp_path, default_run):
    out, db = small_disk / "out", tmp_path / "store.duckdb"
    first = jcurate("run", "--out", str(out), "--db", str(db))
    assert first.returncode == 28, first.stderr[-3000:]
    assert "Traceback" not in first.stderr, first.stderr[-3000:]
    errors = [line for line in first.stderr.splitlines() if line.startswith("jcurate: error:")]
    assert len(errors) == 1 and "no space left on the disk of" in errors[0] and str(out) in errors[0]
    assert "run the same command again" in errors[0]
    # space freed: the tmpfs grows, its files stay; the same command finishes the run
    subprocess.run(["mount", "-o", "remount,size=200m", str(small_disk)], check=True)
    second = jcurate("run", "--out", str(out), "--db", str(db))
    assert second.returncode == 0, second.stderr[-3000:]
    assert fates(db) == fates(default_run[1]), "the resumed run decides every record as a clean run does"


def corrupted_copy(db: Path, folder: Path) -> Path:
    """A copy of ``db`` with one 4 KiB block overwritten where a table's data lies."""
    size = db.stat().st_size
    for fraction in (0.5, 0.4, 0.6, 0.3, 0.7, 0.2, 0.8):
        copy = folder / f"damaged-{fraction}.duckdb"
        shutil.copy(db, copy)
        with open(copy, "r+b") as f:
            f.seek(int(size * fraction) // 4096 * 4096)
            f.write(os.urandom(4096))
        if damage(copy):
            return copy
    pytest.fail("no overwritten block was found damaged: the check reads too little")


def test_a_damaged_store_is_found_before_any_work(default_run, tmp_path):
    assert damage(default_run[1]) is None, "a sound store passes"
    bad = corrupted_copy(default_run[1], tmp_path)
    out = tmp_path / "out"
    done = jcurate("run", "--out", str(out), "--db", str(bad))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("jcurate: error:")]
    assert len(errors) == 1 and f"the store {bad} cannot be read" in errors[0] and "jcurate ingest" in errors[0]
    assert not out.exists(), "nothing was run"
