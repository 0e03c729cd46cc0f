"""A simulated LLM provider over HTTP, for the demo and the tests: real sockets, real latency,
429 with Retry-After, 5xx, and hangs, all configurable.

    POST /v1/answer   {"question": "..."}  (header Idempotency-Key optional)
      200 {"answer": "..."}  |  429 + Retry-After  |  503  |  no answer (hang)
    GET  /v1/stats    {"requests": n, "by_status": {...}, "keys": {key: count}}

Behaviour per request, in this order: a request whose key is listed in ``fail_first`` gets 429
for its first N calls; otherwise with probability ``hang`` it never answers, ``rate_limit`` a 429,
``errors`` a 503; then it waits a latency drawn from ``latency`` and answers.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .sim import respond


@dataclass
class ProviderConfig:
    latency: tuple[float, float] = (0.05, 0.5)
    rate_limit: float = 0.03
    errors: float = 0.02
    hang: float = 0.0
    retry_after: float = 0.5
    fail_first: dict[str, int] = field(default_factory=dict)  # idempotency key -> number of 429s
    seed: int | None = None


class SimulatedProvider:
    """Runs the HTTP server in a background thread on 127.0.0.1 (port 0 = any free port)."""

    def __init__(self, config: ProviderConfig | None = None, port: int = 0) -> None:
        self.config = config or ProviderConfig()
        self.rnd = random.Random(self.config.seed)
        self.lock = threading.Lock()
        self.requests = 0
        self.by_status: Counter[int] = Counter()
        self.keys: Counter[str] = Counter()
        self._stop = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="provider", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> SimulatedProvider:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.thread.is_alive():
            self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> SimulatedProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": self.requests,
                "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
                "keys": dict(self.keys),
            }

    def _decide(self, key: str) -> str:
        cfg = self.config
        with self.lock:
            self.requests += 1
            if key:
                self.keys[key] += 1
                if self.keys[key] <= cfg.fail_first.get(key, 0):
                    return "429"
            roll = self.rnd.random()
            latency = self.rnd.uniform(*cfg.latency)
        if roll < cfg.hang:
            return "hang"
        roll -= cfg.hang
        if roll < cfg.rate_limit:
            return "429"
        roll -= cfg.rate_limit
        if roll < cfg.errors:
            return "503"
        return f"ok:{latency}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _send(
                self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None, count: bool = True
            ) -> None:
                data = json.dumps(body).encode()
                if count:  # counted before it is sent: a client that has the answer sees it in stats
                    with provider.lock:
                        provider.by_status[status] += 1
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/v1/stats":
                    self._send(200, provider.stats(), count=False)
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    self._send(400, {"error": "body is not JSON"})
                    return
                if self.path != "/v1/answer" or not isinstance(body, dict) or "question" not in body:
                    self._send(400, {"error": 'POST /v1/answer with {"question": ...}'})
                    return
                what = provider._decide(self.headers.get("Idempotency-Key") or "")
                if what == "hang":
                    provider._stop.wait()
                    return
                if what == "429":
                    self._send(429, {"error": "rate limited"}, {"Retry-After": f"{provider.config.retry_after:g}"})
                    return
                if what == "503":
                    self._send(503, {"error": "upstream unavailable"})
                    return
                time.sleep(float(what.split(":", 1)[1]))
                self._send(200, {"answer": respond(str(body["question"]))})

        return Handler


def main() -> None:
    """``python -m evalharness.core.examples.provider [PORT]``: serve until interrupted."""
    import sys

    provider = SimulatedProvider(port=int(sys.argv[1]) if len(sys.argv) > 1 else 0).start()
    print(provider.url, flush=True)
    try:
        provider.thread.join()
    except KeyboardInterrupt:
        provider.stop()


if __name__ == "__main__":
    main()
