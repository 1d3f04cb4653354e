"""Reads of a pathway's own row in the record, for the ways in (the HTTP API and the CLI).

The record's other reads have a module each: the task list (`starter.task_list`), the
indicators (`starter.indicators`), the access log (`starter.access_log`) and who a pathway
names (`starter.api.need_of_service`). Routes and commands call these; they hold no SQL.
"""

from __future__ import annotations

import asyncpg

from activities.database import Connection
from rop_domain.models import FINAL_PHASES, Phase
from starter.pathways import PathwaySummary


async def patient_reference(connection: Connection, workflow_id: str) -> str | None:
    """The patient's pseudonymous reference, or None if the pathway has no record yet."""
    reference: str | None = await connection.fetchval(
        "SELECT patient_reference FROM pathways WHERE workflow_id = $1", workflow_id
    )
    return reference


async def pathways_of_patient(connection: Connection, patient_reference: str) -> list[str]:
    """The workflow ids of the patient's pathways, by their pseudonymous reference."""
    rows = await connection.fetch(
        "SELECT workflow_id FROM pathways WHERE patient_reference = $1 ORDER BY received_at",
        patient_reference,
    )
    return [row["workflow_id"] for row in rows]


async def task_of(connection: Connection, task_id: int) -> tuple[str, str] | None:
    """The pathway and idempotency key of task `task_id`, if there is one."""
    row = await connection.fetchrow(
        "SELECT workflow_id, idempotency_key FROM tasks WHERE id = $1", task_id
    )
    return None if row is None else (row["workflow_id"], row["idempotency_key"])


def summary_of(row: asyncpg.Record) -> PathwaySummary:
    """A pathway's summary as its record row holds it (the same fields as visibility's)."""
    return PathwaySummary(
        workflow_id=row["workflow_id"],
        running=Phase(row["phase"]) not in FINAL_PHASES,
        phase=Phase(row["phase"]),
        health_trust=row["health_trust"],
        municipality=row["municipality"],
        receiving_unit=row["receiving_unit"],
        meeting_deadline=row["meeting_deadline"],
        meeting_invited_on_time=row["invited_on_time"],
        has_crisis_plan=row["crisis_plan_version"] is not None,
        next_review_due=row["next_review_due"],
        overdue=row["overdue"],
        delivery_failed=None,  # an operator's figure (visibility); a person acts on tasks
    )
