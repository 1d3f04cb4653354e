"""Worklist sessions: who a browser is signed in as, kept server-side (PostgreSQL).

The cookie holds a random id only (HttpOnly, SameSite=Lax, Secure outside local mode); the
table keeps its SHA-256, so a copy of the table opens no session. A session authenticates
as a bearer token the OIDC provider issued (checked again on every request, so its expiry
and the API's rules hold) or, in local mode only, as a demo person's key holder. Each has a
CSRF token that every form carries back.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

COOKIE = "rop_worklist"
LIFETIME = timedelta(hours=8)
SIGNIN_LIFETIME = timedelta(minutes=10)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    """A signed-in browser: what it authenticates as, and its CSRF token."""

    bearer: str | None
    key_holder: str | None
    csrf: str


async def start(
    pool: asyncpg.Pool, *, bearer: str | None = None, key_holder: str | None = None
) -> str:
    """A new session; the cookie's value."""
    session_id = secrets.token_urlsafe(32)
    await pool.execute(
        "INSERT INTO worklist_sessions (id_sha256, bearer, key_holder, csrf, expires_at) "
        "VALUES ($1, $2, $3, $4, $5)",
        _digest(session_id),
        bearer,
        key_holder,
        secrets.token_urlsafe(24),
        datetime.now(UTC) + LIFETIME,
    )
    return session_id


async def find(pool: asyncpg.Pool, cookie: str | None) -> Session | None:
    """The live session the cookie names, if any."""
    if not cookie or len(cookie) > 100:
        return None
    row = await pool.fetchrow(
        "SELECT bearer, key_holder, csrf FROM worklist_sessions "
        "WHERE id_sha256 = $1 AND expires_at > now()",
        _digest(cookie),
    )
    return None if row is None else Session(row["bearer"], row["key_holder"], row["csrf"])


async def end(pool: asyncpg.Pool, cookie: str | None) -> None:
    """Sign out: the session is gone (and any expired with it)."""
    if cookie:
        await pool.execute(
            "DELETE FROM worklist_sessions WHERE id_sha256 = $1 OR expires_at < now()",
            _digest(cookie),
        )


async def remember_signin(pool: asyncpg.Pool, state: str, code_verifier: str, nonce: str) -> None:
    """A sign-in under way: its PKCE verifier and nonce, by its state."""
    await pool.execute(
        "INSERT INTO worklist_signins (state_sha256, code_verifier, nonce) VALUES ($1, $2, $3)",
        _digest(state),
        code_verifier,
        nonce,
    )


async def take_signin(pool: asyncpg.Pool, state: str) -> tuple[str, str] | None:
    """The verifier and nonce of the sign-in `state` began, once (a replayed callback finds
    none), if it began less than ten minutes ago."""
    row = await pool.fetchrow(
        "DELETE FROM worklist_signins WHERE state_sha256 = $1 RETURNING code_verifier, nonce, "
        "created_at",
        _digest(state),
    )
    if row is None or row["created_at"] < datetime.now(UTC) - SIGNIN_LIFETIME:
        return None
    return row["code_verifier"], row["nonce"]
