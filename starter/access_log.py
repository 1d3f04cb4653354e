"""Who read or changed which pathway, when, and what: the access log.

Pasientjournalloven § 22 and Normen require that every access to a patient's records can
be traced to a person or system. The HTTP API writes a row for each read, change or
refused attempt before it answers; `rop access-log PATHWAY` shows them. The table is
append-only (migration 0006), and each row is chained to the one before it by a hash
(migration 0007), so a row changed or removed by someone who got past the append-only
trigger is found by `rop access-log verify` (`verify_chain`).
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


class Grounds(StrEnum):
    """Why the caller could see the pathway (need of service, migration 0008)."""

    SERVICE = "service"  # a system acting for others, or a role that sees no clinical content
    UNIT = "unit"  # the pathway belongs to one of the person's units
    PARTICIPANT = "participant"  # the pathway names the person
    BREAK_GLASS = "break-glass"  # emergency access with a stated reason, followed up
    PATIENT = "patient"  # the patient, reading who accessed their own pathways


NO_PATHWAY = "-"
"""The workflow id of an access that names no pathway (a decode the UI gave no id for)."""


class Access(StrictModel):
    """One access to be written."""

    principal: str
    roles: str
    workflow_id: str
    action: str
    outcome: Outcome
    grounds: Grounds | None = None
    reason: str | None = None
    """The reason a person stated for breaking the glass."""
    namespace: str | None = None
    """The Temporal namespace, for decodes of its payloads."""
    person: str | None = None
    """A person's HPR number (a service's access names none)."""
    organisation: str | None = None
    """The organisation number the person acted for, where their sign-in says."""
    purpose: str | None = None
    """The purpose of use the sign-in's trust-framework grounds state (e.g. TREAT)."""
    decision_ref: str | None = None
    """The reference of the decision that gave the care relationship, where stated."""


class AccessRecord(Access):
    """One row of the access log."""

    id: int
    at: datetime


async def record(pool: asyncpg.Pool | Connection, accesses: Iterable[Access]) -> None:
    """Write the accesses in one statement; the caller answers only once this returned."""
    rows = [
        (
            a.principal,
            a.roles,
            a.workflow_id,
            a.action,
            a.outcome.value,
            a.grounds,
            a.reason,
            a.namespace,
            a.person,
            a.organisation,
            a.purpose,
            a.decision_ref,
        )
        for a in accesses
    ]
    if rows:
        await pool.executemany(
            "INSERT INTO access_log (principal, roles, workflow_id, action, outcome, grounds, "
            "reason, namespace, person, organisation, purpose, decision_ref) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            rows,
        )


_COLUMNS = (
    "id, at, principal, roles, workflow_id, action, outcome, grounds, reason, namespace, "
    "person, organisation, purpose, decision_ref"
)


async def for_pathway(connection: Connection, workflow_id: str) -> list[AccessRecord]:
    """Every access to one pathway, oldest first."""
    rows = await connection.fetch(
        f"SELECT {_COLUMNS} FROM access_log WHERE workflow_id = $1 ORDER BY id",  # noqa: S608
        workflow_id,
    )
    return [AccessRecord.model_validate(dict(row)) for row in rows]


async def for_pathways(
    connection: Connection,
    workflow_ids: Sequence[str],
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[AccessRecord]:
    """Every access to the pathways within the period, oldest first (one indexed lookup per
    pathway: `access_log_workflow_idx`)."""
    rows = await connection.fetch(
        f"SELECT {_COLUMNS} FROM access_log WHERE workflow_id = ANY ($1) "  # noqa: S608
        "AND ($2::timestamptz IS NULL OR at >= $2) AND ($3::timestamptz IS NULL OR at < $3) "
        "ORDER BY id",
        list(workflow_ids),
        since,
        until,
    )
    return [AccessRecord.model_validate(dict(row)) for row in rows]


async def broken_glass(connection: Connection, since: datetime) -> list[AccessRecord]:
    """Every access made by breaking the glass since `since`, oldest first: the list a
    privacy officer goes through to follow each one up."""
    rows = await connection.fetch(
        f"SELECT {_COLUMNS} FROM access_log WHERE grounds = 'break-glass' AND at >= $1 "  # noqa: S608
        "ORDER BY id",
        since,
    )
    return [AccessRecord.model_validate(dict(row)) for row in rows]


MOST_PROBLEMS = 1000
"""`verify_chain` names at most this many problems (and says how many more there are)."""


async def verify_chain(connection: Connection) -> tuple[int, list[str]]:
    """Check the whole log's hash chain: (rows, what is wrong, in order; empty if intact).

    The chain is checked in the database, row by row in one pass, and only the rows that
    break it come back: memory stays bounded however long the log (a million rows or more).
    """
    rows = await connection.fetchval("SELECT count(*) FROM access_log")
    broken = await connection.fetch(
        f"""SELECT id, chain_seq, intact, previous_seq, count(*) OVER () AS problems FROM (
               SELECT id, chain_seq, row_hash = rop_access_log_hash(
                          lag(row_hash) OVER chain, chain_seq, at, principal, roles,
                          workflow_id, action, outcome, grounds, reason, namespace,
                          person, organisation, purpose, decision_ref) AS intact,
                      coalesce(lag(chain_seq) OVER chain, 0) AS previous_seq
               FROM access_log WINDOW chain AS (ORDER BY chain_seq)) checked
           WHERE chain_seq <> previous_seq + 1 OR NOT intact
           ORDER BY chain_seq LIMIT {MOST_PROBLEMS}"""  # noqa: S608 - a constant
    )
    head = await connection.fetchrow("SELECT chain_seq, row_hash FROM access_log_head")
    last_row = await connection.fetchrow(
        "SELECT chain_seq, row_hash FROM access_log ORDER BY chain_seq DESC LIMIT 1"
    )
    problems: list[str] = []
    for row in broken:
        seq, previous = row["chain_seq"], row["previous_seq"]
        if seq != previous + 1:
            problems.append(
                f"removed: position{'s' if seq - previous > 2 else ''} "
                f"{_span(previous + 1, seq - 1)} (before row id {row['id']})"
            )
        else:
            problems.append(f"changed: row id {row['id']} (position {seq})")
    if broken and broken[0]["problems"] > MOST_PROBLEMS:
        problems.append(f"... and {broken[0]['problems'] - MOST_PROBLEMS} more")
    last = last_row["chain_seq"] if last_row else 0
    if head is None or head["chain_seq"] != last:
        said = "none" if head is None else head["chain_seq"]
        problems.append(f"removed: the newest rows after position {last} (the head says {said})")
    elif last_row is not None and head["row_hash"] != last_row["row_hash"]:
        problems.append(f"changed: the newest row (position {last}) or the head")
    return rows, problems


def _span(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


def render(records: Sequence[AccessRecord]) -> str:
    """The log as lines a person reads: Oslo time, who (roles), what, how it ended."""
    if not records:
        return "(no access recorded)"
    return "\n".join(_line(r) for r in records)


def _line(r: AccessRecord) -> str:
    line = (
        f"{r.at.astimezone(OSLO).isoformat(timespec='seconds')}  {r.principal} ({r.roles})  "
        f"{r.action}  {r.outcome.value}"
    )
    if r.grounds is not None:
        line += f"  [{r.grounds.value}]"
    if r.reason is not None:
        line += f"  reason: {r.reason}"
    if r.namespace is not None:
        line += f"  namespace: {r.namespace}"
    return line
