"""Limits at the API's edge: the request body size (413) and how fast one client may start conversations
(429), so that nobody can fill `conversations.max_conversations` and evict everyone else's."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from core.errors import RecagentError


class TooManyConversations(RecagentError):
    """A client started conversations faster than `api.conversations_per_minute` (HTTP 429)."""

    def __init__(self, per_minute: int, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(f"at most {per_minute} new conversations a minute per client; try again in "
                         f"{retry_after_s} s")


class CreationLimit:
    """A token bucket per client: `per_minute` creations, refilled continuously, a burst of as many."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic, max_clients: int = 10_000
                 ) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self.max_clients = max_clients
        self.buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, when counted)
        self.lock = threading.Lock()

    def take(self, client: str) -> None:
        """Count one creation for `client`, or raise TooManyConversations (nothing counted)."""
        rate = self.per_minute / 60.0
        with self.lock:
            now = self.clock()
            tokens, then = self.buckets.get(client, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - then) * rate)
            if tokens < 1.0:
                self.buckets[client] = (tokens, now)
                raise TooManyConversations(self.per_minute, max(1, math.ceil((1.0 - tokens) / rate)))
            self.buckets[client] = (tokens - 1.0, now)
            if len(self.buckets) > self.max_clients:
                self._forget_full(now, rate)

    def _forget_full(self, now: float, rate: float) -> None:
        """Drop the clients whose bucket has refilled: they are the same as new ones."""
        full = [c for c, (tokens, then) in self.buckets.items() if tokens + (now - then) * rate >= self.per_minute]
        for client in full:
            del self.buckets[client]


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413 before the route sees it, whether it
    declares its length or comes in chunks. The body is read whole first (at most `limit` bytes kept)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(send, self.limit)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away before sending it all
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _too_large(send, self.limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # after the body: the disconnect an event stream listens for

        await self.app(scope, replay, send)


async def _too_large(send: Any, limit: int) -> None:
    body = json.dumps({"detail": f"request body larger than {limit} bytes"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
