"""Which run: the latest, or a named one checked to exist; and what a run records about itself."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

from core.errors import JcurateError


def latest_run_id(con) -> str | None:
    row = con.execute("SELECT run_id FROM latest_run").fetchone()
    return row[0] if row else None


def resolve_run(con, run_id: str | None = None) -> str:
    """The named run, checked to exist, or the latest run."""
    if run_id is None:
        latest = latest_run_id(con)
        if latest is None:
            raise JcurateError("the store has no runs yet: run `jcurate run` first")
        return latest
    if not con.execute("SELECT 1 FROM runs WHERE run_id = ?", [run_id]).fetchone():
        raise JcurateError(f"no run {run_id!r} in the store")
    return run_id


def train_runs_of(con, subsets: list[str]) -> dict[str, list[str]]:
    """{subset: the ids of the train runs that used it, oldest first} for those of ``subsets`` a train run
    used: the lineage that rebuilding such a subset would change."""
    found: dict[str, list[str]] = {}
    for subset, run in con.execute("SELECT subset, train_run_id FROM train_runs WHERE subset IN (SELECT unnest(?)) "
                                   "ORDER BY subset, started_at", [list(subsets)]).fetchall():
        found.setdefault(subset, []).append(run)
    return found


def package_versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("jcurate", "datatrove", "duckdb", "fugashi"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def git_commit() -> str | None:
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return res.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
