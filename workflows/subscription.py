"""A FHIR Subscription's deliveries, as a workflow of its own (issue 30): the handshake, then
round after round of the worker's activity that sends the subscription's pending events in
order, a heartbeat when one is due, and a short timer between idle rounds. Nothing here does
I/O.

The events are written by the record (a trigger, in the same transaction as the task's
change), numbered without gaps; this workflow only sends them. A receiver that is down makes
the round fail; Temporal retries it with backoff for the delivery window, and the events
wait in the record meanwhile, so when the receiver is back it gets every one, in order.
Whether a heartbeat is due is decided here, on workflow time.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from rop_domain.commands import (
        SUBSCRIPTION_FAILED,
        SUBSCRIPTION_HANDSHAKE,
        SUBSCRIPTION_NOTIFY,
        SubscriptionRound,
        SubscriptionRoundRequest,
        SubscriptionRun,
    )

SUBSCRIPTION_WORKFLOW = "RopSubscription"
DELIVERY_WINDOW = timedelta(hours=24)
"""How long events wait for a receiver that is down before the subscription is in error."""
IDLE = timedelta(seconds=5)
"""Between two rounds that had nothing to send (a round itself waits for events a while)."""
ROUNDS_PER_RUN = 500
"""Rounds before the run continues as new (each round is about ten history events)."""


def subscription_workflow_id(subscription_id: str) -> str:
    return f"rop-subscription-{subscription_id}"


@workflow.defn(name=SUBSCRIPTION_WORKFLOW)
class RopSubscription:
    """Deliver one subscription's notifications until it is off, or in error."""

    @workflow.run
    async def run(self, run: SubscriptionRun) -> str:
        subscription_id = run.subscription_id
        if not run.shaken:
            try:
                await workflow.execute_activity(
                    SUBSCRIPTION_HANDSHAKE,
                    subscription_id,
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=RetryPolicy(maximum_attempts=3),
                )
            except ActivityError as error:
                return await self._fail(subscription_id, f"handshake failed: {error.cause}")
        last_sent = run.last_sent or workflow.now()
        heartbeat_seconds: int | None = None
        for _ in range(ROUNDS_PER_RUN):
            due = heartbeat_seconds is not None and workflow.now() - last_sent >= timedelta(
                seconds=heartbeat_seconds
            )
            try:
                sent: SubscriptionRound = await workflow.execute_activity(
                    SUBSCRIPTION_NOTIFY,
                    SubscriptionRoundRequest(subscription_id=subscription_id, heartbeat_due=due),
                    result_type=SubscriptionRound,
                    start_to_close_timeout=timedelta(minutes=2),
                    heartbeat_timeout=timedelta(seconds=30),
                    schedule_to_close_timeout=DELIVERY_WINDOW,
                    retry_policy=RetryPolicy(
                        initial_interval=timedelta(seconds=1),
                        maximum_interval=timedelta(minutes=5),
                    ),
                )
            except ActivityError as error:
                return await self._fail(
                    subscription_id, f"not delivered within {DELIVERY_WINDOW}: {error.cause}"
                )
            if sent.off:
                return "off"
            heartbeat_seconds = sent.heartbeat_seconds
            if sent.events_sent or sent.heartbeat:
                last_sent = workflow.now()
            else:
                await workflow.sleep(IDLE)
            if workflow.info().is_continue_as_new_suggested():
                break
        workflow.continue_as_new(
            SubscriptionRun(subscription_id=subscription_id, shaken=True, last_sent=last_sent)
        )

    async def _fail(self, subscription_id: str, reason: str) -> str:
        await workflow.execute_activity(
            SUBSCRIPTION_FAILED,
            args=[subscription_id, reason[:500]],
            start_to_close_timeout=timedelta(seconds=30),
        )
        return "error"
