"""The task outbox: tasks for clinicians and units, written in the same transaction as
the step that raises them. Delivery channels (e-mail, webhooks) read from here.
"""

from __future__ import annotations

import json

from activities.database import Connection
from activities.rendering import render_task
from rop_domain.commands import Notification


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
