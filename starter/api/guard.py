"""What every HTTP answer and request goes through before any route: the API's outer guard.

- **No caching, no sniffing.** Answers carry patient data (a pathway's status, its FHIR
  bundle, task lists), so every answer says `Cache-Control: no-store` (no browser, proxy or
  gateway keeps a copy) and `X-Content-Type-Options: nosniff`.
- **Bodies have a limit.** A body over `ROP_API_MAX_BODY_BYTES` is refused with 413 before
  it is parsed (a 10 MB body was read and parsed, then refused with 422).
- **Guessing tokens is slow.** Refused tokens (401) are counted per source address; past
  `ROP_API_AUTH_FAILURES_PER_MINUTE` within a minute, that address gets 429 with
  Retry-After until the oldest of them is a minute old. Each refusal is logged with the
  address, never the token.

A pure ASGI middleware: it sees every request, including those no route matches.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from starter.api.problems import PROBLEM_JSON

log = structlog.get_logger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

WINDOW_SECONDS = 60.0
"""Refused tokens count against an address for this long."""

SECURITY_HEADERS = [(b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]


@dataclass
class AuthFailures:
    """Refused tokens per source address over the last minute (a sliding window)."""

    per_minute: int
    refused: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, source: str, now: float) -> deque[float]:
        times = self.refused.setdefault(source, deque())
        while times and now - times[0] >= WINDOW_SECONDS:
            times.popleft()
        return times

    def blocked(self, source: str) -> bool:
        return len(self._recent(source, time.monotonic())) >= self.per_minute

    def count(self, source: str) -> int:
        now = time.monotonic()
        times = self._recent(source, now)
        times.append(now)
        if len(self.refused) > 10_000:  # a bound on memory: forget quiet addresses
            for quiet in [a for a, t in self.refused.items() if not self._recent(a, now)]:
                del self.refused[quiet]
        return len(times)

    def seconds_left(self, source: str) -> int:
        times = self._recent(source, time.monotonic())
        if not times:
            return 1
        return max(1, int(WINDOW_SECONDS - (time.monotonic() - times[0])) + 1)


class Guard:
    """The middleware: wraps the FastAPI app."""

    def __init__(self, app: App, *, max_body_bytes: int, auth_failures_per_minute: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.failures = AuthFailures(auth_failures_per_minute)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        source = (scope.get("client") or ("unknown", 0))[0]
        if self.failures.blocked(source):
            log.warning("request refused: too many refused tokens", source=source)
            await _problem(
                send,
                429,
                "Too many refused tokens",
                "this address sent too many invalid tokens; try again later",
                [(b"retry-after", str(self.failures.seconds_left(source)).encode())],
            )
            return
        body = await self._body_within_limit(scope, receive)
        if body is None:
            await _problem(
                send,
                413,
                "Request body too large",
                f"the body may be at most {self.max_body_bytes} bytes",
            )
            return

        replayed = False

        async def replay() -> Message:
            """The body read above, once; then the connection's own messages (a response
            that streams waits on them for the client to go away)."""
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() not in {n for n, _ in SECURITY_HEADERS}
                ]
                message["headers"] = [*headers, *SECURITY_HEADERS]
                if message["status"] == 401:
                    refused = self.failures.count(source)
                    log.warning("token refused", source=source, refused_this_minute=refused)
            await send(message)

        await self.app(scope, replay, guarded_send)

    async def _body_within_limit(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None when it is over the limit (read no further than that)."""
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


async def _problem(
    send: Send,
    status: int,
    title: str,
    detail: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail})
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
        *SECURITY_HEADERS,
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body.encode()})
