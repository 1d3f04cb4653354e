"""The notification service: tasks for clinicians and units, queued in an outbox.

In this version a notification is a row in `tasks` and a log line; delivery by
e-mail and webhook reads the same outbox. The idempotency key makes a retried
send a no-op, so nobody is asked twice.
"""

from __future__ import annotations

import asyncpg
from temporalio import activity

from rop_domain.commands import CloseTasks, Notification


class NotificationActivities:
    """Activities that queue and close tasks; construct with an asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn
    async def notify(self, notification: Notification) -> bool:
        """Queue `notification` once. True if this call queued it."""
        inserted = await self._pool.fetchval(
            """INSERT INTO tasks (idempotency_key, workflow_id, kind, recipient, subject, body,
                                  due_at, reference)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
               ON CONFLICT (idempotency_key) DO NOTHING
               RETURNING true""",
            notification.idempotency_key,
            notification.workflow_id,
            notification.kind.value,
            notification.recipient,
            notification.subject,
            notification.body,
            notification.due_at,
            notification.reference,
        )
        activity.logger.info(
            "task queued" if inserted else "task already queued",
            extra={"task_kind": notification.kind.value},
        )
        return bool(inserted)

    @activity.defn
    async def close_tasks(self, request: CloseTasks) -> int:
        """Close the pathway's still-open tasks of the given kinds; return how many closed."""
        result: str = await self._pool.execute(
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
