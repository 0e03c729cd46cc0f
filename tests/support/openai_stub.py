"""A local stub of an OpenAI-compatible provider, for the tests: a real HTTP server on loopback
(real sockets, real latency) that speaks chat completions and embeddings, and the plain
``{"input": ...}`` service the ``http:URL`` adapter calls.

    POST /v1/chat/completions   {"model", "messages", ...}  -> choices[0].message.content, usage
    POST /v1/embeddings         {"model", "input": [...]}   -> data[].embedding, usage
    POST /answer                {"input": ...}              -> {"output": ..., "usage": ...}
    POST /answer.txt            {"input": ...}              -> the output as text/plain

The chat reply is the last user message (the service's: the input's text) with its markers
removed, so a dataset's expected output can be written next to its input.  A judge prompt (the
last user message starts with "You are an evaluation judge") gets a verdict instead: see
``judge_reply``.

What a request gets, first match wins:

1. ``plan(...)``: behaviours queued for the next requests, in order;
2. a marker in the request's text: ``[stub:B]`` for every request carrying it, ``[stub:B-once]``
   for the first request of each idempotency key (or, without one, of each distinct body);
3. ``ok``.

Behaviours: ``ok``, ``429`` (with ``Retry-After``), ``500``, ``503-retry-after``, ``hang`` (no
answer until the stub stops), ``cut`` (the connection closes mid-answer), ``malformed`` (200 with
a body that is not JSON), ``401``, ``404``.  With ``api_key`` set, a request without
``Authorization: Bearer <api_key>`` gets 401, quoting the key it was sent (as some servers do).

With ``max_concurrent`` set, the stub serves that many requests at once, like a provider's
concurrency quota: a request that would be one more gets ``429`` with ``Retry-After`` at once
(without the latency), and ``peak`` records the most it ever served together.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MARKER = re.compile(r"\[stub:([a-z0-9-]+?)(-once)?\]")
JUDGE_HEADER = "You are an evaluation judge"
JUDGE_MARKER = re.compile(r"\[judge:([a-z0-9.-]+)\]")
BEHAVIOURS = {"ok", "429", "500", "503-retry-after", "hang", "cut", "malformed", "401", "404"}


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: Any
    behaviour: str
    at: float = 0.0  # time.monotonic() when it arrived


@dataclass
class OpenAIStub:
    latency: tuple[float, float] = (0.01, 0.05)
    retry_after: float = 0.2
    api_key: str | None = None
    models: set[str] | None = None  # None: any model exists
    cost_per_token: float | None = None
    seed: int = 0
    max_concurrent: int | None = None
    peak: int = 0
    # How a judge prompt (one that starts with JUDGE_HEADER) is answered; default judge_reply.
    judge: Callable[[str], str] | None = None
    requests: list[Seen] = field(default_factory=list)
    by_behaviour: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._plan: list[str] = []
        self._once: set[str] = set()
        self._serving = 0
        self._rnd = random.Random(self.seed)
        self._stop = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="openai-stub", daemon=True)

    # -- control -----------------------------------------------------------------------

    @property
    def root(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def base_url(self) -> str:
        return self.root + "/v1"

    def plan(self, *behaviours: str) -> None:
        unknown = set(behaviours) - BEHAVIOURS
        assert not unknown, f"unknown stub behaviours {unknown}"
        with self._lock:
            self._plan.extend(behaviours)

    def start(self) -> OpenAIStub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # hanging handlers return
        if self._thread.is_alive():
            self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> OpenAIStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def seen(self, path: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self.requests if path is None or s.path == path]

    # -- decisions ---------------------------------------------------------------------

    def _decide(self, path: str, headers: dict[str, str], body: Any, raw: bytes) -> tuple[str, float]:
        text = json.dumps(body)
        with self._lock:
            if self._plan:
                behaviour = self._plan.pop(0)
            else:
                behaviour = "ok"
                match = MARKER.search(text)
                if match:
                    name, once = match.group(1), match.group(2)
                    if once:
                        who = headers.get("idempotency-key") or hashlib.sha256(raw).hexdigest()
                        if who not in self._once:
                            self._once.add(who)
                            behaviour = name
                    else:
                        behaviour = name
            if (
                behaviour == "ok"
                and self.api_key is not None
                and headers.get("authorization") != f"Bearer {self.api_key}"
            ):
                behaviour = "401"
            if (
                behaviour == "ok"
                and self.models is not None
                and isinstance(body, dict)
                and "model" in body
                and body["model"] not in self.models
            ):
                behaviour = "404"
            if behaviour == "ok" and self.max_concurrent is not None:
                if self._serving >= self.max_concurrent:
                    behaviour = "429-quota"
                else:
                    self._serving += 1
                    self.peak = max(self.peak, self._serving)
            self.requests.append(Seen(path, headers, body, behaviour, time.monotonic()))
            self.by_behaviour[behaviour] += 1
            return behaviour, self._rnd.uniform(*self.latency)

    def _usage(self, prompt: str, completion: str) -> dict[str, Any]:
        p, c = len(prompt.split()), len(completion.split())
        usage: dict[str, Any] = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
        if self.cost_per_token is not None:
            usage["cost"] = round((p + c) * self.cost_per_token, 10)
        return usage

    # -- the server --------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(
                self,
                status: int,
                body: bytes,
                content_type: str = "application/json",
                headers: dict[str, str] | None = None,
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                self._send(status, json.dumps(body).encode(), headers=headers)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"null")
                except ValueError:
                    self._json(400, {"error": {"message": "the body is not JSON"}})
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                behaviour, latency = stub._decide(self.path, headers, body, raw)
                if behaviour == "429-quota":
                    self._json(
                        429,
                        {"error": {"message": "Too many concurrent requests", "type": "rate_limit"}},
                        {"Retry-After": f"{stub.retry_after:g}"},
                    )
                    return
                try:
                    self._answer(behaviour, latency, headers, body)
                finally:
                    if behaviour == "ok" and stub.max_concurrent is not None:
                        with stub._lock:
                            stub._serving -= 1

            def _answer(self, behaviour: str, latency: float, headers: dict[str, str], body: Any) -> None:
                if behaviour == "hang":
                    stub._stop.wait()
                    self.close_connection = True
                    return
                time.sleep(latency)  # real latency, so calls overlap as they do against a provider
                if behaviour == "cut":
                    # a status line and half a body, then the socket closes
                    self.wfile.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n"
                        b'{"choices": [{"mess'
                    )
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if behaviour == "429":
                    self._json(
                        429,
                        {"error": {"message": "Rate limit reached", "type": "rate_limit"}},
                        {"Retry-After": f"{stub.retry_after:g}"},
                    )
                elif behaviour == "503-retry-after":
                    self._json(503, {"error": {"message": "overloaded"}}, {"Retry-After": f"{stub.retry_after:g}"})
                elif behaviour == "500":
                    self._json(500, {"error": {"message": "internal error in the stub"}})
                elif behaviour == "malformed":
                    self._send(200, b'{"choices": [{"message": {"content": "trunc')
                elif behaviour == "401":
                    sent = headers.get("authorization", "").removeprefix("Bearer ")
                    self._json(
                        401,
                        {
                            "error": {
                                "message": f"Incorrect API key provided: {sent or '(none)'}",
                                "type": "invalid_request_error",
                            }
                        },
                    )
                elif behaviour == "404":
                    model = body.get("model") if isinstance(body, dict) else None
                    self._json(
                        404,
                        {"error": {"message": f"The model `{model}` does not exist", "type": "invalid_request_error"}},
                    )
                else:
                    self._ok(body)

            def _ok(self, body: Any) -> None:
                if self.path == "/v1/chat/completions":
                    messages = body.get("messages") or []
                    users = [m.get("content", "") for m in messages if m.get("role") == "user"]
                    answer = MARKER.sub("", users[-1] if users else "").strip()
                    if users and str(users[-1]).startswith(JUDGE_HEADER):
                        answer = (stub.judge or judge_reply)(str(users[-1]))
                    prompt = " ".join(str(m.get("content", "")) for m in messages)
                    self._json(
                        200,
                        {
                            "id": "chatcmpl-stub",
                            "object": "chat.completion",
                            "model": body.get("model"),
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": answer},
                                    "finish_reason": "stop",
                                }
                            ],
                            "usage": stub._usage(prompt, answer),
                        },
                    )
                elif self.path == "/v1/embeddings":
                    inputs = body.get("input")
                    inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
                    data = [
                        {"object": "embedding", "index": i, "embedding": _vector(str(t))} for i, t in enumerate(inputs)
                    ]
                    self._json(
                        200,
                        {
                            "object": "list",
                            "model": body.get("model"),
                            "data": data,
                            "usage": stub._usage(" ".join(map(str, inputs)), ""),
                        },
                    )
                elif self.path in ("/answer", "/answer.txt"):
                    given = body.get("input") if isinstance(body, dict) else None
                    text = given if isinstance(given, str) else json.dumps(given)
                    answer = MARKER.sub("", text).strip()
                    if self.path == "/answer.txt":
                        self._send(200, answer.encode(), "text/plain; charset=utf-8")
                    else:
                        self._json(200, {"output": answer, "usage": stub._usage(text, answer)})
                else:
                    self._json(404, {"error": {"message": f"no route {self.path}"}})

        return Handler


def _section(prompt: str, name: str) -> str:
    match = re.search(rf"^{name}:\n(.*?)(?=\n\n[A-Z ]+:\n|\n\nReply with|\Z)", prompt, re.S | re.M)
    return match.group(1).strip() if match else ""


def judge_reply(prompt: str) -> str:
    """The stub judge: ``[judge:0.25]`` in the prompt (the output carries it) answers that score,
    ``[judge:nonsense]`` prose that is not JSON, ``[judge:range]`` a score of 7, ``[judge:fenced]``
    a verdict inside a Markdown fence; otherwise the score is 1.0 when the expected text occurs in
    the actual answer, else 0.0.  A refusal prompt gets a refusal verdict: the answer refused
    when it contains "cannot"."""
    actual = _section(prompt, "ACTUAL")
    if "judge of refusals" in prompt:
        refused = "cannot" in actual.lower()
        wanted = "A refusal is expected: yes" in prompt
        kind = "appropriate" if refused == wanted else ("missing" if wanted else "unnecessary")
        return json.dumps(
            {"score": 1.0 if refused == wanted else 0.0, "refusal": kind, "reason": "stub refusal verdict"}
        )
    marker = JUDGE_MARKER.search(actual)
    if marker:
        what = marker.group(1)
        if what == "nonsense":
            return "The answer looks fine to me."
        if what == "range":
            return json.dumps({"score": 7, "reason": "out of range"})
        if what == "fenced":
            return "```json\n" + json.dumps({"score": 0.5, "reason": "fenced"}) + "\n```"
        return json.dumps({"score": float(what), "reason": f"marked {what}"})
    expected = _section(prompt, "EXPECTED")
    return json.dumps({"score": 1.0 if expected and expected in actual else 0.0, "reason": "stub comparison"})


def _vector(text: str, dims: int = 8) -> list[float]:
    """A deterministic embedding: equal texts get equal vectors."""
    digest = hashlib.sha256(text.encode()).digest()
    return [round((b - 127.5) / 127.5, 6) for b in digest[:dims]]
