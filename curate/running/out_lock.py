"""One `jcurate run` per ``--out``: two runs writing the same shards destroy each other's output.

The lock is ``fcntl.flock`` on ``OUT/.jcurate-run.lock`` (a file in ``OUT`` itself: a fresh run empties
``OUT/work``, and a lock file deleted there would let a third run lock a new one). The kernel releases it
when the process ends, a crash or ``kill -9`` included, so a leftover file never blocks a later run. It is the
run's main process's alone: a process forked from it (multiprocess's manager) closes its copy, so it never
outlives the run holding it. A process holds each folder once (several runs in one process, as in the tests,
take it again).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from core.errors import JcurateError

LOCK_FILE = ".jcurate-run.lock"

_HELD: dict[Path, int] = {}  # folder -> the open lock file's descriptor, in this process


def _close_in_forked_child() -> None:
    for fd in _HELD.values():
        os.close(fd)  # the parent's lock stays: flock is released when its last descriptor closes
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_forked_child)


def lock_out_folder(out: Path) -> None:
    """Takes ``out``'s lock for the rest of this process or refuses, naming the process that holds it."""
    out.mkdir(parents=True, exist_ok=True)
    key = out.resolve()
    if key in _HELD:
        return
    fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise JcurateError(f"{out} is in use by another `jcurate run` (pid {holder or 'unknown, starting'}); "
                           f"nothing was run. Wait for it to end, or give this run another --out") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[key] = fd
