"""`Idempotency-Key` on POST: a repeated request gets the first answer, and runs nothing.

The first request with a key claims it (a row with no answer yet), runs, and stores its
answer, refusals included, so a retry after a lost response can never start a second
pathway or record a step twice. A key is scoped to its caller. Reusing a key for a
different request is refused (422); a retry while the first is still running gets 409.
An answer from our side's failure (5xx) is not kept: the client may retry with the key.
Answers are kept for `ROP_API_IDEMPOTENCY_HOURS` (72 by default), then the key is free.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg
import structlog
from fastapi import Request
from fastapi.responses import Response

from starter.api.auth import Principal
from starter.api.problems import ProblemError
from starter.pathways import MAX_IDEMPOTENCY_KEY_LENGTH, is_idempotency_key, keyed_update_id

log = structlog.get_logger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"


async def fingerprint(request: Request) -> str:
    """What makes two requests the same: method, path, content type and body."""
    digest = hashlib.sha256()
    for part in (request.method, request.url.path, request.headers.get("content-type", "")):
        digest.update(part.encode() + b"\0")
    digest.update(await request.body())
    return digest.hexdigest()


def update_id_for(principal: Principal, key: str | None) -> str | None:
    """The Temporal Update id for a keyed request: Temporal applies an Update id once, so
    even a retry after our 5xx (whose answer is not kept here) cannot apply a step twice.
    Hashed, since Update ids are stored unencrypted in the pathway's history."""
    if key is None:
        return None
    return keyed_update_id("api", principal.identity, key)


def check_key(key: str) -> str:
    if not is_idempotency_key(key):
        raise ProblemError(
            422,
            "Invalid Idempotency-Key",
            f"{HEADER}: 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable characters",
        )
    return key


class IdempotencyStore:
    """The first answers to keyed requests, in PostgreSQL."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def run(
        self,
        request: Request,
        principal: Principal,
        key: str | None,
        handle: Callable[[], Awaitable[Response]],
        on_replay: Callable[[Response], Awaitable[None]] | None = None,
    ) -> Response:
        """Answer with `handle()`, or with the stored first answer to this key (after
        `on_replay`, which writes the access log for what the answer shows)."""
        if key is None:
            return await _answer(handle)
        key = check_key(key)
        print_ = await fingerprint(request)
        claimed = await self._pool.fetchval(
            "INSERT INTO api_idempotency (principal, key, fingerprint) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING RETURNING true",
            principal.identity,
            key,
            print_,
        )
        if not claimed:
            replayed = await self._replay(principal, key, print_)
            if on_replay is not None:
                await on_replay(replayed)
            return replayed
        try:
            response = await _answer(handle)
        except BaseException:
            await self._release(principal, key)
            raise
        if response.status_code >= 500:
            await self._release(principal, key)
            return response
        await self._pool.execute(
            "UPDATE api_idempotency SET status_code = $3, content_type = $4, location = $5, "
            "body = $6 WHERE principal = $1 AND key = $2",
            principal.identity,
            key,
            response.status_code,
            response.headers.get("content-type"),
            response.headers.get("location"),
            bytes(response.body),
        )
        return response

    async def purge(self, older_than: timedelta) -> int:
        """Forget answers older than `older_than` (a key is then free again); how many."""
        result: str = await self._pool.execute(
            "DELETE FROM api_idempotency WHERE created_at < now() - $1::interval", older_than
        )
        return int(result.split()[-1])

    async def purge_regularly(self, older_than: timedelta, every: timedelta) -> None:
        """Purge now and then every `every`, until cancelled (the API's lifetime)."""
        while True:
            purged = await self.purge(older_than)
            if purged:
                log.info("idempotency answers purged", count=purged)
            await asyncio.sleep(every.total_seconds())

    async def _replay(self, principal: Principal, key: str, print_: str) -> Response:
        row = await self._pool.fetchrow(
            "SELECT fingerprint, status_code, content_type, location, body "
            "FROM api_idempotency WHERE principal = $1 AND key = $2",
            principal.identity,
            key,
        )
        if row is None:  # released by a failed first attempt just now
            raise ProblemError(409, "Request in progress", f"retry the {HEADER} shortly")
        if row["fingerprint"] != print_:
            raise ProblemError(
                422,
                "Idempotency-Key reused",
                f"{HEADER} {key!r} was used for a different request; use a new key",
            )
        if row["status_code"] is None:
            raise ProblemError(
                409, "Request in progress", f"the first request with {HEADER} {key!r} is running"
            )
        headers = {REPLAYED_HEADER: "true"}
        if row["location"]:
            headers["Location"] = row["location"]
        return Response(
            content=row["body"],
            status_code=row["status_code"],
            media_type=row["content_type"],
            headers=headers,
        )

    async def _release(self, principal: Principal, key: str) -> None:
        await self._pool.execute(
            "DELETE FROM api_idempotency WHERE principal = $1 AND key = $2", principal.identity, key
        )


async def _answer(handle: Callable[[], Awaitable[Response]]) -> Response:
    try:
        return await handle()
    except ProblemError as problem:
        return problem.response()
