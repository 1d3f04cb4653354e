"""Connection pool and versioned schema migrations for the record service."""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import resources
from typing import TypeAlias
from urllib.parse import urlsplit

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

log = structlog.get_logger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Any constant serves; it keeps two workers starting together from migrating twice.
_MIGRATION_LOCK_ID = 0x524F50


Connection: TypeAlias = "asyncpg.Connection | PoolConnectionProxy[asyncpg.Record]"
"""A connection of its own or one borrowed from a pool: what record queries take."""

WORKER_ROLE = "rop_worker"
"""The least-privilege role the worker's activities act as (migration 0005)."""

API_ROLE = "rop_api"
"""The least-privilege role the HTTP API acts as (migration 0006): it reads the records,
writes the access log and its idempotency answers, and completes informational tasks."""


class DatabaseUnavailable(ConnectionError):
    """The record database refused the login or could not be reached. The message names the
    login, host and database, never the password, so a service can stop with one line."""


async def create_pool(database_url: str, *, role: str | None = None) -> asyncpg.Pool:
    """A small pool: activities hold a connection only for one short transaction.

    With `role`, every connection acts as that role (the login must be a member of it).
    Raises `DatabaseUnavailable` when the first connection is refused or cannot be made.
    """
    try:
        pool = await asyncpg.create_pool(
            database_url,
            min_size=1,
            max_size=10,
            server_settings={"role": role} if role else None,
            reset=_no_session_reset,
        )
    except (
        asyncpg.InvalidAuthorizationSpecificationError,
        asyncpg.InvalidCatalogNameError,
        OSError,
    ) as error:
        raise database_unavailable(error, database_url) from None
    assert pool is not None
    return pool


def database_unavailable(error: Exception, database_url: str) -> DatabaseUnavailable:
    """`error` of connecting to `database_url` as one line without the password."""
    try:
        parts = urlsplit(database_url)
        where = f"login {parts.username or '(default)'!r} at {parts.hostname or 'a local socket'}"
        database = parts.path.lstrip("/") or "(default)"
    except ValueError:
        where, database = "DATABASE_URL", "(unknown)"
    if isinstance(error, asyncpg.InvalidAuthorizationSpecificationError):
        return DatabaseUnavailable(f"the record database refused {where}: {error}")
    if isinstance(error, asyncpg.InvalidCatalogNameError):
        return DatabaseUnavailable(f"the record database has no database {database!r}: {error}")
    return DatabaseUnavailable(f"cannot reach the record database ({where}): {error}")


async def _no_session_reset(connection: asyncpg.Connection) -> None:
    """Nothing to reset: our queries leave no session state behind (no SET, LISTEN,
    cursors outside a transaction or session-level locks; the role is a connection
    setting).

    asyncpg's default reset (`RESET ALL`, `UNLISTEN *`, ...) was one more round trip on
    every release, for nothing (measured: 4 % of the worker's CPU in `make bench`). A
    connection given back inside a transaction (a call cancelled mid-way) is still rolled
    back: the pool does that before it calls this.
    """


SERVICE_ROLES = (WORKER_ROLE, API_ROLE)
"""The group roles a service's login may be made a member of (`grant_service_login`)."""


async def grant_service_login(pool: asyncpg.Pool, login: str, password: str, role: str) -> bool:
    """Make `login` a login with `password` that is a member of the service role `role`,
    as the schema owner (deploy/README, "Database logins"); True if it was created.

    Idempotent: an existing login gets the password and the membership again, so a
    one-shot that runs at every start (compose's `rop-logins`) never fails on its second
    run and a changed secret takes effect. Identifiers and the password are quoted by the
    server (`format` with %I and %L), never pasted into SQL.
    """
    if role not in SERVICE_ROLES:
        raise ValueError(f"{role!r} is not a service role ({', '.join(SERVICE_ROLES)})")
    async with pool.acquire() as connection, connection.transaction():
        exists = await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", login)
        template = (
            "ALTER ROLE %I LOGIN PASSWORD %L"
            if exists
            else "CREATE ROLE %I LOGIN PASSWORD %L IN ROLE %I"
        )
        statement = await connection.fetchval(
            f"SELECT format('{template}', $1::text, $2::text, $3::text)", login, password, role
        )
        await connection.execute(statement)
        if exists:
            await connection.execute(
                await connection.fetchval(
                    "SELECT format('GRANT %I TO %I', $1::text, $2::text)", role, login
                )
            )
    return not exists


class MigrationsPending(RuntimeError):
    """The record database's schema is behind this code; the message names what to run."""


async def pending_migrations(database: asyncpg.Pool | Connection) -> list[str]:
    """The migrations this code ships that the database has not applied, by name."""
    try:
        done = await _applied_versions(database)
    except asyncpg.UndefinedTableError:
        done = set()
    return [name for version, name, _ in migration_files() if version not in done]


async def _applied_versions(database: asyncpg.Pool | Connection) -> set[int]:
    return {row["version"] for row in await database.fetch("SELECT version FROM schema_migrations")}


async def open_records(database_url: str, role: str, *, migrate_first: bool) -> asyncpg.Pool:
    """The pool a service (the worker, the API) acts through, as `role`, on a current schema.

    Migrations are a step of their own (`rop db migrate`, with the schema owner's login), so
    the services can run with logins that own nothing and are only members of their role.
    `migrate_first` (`ROP_MIGRATE_ON_START`) migrates with `database_url`'s login first, for
    a local set-up where that login owns the schema. A schema still behind stops the
    service with `MigrationsPending`, before it takes any work.
    """
    if migrate_first:
        owner = await create_pool(database_url)
        try:
            await migrate(owner)
        finally:
            await owner.close()
    pool = await create_pool(database_url, role=role)
    try:
        pending = await pending_migrations(pool)
    except BaseException:
        await pool.close()
        raise
    if pending:
        await pool.close()
        raise MigrationsPending(
            f"the record database has migrations pending ({', '.join(pending)}): run "
            "`rop db migrate` with the schema owner's login first"
        )
    return pool


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped in `activities/migrations`, in order."""
    found = []
    for entry in resources.files("activities.migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


async def migrate(
    pool: asyncpg.Pool, files: Sequence[tuple[int, str, str]] | None = None
) -> list[str]:
    """Apply the migrations this database has not seen yet; return their names.

    `files`: the migrations to consider (default: all that ship, `migration_files()`); a
    prefix of them leaves a database as an older release left it, to test an upgrade.
    """
    applied: list[str] = []
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK_ID)
        await connection.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = await _applied_versions(connection)
        for version, name, sql in migration_files() if files is None else files:
            if version in done:
                continue
            await connection.execute(sql)
            await connection.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
            )
            applied.append(name)
    if applied:
        log.info("migrations applied", migrations=applied)
    return applied
