"""One SQL statement that records a whole step: its events, summary change and tasks.

A step used to be a transaction of five to eight statements, each a round trip to
PostgreSQL (measured: the record service was a third of the worker's CPU in `make
bench`, most of it in those round trips). Data-modifying CTEs do the same in one:
a statement is atomic, so the step is written whole or not at all, as before.

The first event decides: if its idempotency key is already there, the step was recorded
by an earlier attempt and the statement writes nothing. All parts of the statement see
the database as it was before it, so the tasks a step closes are those open before the
step, never the ones it raises (as when closing ran before queueing).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import asyncpg

from activities.database import Connection
from activities.rendering import render_task
from activities.task_owner import owner_of
from rop_domain.commands import PathwayStep, SummaryChange
from rop_domain.parties import Party, of_step

_STATEMENT = """
WITH first AS (
    INSERT INTO pathway_events (idempotency_key, workflow_id, kind, actor, occurred_at, details)
    VALUES ($1, $2, $3, $4, $5, $6::jsonb)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING true AS fresh
), more_events AS (
    INSERT INTO pathway_events (idempotency_key, workflow_id, kind, actor, occurred_at, details)
    SELECT e.key, $2, e.kind, e.actor, e.occurred_at, e.details
    FROM unnest($7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::jsonb[])
         WITH ORDINALITY AS e(key, kind, actor, occurred_at, details, ord)
    WHERE EXISTS (SELECT FROM first)
    ORDER BY e.ord
    ON CONFLICT (idempotency_key) DO NOTHING
), closing AS (
    SELECT DISTINCT ON (t.id) t.id, c.status
    FROM tasks t
    JOIN unnest($12::text[], $13::text[], $14::text[]) WITH ORDINALITY AS c(kinds, status, reference, ord)
      ON (c.kinds IS NULL OR t.kind = ANY (string_to_array(c.kinds, ',')))
     AND (c.reference IS NULL OR t.reference = c.reference)
    WHERE t.workflow_id = $2 AND t.status = 'requested' AND EXISTS (SELECT FROM first)
    ORDER BY t.id, c.ord
), closed AS (
    UPDATE tasks t SET status = closing.status, updated_at = now(), version = t.version + 1
    FROM closing WHERE t.id = closing.id
), queued AS (
    INSERT INTO tasks (idempotency_key, workflow_id, kind, recipient, subject, body,
                       due_at, reference, params, redacted, status, owner_type, owner)
    SELECT n.key, $2, n.kind, n.recipient, n.subject, n.body,
           n.due_at, n.reference, n.params, n.redacted, n.status, n.owner_type,
           -- a unit or the municipality, qualified by the pathway's (activities.task_owner)
           CASE n.owner_type
               WHEN 'CareTeam' THEN p.health_trust || '.' || n.owner
               WHEN 'Organization' THEN 'municipality-' || p.municipality
               ELSE n.owner
           END
    FROM unnest($15::text[], $16::text[], $17::text[], $18::text[], $19::text[],
                $20::timestamptz[], $21::text[], $22::jsonb[], $23::bool[], $24::text[],
                $31::text[], $32::text[])
         WITH ORDINALITY AS n(key, kind, recipient, subject, body, due_at, reference, params,
                              redacted, status, owner_type, owner, ord)
    LEFT JOIN pathways p ON p.workflow_id = $2
    WHERE EXISTS (SELECT FROM first)
    ORDER BY n.ord
    ON CONFLICT (idempotency_key) DO NOTHING
), named AS (
    INSERT INTO pathway_parties (workflow_id, party_type, party, named_as, step_key)
    SELECT $2, g.party_type,
           -- a unit a step names (TSB, PHV), qualified by the pathway's (rop_domain.parties)
           CASE WHEN g.party_type = 'unit' AND strpos(g.party, '/') = 0
                THEN p.health_trust || '/' || g.party ELSE g.party END,
           g.named_as, g.step_key
    FROM unnest($25::text[], $26::text[], $27::text[], $28::text[])
         AS g(party_type, party, named_as, step_key)
    LEFT JOIN pathways p ON p.workflow_id = $2
    WHERE EXISTS (SELECT FROM first)
    ON CONFLICT DO NOTHING
), kept AS (
    INSERT INTO pathway_snapshots (workflow_id, sequence, snapshot, taken_at)
    SELECT $2, $30::integer, $29::text, $5
    WHERE $29::text IS NOT NULL AND EXISTS (SELECT FROM first)
    ON CONFLICT (workflow_id) DO UPDATE
    SET sequence = EXCLUDED.sequence, snapshot = EXCLUDED.snapshot, taken_at = EXCLUDED.taken_at
    WHERE pathway_snapshots.sequence < EXCLUDED.sequence
){summary}
SELECT EXISTS (SELECT FROM first)
"""

_SUMMARY = """, summary AS (
    UPDATE pathways SET {assignments}, updated_at = now()
    WHERE workflow_id = $2 AND EXISTS (SELECT FROM first)
)"""
_FIRST_SUMMARY_ARGUMENT = 33


async def write_step(
    database: asyncpg.Pool | Connection, step: PathwayStep, parties: Sequence[Party] = ()
) -> bool:
    """Write `step` (on a pool, or on a connection inside a caller's transaction); False if
    an earlier attempt wrote it already. `parties`: more parties the pathway names than the
    step's own (a new pathway's, from its referral)."""
    statement, arguments = step_statement(step, parties)
    written: bool = await database.fetchval(statement, *arguments)
    return written


def step_statement(step: PathwayStep, parties: Sequence[Party] = ()) -> tuple[str, list[Any]]:
    """The statement that records `step`, and its arguments; it returns whether it wrote.
    With the step it writes the parties the step names (`rop_domain.parties`): the grounds
    of need of service commit with the step or not at all; and the pathway's snapshot, so
    that what a restart starts from is never behind the record."""
    first, *others = step.events
    summary = _summary(step)
    columns = list(summary)
    assignments = ", ".join(
        f"{column} = ${index}" for index, column in enumerate(columns, _FIRST_SUMMARY_ARGUMENT)
    )
    statement = _STATEMENT.format(
        summary=_SUMMARY.format(assignments=assignments) if columns else ""
    )
    texts = [render_task(n.kind.value, n.params, redacted=n.redacted) for n in step.notifications]
    closes = step.close_tasks
    notifications = step.notifications
    named = [*parties, *of_step(step)]
    owners = [owner_of(n) for n in notifications]
    arguments: list[Any] = [
        first.idempotency_key,
        first.workflow_id,
        first.kind.value,
        first.actor,
        first.occurred_at,
        json.dumps(first.details),
        [e.idempotency_key for e in others],
        [e.kind.value for e in others],
        [e.actor for e in others],
        [e.occurred_at for e in others],
        [json.dumps(e.details) for e in others],
        [None if c.kinds is None else ",".join(k.value for k in c.kinds) for c in closes],
        [c.status.value for c in closes],
        [c.reference for c in closes],
        [n.idempotency_key for n in notifications],
        [n.kind.value for n in notifications],
        [n.recipient for n in notifications],
        [t.subject for t in texts],
        [t.text for t in texts],
        [n.due_at for n in notifications],
        [n.reference for n in notifications],
        [json.dumps(n.params) for n in notifications],
        [n.redacted for n in notifications],
        [n.status.value for n in notifications],
        [p.party_type.value for p in named],
        [p.party for p in named],
        [p.named_as.value for p in named],
        [p.step_key for p in named],
        step.snapshot.packed if step.snapshot else None,
        step.snapshot.sequence if step.snapshot else None,
        [owner[0].value if owner else None for owner in owners],
        [owner[1] if owner else None for owner in owners],
        *[summary[column] for column in columns],
    ]
    return statement, arguments


async def write_summary(connection: Connection, step: PathwayStep) -> None:
    """Apply `step`'s summary change to its pathway row again (a repair that wrote earlier
    steps after it puts the row back as this later step left it)."""
    summary = _summary(step)
    if not summary:
        return
    columns = list(summary)
    assignments = ", ".join(f"{column} = ${index}" for index, column in enumerate(columns, 2))
    await connection.execute(
        f"UPDATE pathways SET {assignments}, updated_at = now() WHERE workflow_id = $1",  # noqa: S608 - column names from SummaryChange's fields
        step.events[0].workflow_id,
        *[summary[column] for column in columns],
    )


def _summary(step: PathwayStep) -> dict[str, object]:
    """The summary columns the step's events change, later events over earlier ones
    (field names are column names; enums as their values)."""
    merged: dict[str, object] = {}
    for event in step.events:
        merged.update(_native(event.change))
    return merged


def _native(change: SummaryChange) -> dict[str, object]:
    return {
        column: getattr(value, "value", value)
        for column, value in change.model_dump(exclude_none=True).items()
    }
