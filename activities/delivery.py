"""Delivering queued tasks through their recipient's channel, once.

A delivery is an activity with retries. Before each attempt it records the attempt
and a Message-ID derived from the task's idempotency key; after a successful send it
records the task as sent, and an attempt that finds it sent does nothing.

The pathway gives a delivery `DELIVERY_WINDOW` (24 hours: a channel down overnight is
still reached the next morning, and no task hangs for days): attempts 10 s apart at
first, doubling to an hour apart. When the window ends the pathway stops the delivery
and `give_up` marks it failed, for the pathway and an operator to see (`rop
notification resend` opens a new window).
"""

from __future__ import annotations

import hashlib
import json

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.channels import EmailChannel, WebhookChannel
from activities.contact_directory import her_routes
from activities.dialog_channel import DialogChannel, ReceiptRejected
from activities.rendering import RenderedMessage, render_task
from rop_domain.commands import DELIVER, DELIVERY_FAILED, GIVE_UP, Delivery, DeliveryStatus
from rop_domain.models import StrictModel
from rop_domain.routing import Channel, Route, RoutingTable


class DeliveryOutcome(StrictModel):
    """Where a task went."""

    task_id: int
    channel: Channel
    status: DeliveryStatus
    attempts: int


def message_id(task_key: str) -> str:
    """A Message-ID that every attempt for the same task shares."""
    return f"<{hashlib.sha256(task_key.encode()).hexdigest()[:32]}@rop-forlop>"


class DeliveryActivities:
    """Delivers tasks by Dialogmelding, e-mail or webhook as routing says; construct with the
    channels."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        routing: RoutingTable,
        *,
        email: EmailChannel | None = None,
        webhook: WebhookChannel | None = None,
        dialog: DialogChannel | None = None,
        task_link_base: str | None = None,
    ) -> None:
        self._pool = pool
        self.routing = routing
        self._email = email
        self._webhook = webhook
        self._dialog = dialog
        self._link_base = task_link_base

    @property
    def webhook(self) -> WebhookChannel | None:
        """The signed webhook channel, which FHIR Subscriptions' notifications go by too."""
        return self._webhook

    @activity.defn(name=DELIVER)
    async def deliver(self, delivery: Delivery) -> DeliveryOutcome:
        """Send one task through its channel, unless an earlier attempt already has."""
        task = await self._pool.fetchrow(
            "SELECT id, workflow_id, kind, recipient, params, redacted, due_at FROM tasks "
            "WHERE idempotency_key = $1",
            delivery.task_key,
        )
        if task is None:
            raise ApplicationError(
                f"no task {delivery.task_key}", type=DELIVERY_FAILED, non_retryable=True
            )
        route = self.routing.route_for(task["recipient"])
        by_directory = await her_routes(self._pool, self.routing, [task["recipient"]])
        route = by_directory.get(task["recipient"], route)
        done = await self._pool.fetchrow(
            "SELECT status, attempts FROM deliveries WHERE task_id = $1 AND status IN ('sent', 'task-list')",
            task["id"],
        )
        if done is not None:
            _count(route.channel.value, "already_done")
            return DeliveryOutcome(
                task_id=task["id"],
                channel=route.channel,
                status=done["status"],
                attempts=done["attempts"],
            )
        if route.channel is Channel.TASK_LIST:
            await self._record(
                task["id"], route.channel, None, delivery.task_key, DeliveryStatus.TASK_LIST
            )
            _count(route.channel.value, "task_list")
            return DeliveryOutcome(
                task_id=task["id"],
                channel=route.channel,
                status=DeliveryStatus.TASK_LIST,
                attempts=0,
            )

        attempts = await self._record(
            task["id"], route.channel, route.address, delivery.task_key, DeliveryStatus.SENDING
        )
        link = f"{self._link_base.rstrip('/')}/tasks/{task['id']}" if self._link_base else None
        params: dict[str, str] = dict(_json(task["params"]))
        message = render_task(
            task["kind"], params, route.standard, redacted=task["redacted"], link=link
        )
        try:
            await self._send(route, message, task, delivery.task_key, link)
        except Exception as error:
            refused = isinstance(error, ReceiptRejected)  # the receiver said no: for good
            final = refused or (
                delivery.max_attempts is not None
                and activity.info().attempt >= delivery.max_attempts
            )
            await self._pool.execute(
                "UPDATE deliveries SET last_error = $2, status = $3, updated_at = now() WHERE task_id = $1",
                task["id"],
                f"{type(error).__name__}: {error}"[:500],
                DeliveryStatus.FAILED if final else DeliveryStatus.SENDING,
            )
            activity.logger.warning(
                "delivery attempt failed",
                extra={"task_id": task["id"], "channel": route.channel.value},
            )
            _count(route.channel.value, "failed" if final else "retrying")
            if final:
                raise ApplicationError(
                    f"delivery of task {task['id']} failed: {error}"
                    if refused
                    else f"delivery of task {task['id']} failed after {attempts} attempts",
                    type=DELIVERY_FAILED,
                    non_retryable=True,
                ) from error
            raise
        await self._pool.execute(
            "UPDATE deliveries SET status = 'sent', sent_at = now(), last_error = NULL, updated_at = now() "
            "WHERE task_id = $1",
            task["id"],
        )
        activity.logger.info(
            "task delivered", extra={"task_id": task["id"], "channel": route.channel.value}
        )
        _count(route.channel.value, "sent")
        return DeliveryOutcome(
            task_id=task["id"], channel=route.channel, status=DeliveryStatus.SENT, attempts=attempts
        )

    @activity.defn(name=GIVE_UP)
    async def give_up(self, task_key: str) -> None:
        """Mark a delivery failed: its window ended. A delivery found sent stays sent."""
        channel = await self._pool.fetchval(
            """UPDATE deliveries SET status = 'failed', updated_at = now()
               WHERE task_id = (SELECT id FROM tasks WHERE idempotency_key = $1)
                 AND status NOT IN ('sent', 'task-list')
               RETURNING channel""",
            task_key,
        )
        activity.logger.warning("delivery given up", extra={"task_key": task_key})
        if channel is not None:
            _count(channel, "given_up")

    async def _record(
        self,
        task_id: int,
        channel: Channel,
        address: str | None,
        task_key: str,
        status: DeliveryStatus,
    ) -> int:
        """Record an attempt (or the task-list outcome); return the attempt count."""
        attempts: int = await self._pool.fetchval(
            """INSERT INTO deliveries (task_id, channel, address, message_id, status, attempts)
               VALUES ($1, $2, $3, $4, $5, CASE WHEN $5 = 'sending' THEN 1 ELSE 0 END)
               ON CONFLICT (task_id) DO UPDATE SET
                   status = EXCLUDED.status,
                   attempts = deliveries.attempts + CASE WHEN $5 = 'sending' THEN 1 ELSE 0 END,
                   updated_at = now()
               RETURNING attempts""",
            task_id,
            channel.value,
            address,
            message_id(task_key),
            status,
        )
        return attempts

    async def _send(
        self,
        route: Route,
        message: RenderedMessage,
        task: asyncpg.Record,
        task_key: str,
        link: str | None,
    ) -> None:
        address = route.address or ""
        if route.channel is Channel.DIALOGMELDING:
            if self._dialog is None:
                raise RuntimeError("Dialogmelding is routed but Norsk helsenett is not configured")
            await self._dialog.deliver(self._pool, task, route, message, task_key)
            return
        if route.channel is Channel.EMAIL:
            if self._email is None:
                raise RuntimeError("e-mail is routed but no SMTP server is configured")
            await self._email.send(address, message, message_id(task_key))
            return
        if self._webhook is None:
            raise RuntimeError("a webhook is routed but no webhook secret is configured")
        await self._webhook.send(
            address,
            {
                "delivery_id": message_id(task_key),
                "recipient": task["recipient"],
                "task_id": task["id"],
                "kind": task["kind"],
                "subject": message.subject,
                "text": message.text,
                "due_at": task["due_at"].isoformat() if task["due_at"] else None,
                "link": link,
            },
            message_id(task_key),
            route.secret_file,
        )


def _json(value: object) -> dict[str, str]:
    """asyncpg returns jsonb as text unless a codec is set."""
    if isinstance(value, str):
        loaded: dict[str, str] = json.loads(value)
        return loaded
    assert isinstance(value, dict)
    return value


def _count(channel: str, outcome: str) -> None:
    """`rop_deliveries_total{channel, outcome}`: `sent`, `retrying` (an attempt failed, another
    follows), `failed` (the last attempt), `given_up` (the window ended), `task_list`
    (routed to the task list only), `already_done` (a retry found it sent)."""
    activity.metric_meter().create_counter(
        "rop_deliveries", "task delivery attempts by channel and outcome"
    ).add(1, {"channel": channel, "outcome": outcome})
