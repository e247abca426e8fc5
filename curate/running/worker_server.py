"""The forkserver that datatrove's local executor starts its workers from, started early.

Kept apart from ``curate.running.pipeline`` (1.5 s of imports) so that the command line can start it
first: the server then imports the pipeline's modules on the other core while the main process
imports its own, instead of after it.

The server and every worker it forks keep the standard streams the server started with, for its
whole life. So it starts with stdout on /dev/null and stderr on a pipe that a thread of this
process copies to whatever this process's stderr is at the time: the stage's log file while
``curate.running.pipeline.stage_output_to`` has it, the terminal otherwise (``--verbose``). Started with
this process's streams, the workers wrote datatrove's log to the terminal, between the progress
lines, and a command whose output went to a pipe ended 0.4 s late: the pipe stayed open until the
server's own exit.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager

# what every worker of every stage imports (datatrove, pyarrow, numpy, fugashi, our steps; scipy.sparse for the
# shipped scorer, which imports it lazily; scipy's graph components for the dedup plan): ~1.1 s a process. Not
# pandas (0.3-0.5 s more, the longest part of the start of a run with several workers), which the workers do
# not use: ``keep_pandas_out_of_pyarrow``
WORKER_MODULES = ["__main__", "curate.running.pipeline", "scipy.sparse", "scipy.sparse.csgraph"]


class _RefusePandas:
    """An import finder that refuses pandas (for ``keep_pandas_out_of_pyarrow``)."""

    def find_spec(self, name, path=None, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("pandas is kept out of this worker's pyarrow")
        return None


def keep_pandas_out_of_pyarrow() -> bool:
    """Makes pyarrow in this process take pandas as absent; returns whether it did (not where pandas is
    imported already, nor with a pyarrow whose private ``lib._pandas_api`` is not there). pyarrow looks
    for pandas once, at its first array of any kind, and imports it if installed (0.3-0.5 s, ~60 MB a
    process); its pandas-only functions (``to_pandas``) still import it when called. Its C++ converter of
    Python lists and ``to_numpy`` import pandas themselves, so the workers' Arrow arrays are built from
    and read through buffers (``curate.running.outputs``). ``run_stages`` does not ask this of the workers of a run
    with an hf-disk source: ``datasets`` imports pandas and hands pandas objects to pyarrow."""
    import sys

    if "pandas" in sys.modules:
        return False
    import pyarrow as pa

    shim = getattr(pa.lib, "_pandas_api", None)
    if shim is None:
        return False
    finder = _RefusePandas()
    sys.meta_path.insert(0, finder)
    try:
        shim.have_pandas  # its one look, refused  # noqa: B018
    finally:
        sys.meta_path.remove(finder)
    return True


class _StderrCopier:
    """Copies what the server and its workers write to their stderr (the read end ``fd`` of a pipe)
    to this process's file descriptor 2, a chunk at a time, on a daemon thread."""

    def __init__(self, fd: int):
        self.fd = fd
        self.lock = threading.Lock()  # held while a chunk is read and written: ``drain`` waits on it
        os.set_blocking(fd, False)
        self.thread = threading.Thread(target=self._run, name="worker-stderr", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import select

        while True:
            select.select([self.fd], [], [])
            with self.lock:
                try:
                    data = os.read(self.fd, 1 << 16)
                except BlockingIOError:
                    continue
                if not data:  # every writer closed: the server and its workers exited
                    return
                _write_all(2, data)

    def pending(self) -> int:
        import fcntl
        import termios

        return int.from_bytes(fcntl.ioctl(self.fd, termios.FIONREAD, bytes(4)), "little")

    def drain(self, timeout: float = 2.0) -> None:
        """Returns once everything written to the pipe so far is copied (or after ``timeout``)."""
        import time

        deadline = time.monotonic() + timeout
        while self.thread.is_alive() and time.monotonic() < deadline:
            with self.lock:  # not in the middle of a chunk: an empty pipe means all of it is copied
                if not self.pending():
                    return
            time.sleep(0.005)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except OSError:  # this process's stderr is gone: nothing to copy to
            return


_COPIER: _StderrCopier | None = None


def start_worker_server() -> None:
    """Starts (once per process) the forkserver with the pipeline's modules preloaded, so that each
    worker of each stage starts forked with them instead of importing them again: a stage's pool
    started in ~1.5 s, longer than a small stage's work. Only modules are loaded: models and taggers
    are created lazily, in the workers. Returns at once: the server imports in the background, and
    a pool waits for it. Later calls change nothing while the server runs."""
    global _COPIER
    import multiprocess
    from multiprocess import forkserver

    multiprocess.get_context("forkserver").set_forkserver_preload(WORKER_MODULES)
    if _COPIER is not None:
        forkserver.ensure_running()
        return
    import sys

    sys.stdout.flush()  # nothing of this process's may land on the server's streams
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(1), os.dup(2)
    try:
        os.dup2(devnull, 1)  # the server (spawned now) takes this process's fds 1 and 2 as its own
        os.dup2(write_end, 2)
        with interrupts_ignored():
            forkserver.ensure_running()
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull, write_end):
            os.close(fd)
    _COPIER = _StderrCopier(read_end)


@contextmanager
def interrupts_ignored():
    """SIGINT ignored while the forkserver is spawned: an ignored signal stays ignored across exec, and
    Python then installs no KeyboardInterrupt handler, so Ctrl-C (sent to the whole process group)
    reaches only this process. Otherwise the server, importing its modules for a second, and each worker
    forked from it (the server hands its children the disposition it started with) printed a traceback
    of where the signal found them, before this process's one line."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # only the main thread sets handlers
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def ignore_interrupts(main_pid: int | None = None) -> None:
    """A pool worker's initializer: Ctrl-C is for the main process, which ends the pool (see
    ``interrupts_ignored``; for a forkserver that another caller started); with ``main_pid``, the worker
    also ends when that process does (``end_with``)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if main_pid is not None:
        end_with(main_pid)


def end_with(pid: int) -> None:
    """Ends this process (exit status 143, as SIGTERM's) soon after process ``pid`` ends, a ``kill -9`` of
    it included: a daemon thread waits on a pidfd of it (Linux), else looks every 2 s.

    Why: after a ``kill -9`` of the main process its pool's workers went on with their tasks, the run's
    manager process waited for connections forever, and the forkserver (held open by its workers) and the
    resource tracker (held open by all of them) stayed behind. A worker's parent is the forkserver, not the
    main process, so the kernel's parent-death signal cannot serve; this watches the main process itself."""
    import threading

    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    if fd is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(143)

    def watch() -> None:
        if fd is not None:
            import select

            poller = select.poll()
            poller.register(fd, select.POLLIN)
            while not poller.poll():
                pass
        else:
            import time

            while True:
                time.sleep(2)
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
        os._exit(143)

    threading.Thread(target=watch, name=f"end-with-{pid}", daemon=True).start()


def drain_worker_output() -> None:
    """Waits until what the workers wrote to stderr so far has reached this process's stderr (before
    a stage hands fd 2 back)."""
    if _COPIER is not None:
        _COPIER.drain()
