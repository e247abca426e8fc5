"""A small OpenAI-compatible chat-completions server on transformers, for tests.

It serves a real model (one forward pass, the next token and its top logprobs) on
127.0.0.1 and counts requests. Test knobs: ``fail_next`` answers that many requests with
HTTP 429; a prompt containing ``[[SLOW]]`` is answered after ``slow_seconds``; one
containing ``[[MALFORMED]]`` gets a body that is not JSON.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ModelServer:
    def __init__(self, model_dir: str):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        self.lock = threading.Lock()
        self.requests = 0
        self.fail_next = 0
        self.slow_seconds = 3.0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def complete(self, body: dict) -> dict:
        torch = self.torch
        text = self.tokenizer.apply_chat_template(body["messages"], tokenize=False, add_generation_prompt=True)
        ids = self.tokenizer(text, return_tensors="pt").input_ids
        with self.lock, torch.no_grad():
            logp = torch.log_softmax(self.model(ids).logits[0, -1].float(), dim=-1)
        k = min(int(body.get("top_logprobs") or 1), logp.numel())
        top = torch.topk(logp, k)
        tokens = [self.tokenizer.decode([int(i)]) for i in top.indices]
        content = {"token": tokens[0], "logprob": float(top.values[0]),
                   "top_logprobs": [{"token": t, "logprob": float(v)} for t, v in zip(tokens, top.values)]}
        choice = {"index": 0, "message": {"role": "assistant", "content": tokens[0]}, "finish_reason": "length"}
        if body.get("logprobs"):
            choice["logprobs"] = {"content": [content]}
        return {"id": "cmpl-test", "object": "chat.completion", "model": body.get("model"), "choices": [choice]}

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code: int, payload: bytes, headers: dict | None = None):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests += 1
                    fail = server.fail_next > 0
                    server.fail_next -= fail
                if fail:
                    return self._send(429, b'{"error": "rate limited"}', {"Retry-After": "0.05"})
                prompt = body["messages"][-1]["content"]
                if "[[SLOW]]" in prompt:
                    time.sleep(server.slow_seconds)
                if "[[MALFORMED]]" in prompt:
                    return self._send(200, b"{not json")
                self._send(200, json.dumps(server.complete(body)).encode())

        return Handler
