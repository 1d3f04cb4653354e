"""The pathway's side effects: one activity per step, idempotency keys, the objection rule.

A step (an assessment, an invite, a reminder...) is gathered in a `StepRecord` and written
by one activity in one transaction: its events, their summary changes, the tasks it
closes and the tasks it raises. These record-service calls are short database
transactions, so they run as local activities, inside the workflow task that needs
them: no activity task round trip through the server, and a marker in history
instead of three events. They are idempotent like any activity. A database outage
only delays a step: it is retried every few seconds, so steps resume soon after the
database is back, and a pathway whose recording keeps failing says so to operators.
A step whose content the database refuses is not retried: `RecordRefused` tells the
workflow, which then leaves its state as it was. (Slow, external calls such as e-mail
delivery belong in regular activities.) Every key is `<workflow id>/<sequence>-<label>`,
the sequence carried in the state across continue-as-new, so a retried activity finds
its own earlier write while two different steps never share a key.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.exceptions import TimeoutError as ActivityTimeout

with workflow.unsafe.imports_passed_through():
    from pydantic import JsonValue

    from rop_domain import tasks
    from rop_domain.commands import (
        DELIVER,
        DELIVERY_FAILED,
        DELIVERY_MAX_INTERVAL,
        DELIVERY_WINDOW,
        FIND_UNIT_LEADER,
        FIRST_DELIVERY_RETRY,
        GIVE_UP,
        OPEN_PATHWAY,
        RECORD_REFUSED,
        RECORD_STEP,
        CloseTasks,
        Delivery,
        EventKind,
        Intake,
        LeaderQuery,
        NewPathway,
        Notification,
        PathwayEvent,
        PathwayStep,
        SummaryChange,
    )
    from rop_domain.deadlines import ObjectionMode, PathwaySettings
    from rop_domain.models import NO_ADDRESS, Participant, Referral
    from rop_domain.state import PathwayState, snapshot_of
    from rop_domain.steps import StepName
    from rop_domain.tasks import Message, TaskKind, TaskStatus
    from rop_domain.view import OpenTask
    from workflows.patches import DELIVERY_WINDOW_PATCH, RunRules
    from workflows.timers import settled_before

ACTIVITY_TIMEOUT = timedelta(seconds=10)
# Deliveries keep trying until the pathway's window for them ends (activities.delivery).
DELIVERY_RETRY = RetryPolicy(
    initial_interval=FIRST_DELIVERY_RETRY,
    maximum_interval=DELIVERY_MAX_INTERVAL,
    non_retryable_error_types=[DELIVERY_FAILED],
)
_LEGACY_DELIVERY_ATTEMPTS = 8
_LEGACY_DELIVERY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=10),
    maximum_interval=timedelta(minutes=30),
    maximum_attempts=_LEGACY_DELIVERY_ATTEMPTS,
    non_retryable_error_types=[DELIVERY_FAILED],
)
# Short intervals: after an outage, steps resume within seconds of the database's
# return. A database outage delays a step, it must never drop one: `record` runs the
# call again and again, each time for as many attempts as fit in the stall bound.
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=4),
    non_retryable_error_types=[RECORD_REFUSED],
)
SYSTEM_ACTOR = "rop-forlop"
ONE_ATTEMPT = RetryPolicy(maximum_attempts=1)
RECORD_WAITS = (timedelta(seconds=1), timedelta(seconds=2), timedelta(seconds=4))
"""The waits before a failed record-service call is tried again: after the last, it again
and again until `LONG_OUTAGE`, so a step resumes within seconds of the database's return."""
LONG_OUTAGE = timedelta(minutes=2)
LONG_OUTAGE_WAIT = timedelta(seconds=15)
"""Past `LONG_OUTAGE` the call is tried every 15 s: an outage of hours adds some hundreds
of events to a waiting pathway's history, not tens of thousands."""


def record_wait(failures: int, failing_for: timedelta) -> timedelta:
    """How long to wait after the `failures`-th failure in a row, failing for `failing_for`."""
    if failing_for >= LONG_OUTAGE:
        return LONG_OUTAGE_WAIT
    return RECORD_WAITS[min(failures, len(RECORD_WAITS)) - 1]


def attempts_within(seconds: float) -> int:
    """How many attempts of `RETRY` begin within `seconds` of the first one."""
    attempts, waited = 1, timedelta(0)
    interval = RETRY.initial_interval
    limit = RETRY.maximum_interval or interval
    while waited + interval <= timedelta(seconds=seconds):
        waited += interval
        attempts += 1
        interval = min(interval * RETRY.backoff_coefficient, limit)
    return attempts


class RecordRefused(Exception):
    """The record database refused a step's content; nothing of it was written."""


def _raise_if_refused(error: Exception) -> None:
    """`RecordRefused` for a call the record refused (trying again cannot help)."""
    # A local activity's failure may come as the activity's error itself.
    cause = error.cause if isinstance(error, ActivityError) else error
    if isinstance(cause, ApplicationError) and cause.type == RECORD_REFUSED:
        raise RecordRefused(cause.message) from None


_NOTHING = tasks.About()
"""A task about nothing more than its pathway (a referral not accepted)."""


class StepRecord:
    """One step's events and tasks, committed together by `commit()`."""

    def __init__(self, effects: PathwayEffects) -> None:
        self._effects = effects
        self._events: list[PathwayEvent] = []
        self._close: list[CloseTasks] = []
        self._notifications: list[Notification] = []

    def event(
        self,
        kind: EventKind,
        *,
        actor: str,
        change: SummaryChange | None = None,
        details: dict[str, JsonValue] | None = None,
    ) -> StepRecord:
        """Append an event to the log and apply its change to the summary row."""
        self._events.append(
            PathwayEvent(
                idempotency_key=self._effects.key(kind.value),
                workflow_id=self._effects.workflow_id,
                kind=kind,
                actor=actor,
                occurred_at=workflow.now(),
                change=change or SummaryChange(),
                details=details or {},
            )
        )
        return self

    def close_for(self, step: StepName, reference: str | None = None) -> StepRecord:
        """Close the tasks `step` closes, by the task table (`rop_domain/tasks.py`)."""
        for status, kinds in tasks.closed_by(step).items():
            self.close(kinds, status, reference)
        return self

    def close(
        self, kinds: list[TaskKind] | None, status: TaskStatus, reference: str | None = None
    ) -> StepRecord:
        """Close open tasks: all the pathway's (`kinds=None`), some kinds, or one measure's."""
        self._effects.state.tasks_closed(kinds, reference)
        self._close.append(
            CloseTasks(
                workflow_id=self._effects.workflow_id,
                kinds=kinds,
                status=status,
                reference=reference,
            )
        )
        return self

    def raise_task(
        self,
        kind: TaskKind,
        about: tasks.About = _NOTHING,
        *,
        consented: bool = False,
        undated: bool = False,
    ) -> StepRecord:
        """Raise a task of `kind` about `about`: the task table (`rop_domain.tasks`) decides
        who gets it, what its template says, when it is due and whether it leaves the unit.
        `consented`: the patient consented to sharing with this party after an objection;
        `undated`: no due date (runs from before `REVISION_CHASE` raised a revision so)."""
        effects = self._effects
        message = tasks.parameters(kind, effects.referral.referral_id, about)
        due_at = None if undated else tasks.due_at(kind, about)
        for to in tasks.addressees(kind, effects.referral, effects.state, about):
            self._notify(
                kind,
                recipient=to.address,
                message=message,
                party_unit=to.unit,
                due_at=due_at,
                reference=about.measure.id if about.measure else None,
                person=to.person,
                consented=consented,
            )
        return self

    def _notify(
        self,
        kind: TaskKind,
        *,
        recipient: str,
        message: Message,
        party_unit: str | None,
        due_at: datetime | None,
        reference: str | None,
        person: str | None,
        consented: bool,
    ) -> None:
        """Queue one task. `party_unit`: the recipient's unit or organisation, for the kinds
        that are external or not by who gets them (`rop_domain.tasks.is_external`);
        `person`: the HPR number of the person the task is for, where known. Both are kept
        on the task for the grounds of need of service (`rop_domain.parties`).

        After the patient objected to sharing, a task for a party outside the receiving unit
        is withheld (`PathwayEffects.withholds`), unless `consented`: the patient consented
        to that party; runs from before `OBJECTION_ASKS_CONSENT` sent it without
        patient-related content, unless their settings said to withhold it.
        """
        effects = self._effects
        redacted = effects.redacts(kind, party_unit, consented=consented)
        if effects.withholds(kind, party_unit, consented=consented):
            self.event(
                EventKind.NOTIFICATION_WITHHELD,
                actor=SYSTEM_ACTOR,
                details={"task_kind": kind.value, "reason": "objection to sharing"},
            )
            return
        self._notifications.append(
            Notification(
                idempotency_key=self._effects.key(kind.value),
                workflow_id=self._effects.workflow_id,
                kind=kind,
                recipient=recipient,
                params={} if redacted else message,
                redacted=redacted,
                due_at=due_at,
                reference=reference,
                status=tasks.TASKS[kind].opens_as,
                party=party_unit,
                person=person,
            )
        )
        if tasks.step_for(kind) is not None:
            effects.state.task_raised(
                OpenTask(kind=kind, recipient=recipient, due_at=due_at, reference=reference)
            )

    async def commit(self) -> None:
        """Write the step with one activity; then deliver its tasks that a channel must.

        Raises `RecordRefused` if the database refused the step's content.
        """
        step = PathwayStep(
            events=self._events,
            close_tasks=self._close,
            notifications=self._notifications,
            snapshot=snapshot_of(self._effects.settings, self._effects.state),
        )
        # No summary: every step has one, and each summary is one more payload to encrypt
        # and store (measured: the benchmark ratio drops by ~0.08). The step's kind shows in
        # the pathway's current details and event log instead.
        to_deliver: list[str] = await self._effects.record(RECORD_STEP, step, list[str])
        self._effects.state.keep_recorded_step(workflow.now(), step.model_dump_json())
        self._effects.deliver(to_deliver)


async def _nothing_to_do(_: str) -> None:
    """No follow-up of a failed delivery (until the workflow sets one)."""


class PathwayEffects:
    """Steps and look-ups for one pathway."""

    def __init__(
        self, referral: Referral, settings: PathwaySettings, state: PathwayState, rules: RunRules
    ) -> None:
        self.referral = referral
        self.settings = settings
        self.state = state
        self.rules = rules
        self.workflow_id = workflow.info().workflow_id
        self.on_delivery_failed: Callable[[str], None] = lambda key: None
        self.on_recording_stalled: Callable[[bool], None] = lambda stalled: None
        self.on_undelivered: Callable[[str], Awaitable[None]] = _nothing_to_do
        self._stalled = False
        self._deliveries: dict[str, asyncio.Task[None]] = {}
        # As many attempts as fit in the stall bound: a local activity's schedule-to-close
        # timeout does not end its local retries, an attempt limit does.
        self._record_retry = dataclasses.replace(
            RETRY, maximum_attempts=attempts_within(settings.recording_stalled_seconds)
        )

    def redacts(self, kind: TaskKind, party_unit: str | None, *, consented: bool) -> bool:
        """Whether a task of `kind` for `party_unit` may carry nothing about the patient: it
        leaves the receiving unit after an objection to sharing, without consent for it."""
        external = tasks.is_external(kind, self.referral.receiving_unit, party_unit)
        return external and self.state.objection is not None and not consented

    def withholds(self, kind: TaskKind, party_unit: str | None, *, consented: bool) -> bool:
        """Whether such a task is not sent at all (recorded as withheld): since
        `OBJECTION_ASKS_CONSENT`, or where the settings' objection mode says so."""
        suppress = self.settings.objection_mode is ObjectionMode.SUPPRESS
        return self.redacts(kind, party_unit, consented=consented) and (
            suppress or self.rules.objection_withholds
        )

    async def _attempt(
        self,
        activity: str,
        argument: Any,
        result_type: Any,
        summary: str | None,
        retry_policy: RetryPolicy,
    ) -> Any:
        """One call of a record-service activity, as a local activity, with `retry_policy`."""
        return await workflow.execute_local_activity(
            activity,
            argument,
            result_type=result_type,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=retry_policy,
            summary=summary,
        )

    async def record(
        self, activity: str, argument: Any, result_type: Any, summary: str | None = None
    ) -> Any:
        """Run a record-service call until it succeeds; `RecordRefused` if it never can.

        A call that keeps failing (the database is down, or a fault in our code) is tried
        again for as long as it takes, one attempt at a time with a durable timer between
        (`record_wait`), so the workflow task ends and queries answer meanwhile; after the
        settings' `recording_stalled_seconds` the pathway is flagged as stalled, and the flag
        is lifted when the call goes through.
        """
        if not self.rules.retries_on_timers:
            return await self._record_locally_retried(activity, argument, result_type, summary)
        stalled_after = timedelta(seconds=self.settings.recording_stalled_seconds)
        failures, first_failure = 0, workflow.now()  # set again at the first failure
        while True:
            try:
                result = await self._attempt(activity, argument, result_type, summary, ONE_ATTEMPT)
            except (ActivityError, ApplicationError, ActivityTimeout) as error:
                _raise_if_refused(error)
                failures += 1
                if failures == 1:
                    first_failure = workflow.now()
                failing_for = workflow.now() - first_failure
                if failing_for >= stalled_after and not self._stalled:
                    self._stalled_now(True)
                await workflow.sleep(record_wait(failures, failing_for))
                continue
            if self._stalled:
                self._stalled_now(False)
            return result

    def _stalled_now(self, stalled: bool) -> None:
        self._stalled = stalled
        if stalled:
            workflow.logger.error("recording stalled: the record service keeps failing")
        else:
            workflow.logger.info("recording resumed")
        self.on_recording_stalled(stalled)

    async def _record_locally_retried(
        self, activity: str, argument: Any, result_type: Any, summary: str | None
    ) -> Any:
        """`record` as runs from before `RECORD_RETRIES_ON_TIMERS` did: local retries for as
        many attempts as fit in the stall bound, then the stall flag, and again."""
        stalled = False
        while True:
            try:
                result = await self._attempt(
                    activity, argument, result_type, summary, self._record_retry
                )
            except (ActivityError, ApplicationError, ActivityTimeout) as error:
                _raise_if_refused(error)
                if not stalled:
                    stalled = True
                    workflow.logger.error("recording stalled: the record service keeps failing")
                    self.on_recording_stalled(True)
                continue
            if stalled:
                workflow.logger.info("recording resumed")
                self.on_recording_stalled(False)
            return result

    def deliver(self, task_keys: list[str]) -> None:
        """Start delivering tasks through their channels, in the background of the run."""
        for key in task_keys:
            if key not in self._deliveries:
                self._deliveries[key] = asyncio.create_task(self._deliver(key))

    def deliveries_done(self) -> bool:
        """No delivery is under way (checked before the run ends or continues as new)."""
        return not self._deliveries

    async def _deliver(self, key: str) -> None:
        try:
            try:
                if self.rules.patched(DELIVERY_WINDOW_PATCH):
                    delivered = await self._deliver_within_window(key)
                else:
                    await workflow.execute_activity(
                        DELIVER,
                        Delivery(task_key=key, max_attempts=_LEGACY_DELIVERY_ATTEMPTS),
                        start_to_close_timeout=timedelta(seconds=60),
                        retry_policy=_LEGACY_DELIVERY_RETRY,
                        summary="deliver a task",
                    )
                    delivered = True
            except ActivityError:
                delivered = False
            if not delivered:
                self.on_delivery_failed(key)
                await self.on_undelivered(key)
        finally:
            # Gone only now: a run ends, or continues as new, once what follows a failed
            # delivery is recorded too (`deliveries_done`).
            del self._deliveries[key]

    async def _deliver_within_window(self, key: str) -> bool:
        """Deliver; False, with the delivery marked failed, if `DELIVERY_WINDOW` ends first."""
        attempts = workflow.start_activity(
            DELIVER,
            Delivery(task_key=key),
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=DELIVERY_RETRY,
            summary="deliver a task",
        )
        window_ends = workflow.now() + DELIVERY_WINDOW
        if await settled_before(window_ends, attempts.done, "delivery window ends"):
            await attempts
            return True
        attempts.cancel()
        await self.record(GIVE_UP, key, None, summary="give up a delivery")
        return False

    def key(self, label: str) -> str:
        """The next idempotency key; deterministic, and unique across continue-as-new."""
        self.state.sequence += 1
        return f"{self.workflow_id}/{self.state.sequence:05d}-{label}"

    def step(
        self,
        kind: EventKind,
        *,
        actor: str,
        change: SummaryChange | None = None,
        details: dict[str, JsonValue] | None = None,
    ) -> StepRecord:
        """A new step whose first event is `kind`."""
        return StepRecord(self).event(kind, actor=actor, change=change, details=details)

    async def intake(self, meeting_deadline: date) -> list[Participant]:
        """Open the record with its assessment task; return the recommended participants."""
        referral = self.referral
        kind, about = TaskKind.ASSESS_REFERRAL, tasks.About(deadline=meeting_deadline)
        (to,) = tasks.addressees(kind, referral, self.state, about)
        task = Notification(
            idempotency_key=self.key(kind.value),
            workflow_id=self.workflow_id,
            kind=kind,
            recipient=to.address,
            params=tasks.parameters(kind, referral.referral_id, about),
            due_at=tasks.due_at(kind, about),
        )
        self.state.task_raised(
            OpenTask(kind=task.kind, recipient=task.recipient, due_at=task.due_at)
        )
        new_pathway = NewPathway(
            workflow_id=self.workflow_id,
            referral=referral,
            meeting_deadline=meeting_deadline,
            notifications=[task],
            snapshot=snapshot_of(self.settings, self.state),
        )
        intake: Intake = await self.record(
            OPEN_PATHWAY,
            new_pathway,
            Intake,
            summary="record the referral, ask for an assessment, find meeting participants",
        )
        self.state.keep_recorded_step(workflow.now(), new_pathway.model_dump_json(), intake=True)
        self.deliver(intake.deliveries)
        return intake.participants

    async def unit_leader(self) -> str | None:
        """The receiving unit's leader contact from the directory, if it has one."""
        leader: str | None = await self.record(
            FIND_UNIT_LEADER,
            LeaderQuery(
                health_trust=self.referral.health_trust,
                receiving_unit=self.referral.receiving_unit,
            ),
            str | None,
            summary="find the unit leader",
        )
        return leader

    def unit_itself(self) -> str:
        """Where an escalation goes when the unit has no leader in the directory: the unit's
        own contact point (as recommended for the meeting), or the unit by its id."""
        role = self.referral.receiving_unit.value.lower()
        for party in self.state.participants:
            if party.role.value == role and party.address != NO_ADDRESS:
                return party.address
        return f"{self.referral.health_trust}/{self.referral.receiving_unit.value}"

    def leader_role_address(self) -> str:
        """What runs from before `ESCALATION_TO_THE_UNIT` sent a leaderless escalation to."""
        return f"leder:{self.referral.health_trust}:{self.referral.receiving_unit.value}"
