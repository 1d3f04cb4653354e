"""Who read or changed which pathway, when, and what: the access log.

Pasientjournalloven § 22 and Normen require that every access to a patient's records can
be traced to a person or system. The HTTP API writes a row for each read, change or
refused attempt before it answers; `rop access-log PATHWAY` shows them. The table is
append-only (migration 0006): rows cannot be changed or removed, not even by the owner.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from enum import StrEnum

import asyncpg

from activities.database import Connection
from rop_domain.calendar import OSLO
from rop_domain.models import StrictModel


class Outcome(StrEnum):
    """How an access ended."""

    OK = "ok"
    REJECTED = "rejected"  # the pathway refused the step; nothing was recorded
    NOT_FOUND = "not-found"
    DENIED = "denied"  # the caller's role may not do this
    FAILED = "failed"  # our side failed (Temporal or the database)


class Access(StrictModel):
    """One access to be written."""

    principal: str
    roles: str
    workflow_id: str
    action: str
    outcome: Outcome


class AccessRecord(Access):
    """One row of the access log."""

    id: int
    at: datetime


async def record(pool: asyncpg.Pool, accesses: Iterable[Access]) -> None:
    """Write the accesses in one statement; the caller answers only once this returned."""
    rows = [(a.principal, a.roles, a.workflow_id, a.action, a.outcome.value) for a in accesses]
    if rows:
        await pool.executemany(
            "INSERT INTO access_log (principal, roles, workflow_id, action, outcome) "
            "VALUES ($1, $2, $3, $4, $5)",
            rows,
        )


async def for_pathway(connection: Connection, workflow_id: str) -> list[AccessRecord]:
    """Every access to one pathway, oldest first."""
    rows = await connection.fetch(
        "SELECT id, at, principal, roles, workflow_id, action, outcome FROM access_log "
        "WHERE workflow_id = $1 ORDER BY id",
        workflow_id,
    )
    return [AccessRecord.model_validate(dict(row)) for row in rows]


def render(records: Sequence[AccessRecord]) -> str:
    """The log as lines a person reads: Oslo time, who (roles), what, how it ended."""
    if not records:
        return "(no access recorded)"
    return "\n".join(
        f"{r.at.astimezone(OSLO).isoformat(timespec='seconds')}  {r.principal} ({r.roles})  "
        f"{r.action}  {r.outcome.value}"
        for r in records
    )
