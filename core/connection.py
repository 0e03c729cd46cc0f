"""Redis clients made from a URL (``redis://``, ``rediss://``, ``unix://``, with passwords and ACL users)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis
import redis.exceptions

# What a dropped or unreachable server raises: the loops that ride out a Redis restart catch these.
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


def async_client(url: str, **kwargs: Any) -> aioredis.Redis:
    """An asyncio client with decoded (str) replies."""
    opts: dict[str, Any] = {"decode_responses": True}
    if not url.startswith("unix:"):
        opts["socket_keepalive"] = True
    opts.update(kwargs)
    return aioredis.Redis.from_url(url, **opts)


def sync_client(url: str, **kwargs: Any) -> redis.Redis:
    """A blocking client with decoded (str) replies, for short command-line actions."""
    opts: dict[str, Any] = {"decode_responses": True}
    opts.update(kwargs)
    return redis.Redis.from_url(url, **opts)


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, for display."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
