"""`jcurate judge` and `jcurate serve --config` against a judge server that is down or that fails
every judgement: a one-line refusal before any work, and a non-zero exit when nothing was judged."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from store.query import run_query
from tests.conftest import ROOT
from tests.runs.test_resume import default_sigint


def closed_port() -> int:
    """A loopback port that nothing listens on: bound, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def judge_config(tmp_path, base_url: str):
    path = tmp_path / "judge.yaml"
    path.write_text(f"judge:\n  model: some-model\n  base_url: {base_url}\n  max_retries: 1\n", encoding="utf-8")
    return path


def jcurate(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jcurate.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def store(default_run, tmp_path):
    db = tmp_path / "store.duckdb"
    shutil.copy(default_run[1], db)
    return db


def judge_rows(db) -> list[tuple]:
    return run_query(db, "SELECT score, raw FROM scores WHERE scorer = 'judge'")[1]


def test_judge_refuses_a_server_that_does_not_answer(store, tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    config = judge_config(tmp_path, url)
    start = time.monotonic()
    proc = jcurate("judge", "--all", "--config", str(config), "--db", str(store))
    assert proc.returncode == 2
    assert time.monotonic() - start < 30  # one refused connection, not a retried request per record
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert url in lines[0] and str(config) in lines[0] and "does not answer" in lines[0]
    assert judge_rows(store) == []


def test_serve_refuses_a_judge_server_that_does_not_answer(store, tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    config = judge_config(tmp_path, url)
    proc = jcurate("serve", "--config", str(config), "--db", str(store), "--port", str(closed_port()), timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert url in lines[0] and str(config) in lines[0] and "the service did not start" in lines[0]


class NotFound(BaseHTTPRequestHandler):
    """A server that answers, but not as an OpenAI-compatible one: 404 to every path."""

    def do_GET(self):
        self.send_error(404)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_error(404)

    def log_message(self, *args):
        pass


def test_judge_exits_non_zero_when_every_judgement_fails(store, tmp_path):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        config = judge_config(tmp_path, f"http://127.0.0.1:{httpd.server_address[1]}/v1")
        proc = jcurate("judge", "--sample", "3", "--config", str(config), "--db", str(store))
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("jcurate: error: all 3 judgements failed")
    assert "Traceback" not in proc.stderr
    # failed judgements are stored with their reason by design (docs/scoring.md), and tried again next time
    rows = judge_rows(store)
    assert len(rows) == 3 and all(score is None and "HTTP 404" in raw for score, raw in rows)


class Slow(NotFound):
    """Lists its models at once; answers a judgement after a while (404)."""

    posts = 0

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"data": []}')

    def do_POST(self):
        type(self).posts += 1
        time.sleep(2)
        super().do_POST()


def test_ctrl_c_during_judging_says_the_same_command_goes_on(store, tmp_path):
    import os
    import signal

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        config = judge_config(tmp_path, f"http://127.0.0.1:{httpd.server_address[1]}/v1")
        proc = subprocess.Popen([sys.executable, "-m", "jcurate.cli", "judge", "--sample", "3", "--config", str(config),
                                 "--db", str(store)], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, preexec_fn=default_sigint)
        deadline = time.monotonic() + 60
        while not Slow.posts and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == ("jcurate: interrupted; run the same command again to judge only the "
                                            "records not judged yet")
