"""A bounded load test for ``POST /v1/score``: N requests from C concurrent clients, then it stops.

Each client is a thread with its own keep-alive HTTP connection (``http.client``, no extra
dependency). Used by ``benchmarks/service/service_load.py`` and by the tests.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from urllib.parse import urlsplit

import numpy as np


def run_load(url: str, batches: list[list[dict]], requests: int = 2000, clients: int = 8,
             token: str | None = None, time_limit: float = 600.0) -> dict:
    """Send ``requests`` batches (cycling through ``batches``) to ``url``/v1/score; latency and throughput."""
    parts = urlsplit(url)
    bodies = [json.dumps({"records": b}, ensure_ascii=False).encode("utf-8") for b in batches]
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    lock = threading.Lock()
    next_request = 0
    latencies: list[float] = []
    records = 0
    errors: list[str] = []
    deadline = time.perf_counter() + time_limit

    def client() -> None:
        nonlocal next_request, records
        con = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        while time.perf_counter() < deadline:
            with lock:
                i = next_request
                next_request += 1
            if i >= requests:
                break
            body = bodies[i % len(bodies)]
            start = time.perf_counter()
            try:
                con.request("POST", "/v1/score", body=body, headers=headers)
                response = con.getresponse()
                payload = response.read()
                elapsed = time.perf_counter() - start
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {payload[:200]!r}")
                n = len(json.loads(payload)["results"])
                with lock:
                    latencies.append(elapsed)
                    records += n
            except Exception as e:  # noqa: BLE001 - every failure counts as an error, the run goes on
                with lock:
                    errors.append(f"request {i}: {e}")
                con.close()
                con = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        con.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {
        "requests": len(latencies) + len(errors),
        "ok": len(latencies),
        "errors": len(errors),
        "first_errors": errors[:5],
        "clients": clients,
        "records": records,
        "seconds": round(wall, 2),
        "records_per_s": round(records / wall, 1) if wall else 0.0,
        "requests_per_s": round(len(latencies) / wall, 1) if wall else 0.0,
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "max_ms": round(float(np.max(lat)), 1),
        "stopped_by_time_limit": time.perf_counter() >= deadline,
    }


def start_server(db: str, port: int, *extra: str, timeout: float = 120.0, log=None, tree: str | None = None):
    """Start ``jcurate serve`` in a child process and wait until /healthz answers; the Popen.
    ``tree``: run the code of another checkout (an older commit, as a baseline) instead of this one."""
    import os
    import subprocess
    import sys
    import urllib.request

    env = {**os.environ, "PYTHONPATH": tree} if tree else None
    proc = subprocess.Popen([sys.executable, "-m", "jcurate.cli", "serve", "--db", str(db), "--port", str(port),
                             "--log-level", "warning", *extra], cwd=tree, env=env,
                            stdout=log or subprocess.DEVNULL, stderr=log or subprocess.STDOUT)
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jcurate serve exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"jcurate serve did not answer /healthz within {timeout:.0f} s")


def hammer_while(url: str, record_id: str, write, clients: int = 2):
    """``clients`` threads send ``POST /v1/score`` and ``GET /v1/records/ID`` in a loop while ``write()``
    runs (e.g. a `jcurate run` on the served store); a Counter of the statuses they got, ``"reset"`` for
    a connection the server dropped. Used by ``benchmarks/service/service_probes.py`` and by the tests."""
    from collections import Counter
    from urllib.parse import quote

    import httpx

    statuses: Counter = Counter()
    stop = threading.Event()
    record_path = f"/v1/records/{quote(record_id, safe='')}"  # ids may hold '#' (a bad row's `ma:#line-104`)
    requests = (("POST", "/v1/score", {"json": {"records": [
        {"instruction": "東京について教えて", "output": "東京は日本の首都です。"}]}}), ("GET", record_path, {}))

    def hammer() -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            while not stop.is_set():
                for method, path, kw in requests:
                    try:
                        statuses[c.request(method, path, **kw).status_code] += 1
                    except httpx.TransportError:
                        statuses["reset"] += 1

    threads = [threading.Thread(target=hammer) for _ in range(clients)]
    for t in threads:
        t.start()
    try:
        write()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    return statuses
