"""An async SUT that asks the simulated provider over HTTP (``EVALHARNESS_PROVIDER_URL``).

A 429 raises :class:`HTTPStatusError` with ``status_code`` 429 and the ``Retry-After`` header,
which workers treat as a rate-limit signal (release, no try used); a 5xx is a transient error
(a retry after backoff).  The job's idempotency key goes out as the ``Idempotency-Key`` header.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any
from urllib.parse import urlsplit

ENV_PROVIDER_URL = "EVALHARNESS_PROVIDER_URL"


class HTTPStatusError(Exception):
    def __init__(self, status_code: int, headers: dict[str, str], body: str) -> None:
        super().__init__(f"HTTP {status_code} from the provider: {body[:200]}")
        self.status_code = status_code
        self.headers = headers


async def post_json(
    url: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    """A minimal HTTP/1.1 POST over asyncio streams (cancellable, no extra dependency)."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    data = json.dumps(body).encode()
    head = [
        f"POST {parts.path or '/'} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(data)}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        await writer.drain()
        status_line = (await reader.readline()).decode("latin-1")
        if not status_line:
            raise ConnectionError("the provider closed the connection without answering")
        status = int(status_line.split()[1])
        resp_headers: dict[str, str] = {}
        while True:
            line = (await reader.readline()).decode("latin-1").strip()
            if not line:
                break
            k, _, v = line.partition(":")
            resp_headers[k.strip().lower()] = v.strip()
        length = int(resp_headers.get("content-length", "0"))
        payload = (await reader.readexactly(length)).decode() if length else ""
        return status, resp_headers, payload
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass


async def answer(question: Any, idempotency_key: str | None = None) -> str:
    url = os.environ.get(ENV_PROVIDER_URL)
    if not url:
        raise RuntimeError(f"{ENV_PROVIDER_URL} is not set: start the simulated provider and export its URL")
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    status, resp_headers, payload = await post_json(url.rstrip("/") + "/v1/answer", {"question": question}, headers)
    if status != 200:
        raise HTTPStatusError(
            status,
            {"Retry-After": resp_headers.get("retry-after", "")} if "retry-after" in resp_headers else {},
            payload,
        )
    result = json.loads(payload)["answer"]
    return str(result)
