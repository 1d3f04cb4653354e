"""The task outbox: tasks for clinicians and units, written in the same transaction as
the step that raises them. Delivery channels (e-mail, webhooks) read from here.
"""

from __future__ import annotations

import json

from activities.database import Connection
from activities.rendering import render_task
from rop_domain.commands import CloseTasks, Notification


async def queue_task(connection: Connection, notification: Notification) -> bool:
    """Queue a task once (by its idempotency key). True if this call queued it."""
    text = render_task(notification.kind.value, notification.params, redacted=notification.redacted)
    inserted = await connection.fetchval(
        """INSERT INTO tasks (idempotency_key, workflow_id, kind, recipient, subject, body,
                              due_at, reference, params, redacted)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10)
           ON CONFLICT (idempotency_key) DO NOTHING
           RETURNING true""",
        notification.idempotency_key,
        notification.workflow_id,
        notification.kind.value,
        notification.recipient,
        text.subject,
        text.text,
        notification.due_at,
        notification.reference,
        json.dumps(notification.params),
        notification.redacted,
    )
    return bool(inserted)


async def close_tasks(connection: Connection, request: CloseTasks) -> int:
    """Close the pathway's open tasks the request names; return how many closed."""
    result: str = await connection.execute(
        """UPDATE tasks SET status = $3, updated_at = now()
           WHERE workflow_id = $1 AND status = 'requested'
             AND ($2::text[] IS NULL OR kind = ANY($2::text[]))
             AND ($4::text IS NULL OR reference = $4)""",
        request.workflow_id,
        None if request.kinds is None else [kind.value for kind in request.kinds],
        request.status.value,
        request.reference,
    )
    return int(result.rsplit(" ", 1)[-1])
