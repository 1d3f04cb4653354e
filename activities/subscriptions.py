"""The deliveries of FHIR Subscriptions (issue 30): the handshake, and rounds that send a
subscription's pending events in order, signed as webhooks are, each attempt recorded.

A round waits (at most `wait`, heartbeating) for the record to say a subscription has new
events (PostgreSQL NOTIFY from the trigger that writes them; the table is the truth, the
notice only wakes the round), then sends up to `batch` of them as one notification and marks
them delivered. A failure raises, and the workflow's retry policy tries again; the events
stay pending meanwhile. With nothing to send when the workflow says a heartbeat is due, the
round sends one. Marking an event delivered after the receiver answered 2xx means a crash between
the two sends it again: at least once, in order, numbered, so a receiver drops repeats by
number.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.channels import WebhookChannel
from activities.subscription_bundles import Event, SubscriptionRow, notification_bundle
from rop_domain.commands import (
    SUBSCRIPTION_FAILED,
    SUBSCRIPTION_HANDSHAKE,
    SUBSCRIPTION_NOTIFY,
    SubscriptionRound,
    SubscriptionRoundRequest,
)

CHANNEL = "rop_subscription_events"
"""What the events' trigger notifies, with the subscription's id."""


async def subscription_row(database: asyncpg.Pool | asyncpg.Connection, subscription_id: str) -> SubscriptionRow | None:  # fmt: skip
    """One subscription, as the record keeps it."""
    row = await database.fetchrow(
        "SELECT id, owner_type, owner, endpoint, headers, content, heartbeat_seconds, status, "
        "error, events_since_start FROM subscriptions WHERE id = $1",
        uuid.UUID(subscription_id),
    )
    if row is None:
        return None
    values = dict(row)
    values["headers"] = json.loads(values["headers"])
    return SubscriptionRow(**values)


class SubscriptionActivities:
    """Sends subscriptions' notifications to their rest-hooks."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        webhook: WebhookChannel | None,
        base_url: str,
        *,
        wait: timedelta = timedelta(seconds=30),
        batch: int = 50,
    ) -> None:
        self._pool = pool
        self._webhook = webhook
        self._base_url = base_url.rstrip("/")
        self._wait = wait
        self._batch = batch

    @activity.defn(name=SUBSCRIPTION_HANDSHAKE)
    async def handshake(self, subscription_id: str) -> None:
        """Tell the endpoint the subscription exists; it is active once the endpoint says 2xx."""
        row = await self._row(subscription_id)
        await self._send(row, "handshake")
        await self._pool.execute(
            "UPDATE subscriptions SET status = 'active', error = NULL WHERE id = $1 "
            "AND status = 'requested'",
            row.id,
        )

    @activity.defn(name=SUBSCRIPTION_NOTIFY)
    async def notify(self, request: SubscriptionRoundRequest) -> SubscriptionRound:
        """One round: the pending events (after waiting a while for some), else a heartbeat
        if the workflow says one is due."""
        row = await self._row(request.subscription_id)
        if row.status == "off":
            return SubscriptionRound(off=True)
        events = await self._pending(row)
        if not events and not request.heartbeat_due and self._wait:
            await self._wait_for_events(request.subscription_id)
            row = await self._row(request.subscription_id)
            if row.status == "off":
                return SubscriptionRound(off=True)
            events = await self._pending(row)
        period = row.heartbeat_seconds
        if events:
            await self._send(row, "event-notification", tuple(events))
            await self._pool.execute(
                "UPDATE subscription_events SET delivered_at = now() "
                "WHERE subscription_id = $1 AND event_number = ANY ($2::bigint[])",
                row.id,
                [event.number for event in events],
            )
            return SubscriptionRound(events_sent=len(events), heartbeat_seconds=period)
        if period and request.heartbeat_due:
            await self._send(row, "heartbeat")
            return SubscriptionRound(heartbeat=True, heartbeat_seconds=period)
        return SubscriptionRound(heartbeat_seconds=period)

    @activity.defn(name=SUBSCRIPTION_FAILED)
    async def failed(self, subscription_id: str, reason: str) -> None:
        """The subscription is in error (its handshake failed, or a window passed)."""
        await self._pool.execute(
            "UPDATE subscriptions SET status = 'error', error = $2 WHERE id = $1 AND status <> 'off'",
            uuid.UUID(subscription_id),
            reason,
        )

    async def _row(self, subscription_id: str) -> SubscriptionRow:
        row = await subscription_row(self._pool, subscription_id)
        if row is None:
            raise ApplicationError(f"no subscription {subscription_id}", non_retryable=True)
        return row

    async def _pending(self, row: SubscriptionRow) -> list[Event]:
        found = await self._pool.fetch(
            "SELECT event_number, occurred_at, task_id FROM subscription_events "
            "WHERE subscription_id = $1 AND delivered_at IS NULL ORDER BY event_number LIMIT $2",
            row.id,
            self._batch,
        )
        return [Event(r["event_number"], r["occurred_at"], r["task_id"]) for r in found]

    async def _wait_for_events(self, subscription_id: str) -> None:
        """Until the record notifies this subscription's events, or `wait` passes;
        heartbeating to Temporal meanwhile."""
        woken = asyncio.Event()

        def listener(*arguments: object) -> None:
            if arguments[-1] == subscription_id:
                woken.set()

        async with self._pool.acquire() as connection:
            await connection.add_listener(CHANNEL, listener)
            try:
                deadline = asyncio.get_running_loop().time() + self._wait.total_seconds()
                while not woken.is_set():
                    left = deadline - asyncio.get_running_loop().time()
                    if left <= 0:
                        break
                    activity.heartbeat()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(woken.wait(), timeout=min(left, 5.0))
            finally:
                await connection.remove_listener(CHANNEL, listener)

    async def _send(self, row: SubscriptionRow, kind: str, events: tuple[Event, ...] = ()) -> None:
        """POST one notification, signed; the attempt recorded however it went."""
        if self._webhook is None:
            raise ApplicationError(
                "subscriptions are signed as webhooks: set ROP_WEBHOOK_SECRET", non_retryable=True
            )
        bundle = notification_bundle(row, kind, self._base_url, datetime.now(UTC), events)
        first = events[0].number if events else None
        last = events[-1].number if events else None
        delivery_id = f"{row.id}/{kind}/{last if last is not None else uuid.uuid4()}"
        try:
            await self._webhook.send(
                row.endpoint,
                bundle,
                delivery_id,
                headers=_headers(row),
                content_type="application/fhir+json",
            )
        except (httpx.HTTPError, OSError) as error:
            await self._attempt(row, kind, first, last, f"failed: {_reason(error)}")
            raise
        await self._attempt(row, kind, first, last, "delivered")

    async def _attempt(
        self, row: SubscriptionRow, kind: str, first: int | None, last: int | None, outcome: str
    ) -> None:
        await self._pool.execute(
            "INSERT INTO subscription_attempts (subscription_id, kind, first_event, last_event, "
            "outcome) VALUES ($1, $2, $3, $4, $5)",
            row.id,
            kind,
            first,
            last,
            outcome[:300],
        )


def _headers(row: SubscriptionRow) -> dict[str, str]:
    """The channel's headers (`Name: value`), as the subscriber asked them sent."""
    found: dict[str, Any] = {}
    for header in row.headers:
        name, _, value = header.partition(":")
        if name.strip() and value.strip():
            found[name.strip()] = value.strip()
    return found


def _reason(error: Exception) -> str:
    if isinstance(error, httpx.HTTPStatusError):
        return f"the endpoint answered {error.response.status_code}"
    return type(error).__name__
