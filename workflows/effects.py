"""The pathway's side effects: activities with idempotency keys and the objection rule.

Every key is `<workflow id>/<sequence>-<label>`, the sequence carried in the state
across continue-as-new, so a retried activity recognises its own earlier write
while two different steps can never share a key.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from pydantic import JsonValue

    from activities.notifications import NotificationActivities
    from activities.records import RecordActivities
    from rop_domain.commands import (
        CloseTasks,
        EventKind,
        LeaderQuery,
        Notification,
        PathwayEvent,
        SummaryChange,
        TaskKind,
        TaskStatus,
    )
    from rop_domain.models import ObjectionMode, PathwaySettings, Referral
    from rop_domain.state import PathwayState

ACTIVITY_TIMEOUT = timedelta(seconds=30)
# No attempt limit: a database outage delays a step, it must never drop one.
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5))

_REDACTED_SUBJECT = "Ny oppgave i ROP-forløp"
_REDACTED_BODY = "Du har fått en oppgave. Se fagsystemet for detaljer."


class PathwayEffects:
    """Records, tasks and look-ups for one pathway."""

    def __init__(self, referral: Referral, settings: PathwaySettings, state: PathwayState) -> None:
        self._referral = referral
        self._settings = settings
        self._state = state
        self._workflow_id = workflow.info().workflow_id

    def _key(self, label: str) -> str:
        self._state.sequence += 1
        return f"{self._workflow_id}/{self._state.sequence:05d}-{label}"

    async def record(
        self,
        kind: EventKind,
        *,
        actor: str,
        change: SummaryChange | None = None,
        details: dict[str, JsonValue] | None = None,
    ) -> None:
        """Append a step to the event log and apply its change to the summary row."""
        await workflow.execute_activity_method(
            RecordActivities.record_event,
            PathwayEvent(
                idempotency_key=self._key(kind.value),
                workflow_id=self._workflow_id,
                kind=kind,
                actor=actor,
                occurred_at=workflow.now(),
                change=change or SummaryChange(),
                details=details or {},
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
            summary=f"record {kind.value}",
        )

    async def notify(
        self,
        kind: TaskKind,
        *,
        recipient: str,
        subject: str,
        body: str,
        external: bool,
        due_at: datetime | None = None,
        reference: str | None = None,
    ) -> None:
        """Queue a task. `external`: the recipient is outside the receiving unit.

        After the patient objected to sharing, an external recipient gets a task with
        no patient-related content, or none at all, as the pathway's settings say.
        """
        if external and self._state.objection is not None:
            if self._settings.objection_mode is ObjectionMode.SUPPRESS:
                await self.record(
                    EventKind.NOTIFICATION_WITHHELD,
                    actor="rop-forlop",
                    details={"task_kind": kind.value, "reason": "objection to sharing"},
                )
                return
            subject, body = _REDACTED_SUBJECT, _REDACTED_BODY
        await workflow.execute_activity_method(
            NotificationActivities.notify,
            Notification(
                idempotency_key=self._key(kind.value),
                workflow_id=self._workflow_id,
                kind=kind,
                recipient=recipient,
                subject=subject,
                body=body,
                due_at=due_at,
                reference=reference,
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
            summary=f"task: {kind.value}",
        )

    async def close_tasks(
        self, kinds: list[TaskKind] | None, status: TaskStatus, reference: str | None = None
    ) -> None:
        """Close open tasks: all of the pathway's (`kinds=None`), some kinds, or one measure's."""
        label = "all" if kinds is None else ", ".join(k.value for k in kinds)
        await workflow.execute_activity_method(
            NotificationActivities.close_tasks,
            CloseTasks(
                workflow_id=self._workflow_id, kinds=kinds, status=status, reference=reference
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
            summary=f"close tasks: {label}",
        )

    async def unit_leader(self) -> str:
        """The receiving unit's leader contact, or a role address if the directory has none."""
        leader = await workflow.execute_activity_method(
            RecordActivities.find_unit_leader,
            LeaderQuery(
                health_trust=self._referral.health_trust,
                receiving_unit=self._referral.receiving_unit,
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
            summary="find the unit leader",
        )
        unit = self._referral.receiving_unit.value
        return leader or f"leder:{self._referral.health_trust}:{unit}"
