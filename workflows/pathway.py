"""The ROP pathway as one durable workflow: referral, assessment, meeting invite, meeting.

The workflow holds the pathway's state and its clock. It computes the meeting
deadline itself (a pure function of the referral), sets durable timers for the
reminder and the escalation, and cancels them when the invite is sent. People
drive it through validated Updates; every side effect is an activity, recorded
under an idempotency key derived here from the workflow id and the step.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, time, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import JsonValue

    from activities.notifications import NotificationActivities
    from activities.records import RecordActivities
    from rop_domain import calendar
    from rop_domain.commands import (
        CloseTasks,
        EventKind,
        LeaderQuery,
        NewPathway,
        Notification,
        ParticipantQuery,
        PathwayEvent,
        SummaryChange,
        TaskKind,
        TaskStatus,
    )
    from rop_domain.models import (
        Assessment,
        AssessmentDecision,
        DueItem,
        MeetingHeld,
        MeetingInvite,
        Participant,
        PathwayInput,
        PathwayOutcome,
        PathwayStatus,
        Phase,
        RecordedAssessment,
        RecordedInvite,
    )
    from workflows import search_attributes

TASK_QUEUE = "rop-forlop"
REJECTED = "PathwayStepRejected"
"""ApplicationError type of an Update refused by its validator."""

_ACTIVITY_TIMEOUT = timedelta(seconds=30)
# No attempt limit: a database outage delays a step, it must never drop one.
_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5))
_FINAL_PHASES = frozenset({Phase.MEETING_HELD, Phase.NOT_IN_TARGET_GROUP})


def _reject(message: str) -> ApplicationError:
    return ApplicationError(message, type=REJECTED, non_retryable=True)


def _norwegian_date(instant: datetime) -> str:
    return calendar.local_date(instant).strftime("%d.%m.%Y")


def _last_day_before(instant: datetime) -> str:
    """The last Norwegian day before `instant`: a step due before midnight is due that day."""
    return _norwegian_date(instant - timedelta(microseconds=1))


@workflow.defn(name="RopPathway")
class RopPathway:
    """One patient's ROP pathway, from referral to the first clarification meeting."""

    @workflow.init
    def __init__(self, pathway: PathwayInput) -> None:
        referral, settings = pathway.referral, pathway.settings
        self._referral = referral
        self._settings = settings
        self._workflow_id = workflow.info().workflow_id
        self._deadline = calendar.deadline_after(
            referral.received_at, settings.meeting_working_days, settings.working_day_rule
        )
        self._reminder_at = calendar.reminder_instant(
            self._deadline,
            settings.reminder_working_days_before,
            time(settings.reminder_hour),
            settings.working_day_rule,
        )
        self._escalation_at = calendar.end_of_day(self._deadline)
        self._phase = Phase.AWAITING_ASSESSMENT
        self._intake_done = False
        self._participants: list[Participant] = []
        self._assessment: RecordedAssessment | None = None
        self._invite: RecordedInvite | None = None
        self._meeting: MeetingHeld | None = None
        self._reminder_sent = False
        self._overdue = False
        # Steps record in the order their Updates were accepted.
        self._step_lock = asyncio.Lock()

    @workflow.run
    async def run(self, pathway: PathwayInput) -> PathwayOutcome:
        self._publish()
        workflow.logger.info("pathway started", extra={"meeting_deadline": str(self._deadline)})
        await self._intake()
        watch = asyncio.create_task(self._watch_meeting_deadline())
        await workflow.wait_condition(lambda: self._phase in _FINAL_PHASES)
        await watch
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.logger.info("pathway step sequence ended", extra={"phase": self._phase.value})
        return PathwayOutcome(
            workflow_id=self._workflow_id,
            phase=self._phase,
            invited_on_time=self._invite.on_time if self._invite else None,
            overdue=self._overdue,
        )

    # --- Updates -------------------------------------------------------------------------

    @workflow.update
    async def assess(self, assessment: Assessment) -> PathwayStatus:
        """The specialist service decides whether the patient belongs in the pathway."""
        accepted = assessment.decision is AssessmentDecision.IN_TARGET_GROUP
        self._assessment = RecordedAssessment(assessment=assessment, assessed_at=workflow.now())
        self._phase = Phase.AWAITING_INVITE if accepted else Phase.NOT_IN_TARGET_GROUP
        self._publish()
        async with self._step():
            await self._record(
                EventKind.ASSESSED,
                actor=assessment.assessor,
                change=SummaryChange(phase=self._phase, assessment_decision=assessment.decision),
                details=assessment.model_dump(mode="json"),
            )
            await self._close_tasks([TaskKind.ASSESS_REFERRAL], TaskStatus.COMPLETED)
            if not accepted:
                await self._close_tasks(_MEETING_CHASERS, TaskStatus.CANCELLED)
                await self._notify(
                    TaskKind.REFERRAL_NOT_ACCEPTED,
                    recipient=self._referral.referrer,
                    subject=f"Henvisning {self._referral.referral_id} er vurdert: ikke ROP-forløp",
                    body="Henvisningen er vurdert og tas ikke inn i ROP-forløpet. Se journal.",
                )
        return self.status()

    @assess.validator
    def _validate_assess(self, assessment: Assessment) -> None:
        if self._phase is not Phase.AWAITING_ASSESSMENT:
            raise _reject(f"the referral is already assessed (phase: {self._phase.value})")

    @workflow.update
    async def invite_to_meeting(self, invite: MeetingInvite) -> PathwayStatus:
        """The clinician invites the parties to the first clarification meeting (avklaringsmøte)."""
        sent_at = workflow.now()
        sent_on = calendar.local_date(sent_at)
        self._invite = RecordedInvite(
            invite=invite,
            sent_at=sent_at,
            on_time=sent_on <= self._deadline,
            working_days_used=calendar.working_days_between(
                calendar.local_date(self._referral.received_at),
                sent_on,
                self._settings.working_day_rule,
            ),
        )
        self._phase = Phase.MEETING_INVITED
        self._publish()
        async with self._step():
            when = invite.meeting_at.astimezone(calendar.OSLO).strftime("%d.%m.%Y kl. %H:%M")
            await asyncio.gather(
                *(
                    self._notify(
                        TaskKind.MEETING_INVITATION,
                        recipient=participant.address,
                        subject=f"Innkalling til avklaringsmøte (ROP) {when}",
                        body=(
                            f"Du er invitert til avklaringsmøte i ROP-forløp "
                            f"{self._referral.referral_id} {when}. Sted: "
                            f"{invite.location or invite.video_link}."
                        ),
                        key_suffix=str(index),
                        due_at=invite.meeting_at,
                    )
                    for index, participant in enumerate(invite.participants)
                )
            )
            await self._close_tasks(_MEETING_CHASERS, TaskStatus.CANCELLED)
            await self._record(
                EventKind.MEETING_INVITED,
                actor=invite.invited_by,
                change=SummaryChange(
                    phase=self._phase,
                    invited_at=sent_at,
                    meeting_at=invite.meeting_at,
                    invited_on_time=self._invite.on_time,
                ),
                details={
                    "meeting_at": invite.meeting_at.isoformat(),
                    "participants": [p.role.value for p in invite.participants],
                    "on_time": self._invite.on_time,
                    "working_days_used": self._invite.working_days_used,
                },
            )
        return self.status()

    @invite_to_meeting.validator
    def _validate_invite(self, invite: MeetingInvite) -> None:
        if self._phase is Phase.AWAITING_ASSESSMENT:
            raise _reject("the referral must be assessed as in the target group before an invite")
        if self._phase is Phase.NOT_IN_TARGET_GROUP:
            raise _reject("the referral was assessed as not in the target group")
        if self._phase is not Phase.AWAITING_INVITE:
            raise _reject(f"the meeting invite is already sent (phase: {self._phase.value})")
        if invite.meeting_at <= workflow.now():
            raise _reject("meeting_at lies in the past")
        if not invite.participants:
            raise _reject("participants must not be empty")

    @workflow.update
    async def record_meeting(self, meeting: MeetingHeld) -> PathwayStatus:
        """The clarification meeting took place."""
        self._meeting = meeting
        self._phase = Phase.MEETING_HELD
        attendees: list[JsonValue] = [*meeting.attendees]
        self._publish()
        async with self._step():
            await self._record(
                EventKind.MEETING_HELD,
                actor=meeting.recorded_by,
                change=SummaryChange(phase=self._phase, meeting_held_at=meeting.held_at),
                details={"held_at": meeting.held_at.isoformat(), "attendees": attendees},
            )
        return self.status()

    @record_meeting.validator
    def _validate_meeting(self, meeting: MeetingHeld) -> None:
        if self._phase is not Phase.MEETING_INVITED or self._invite is None:
            raise _reject(f"no meeting has been invited to yet (phase: {self._phase.value})")
        if meeting.held_at > workflow.now():
            raise _reject("held_at lies in the future")
        if meeting.held_at < self._invite.sent_at:
            raise _reject("held_at lies before the invitation was sent")

    @workflow.query
    def status(self) -> PathwayStatus:
        """Phase, deadline, what is done and what is due."""
        return PathwayStatus(
            workflow_id=self._workflow_id,
            referral_id=self._referral.referral_id,
            phase=self._phase,
            received_at=self._referral.received_at,
            meeting_deadline=self._deadline,
            reminder_at=self._reminder_at,
            escalation_at=self._escalation_at,
            overdue=self._overdue,
            reminder_sent=self._reminder_sent,
            recommended_participants=self._participants,
            assessment=self._assessment,
            invite=self._invite,
            meeting=self._meeting,
            done=self._done(),
            due=self._due(),
        )

    # --- The pathway's own steps --------------------------------------------------------

    async def _intake(self) -> None:
        """Record the referral, find the meeting's participants, ask for an assessment."""
        referral = self._referral
        await workflow.execute_activity_method(
            RecordActivities.open_pathway,
            NewPathway(
                workflow_id=self._workflow_id, referral=referral, meeting_deadline=self._deadline
            ),
            start_to_close_timeout=_ACTIVITY_TIMEOUT,
            retry_policy=_RETRY,
            summary="record the referral",
        )
        self._participants = await workflow.execute_activity_method(
            RecordActivities.resolve_participants,
            ParticipantQuery(
                health_trust=referral.health_trust,
                municipality=referral.municipality,
                general_practitioner=referral.general_practitioner,
            ),
            start_to_close_timeout=_ACTIVITY_TIMEOUT,
            retry_policy=_RETRY,
            summary="find recommended meeting participants",
        )
        await self._notify(
            TaskKind.ASSESS_REFERRAL,
            recipient=referral.responsible_clinician,
            subject=f"Vurder henvisning {referral.referral_id} (ROP) og kall inn til "
            f"avklaringsmøte innen {self._deadline.strftime('%d.%m.%Y')}",
            body="En henvisning til ROP-forløp venter på vurdering.",
            due_at=self._escalation_at,
        )
        self._intake_done = True

    async def _watch_meeting_deadline(self) -> None:
        """Durable timers: remind before the deadline, escalate when it has passed."""
        await workflow.wait_condition(lambda: self._intake_done)
        if not await self._settled_before(self._reminder_at, "remind: invite to avklaringsmøte"):
            async with self._step_lock:
                await self._remind_about_meeting()
        if not await self._settled_before(self._escalation_at, "escalate: meeting deadline"):
            async with self._step_lock:
                await self._escalate_meeting_deadline()

    def _meeting_step_settled(self) -> bool:
        return self._invite is not None or self._phase is Phase.NOT_IN_TARGET_GROUP

    async def _settled_before(self, instant: datetime, summary: str) -> bool:
        """Wait until the invite step is settled or `instant` comes; say which came first."""
        remaining = instant - workflow.now()
        if remaining > timedelta(0):
            with contextlib.suppress(asyncio.TimeoutError):
                await workflow.wait_condition(
                    self._meeting_step_settled, timeout=remaining, timeout_summary=summary
                )
        return self._meeting_step_settled()

    async def _remind_about_meeting(self) -> None:
        self._reminder_sent = True
        self._publish()
        await self._notify(
            TaskKind.INVITE_TO_MEETING_REMINDER,
            recipient=self._referral.responsible_clinician,
            subject=f"Påminnelse: kall inn til avklaringsmøte innen "
            f"{self._deadline.strftime('%d.%m.%Y')}",
            body=f"ROP-forløp {self._referral.referral_id}: fristen for innkalling nærmer seg.",
            due_at=self._escalation_at,
        )
        await self._record(
            EventKind.MEETING_REMINDER_SENT, actor="rop-forlop", change=SummaryChange()
        )

    async def _escalate_meeting_deadline(self) -> None:
        self._overdue = True
        self._publish()
        workflow.logger.warning("meeting deadline passed without an invite")
        leader = await workflow.execute_activity_method(
            RecordActivities.find_unit_leader,
            LeaderQuery(
                health_trust=self._referral.health_trust,
                receiving_unit=self._referral.receiving_unit,
            ),
            start_to_close_timeout=_ACTIVITY_TIMEOUT,
            retry_policy=_RETRY,
            summary="find the unit leader",
        )
        await self._notify(
            TaskKind.MEETING_DEADLINE_ESCALATION,
            recipient=leader
            or f"leder:{self._referral.health_trust}:{self._referral.receiving_unit.value}",
            subject=f"Frist for avklaringsmøte passert ({self._deadline.strftime('%d.%m.%Y')})",
            body=f"ROP-forløp {self._referral.referral_id}: ingen innkalling sendt innen fristen.",
        )
        await self._record(
            EventKind.MEETING_OVERDUE, actor="rop-forlop", change=SummaryChange(overdue=True)
        )

    # --- Helpers -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _step(self) -> AsyncIterator[None]:
        """Run an Update's side effects after intake, one step at a time, in order."""
        await workflow.wait_condition(lambda: self._intake_done)
        async with self._step_lock:
            yield

    async def _record(
        self,
        kind: EventKind,
        *,
        actor: str,
        change: SummaryChange,
        details: dict[str, JsonValue] | None = None,
    ) -> None:
        await workflow.execute_activity_method(
            RecordActivities.record_event,
            PathwayEvent(
                idempotency_key=f"{self._workflow_id}/{kind.value}",
                workflow_id=self._workflow_id,
                kind=kind,
                actor=actor,
                occurred_at=workflow.now(),
                change=change,
                details=details or {},
            ),
            start_to_close_timeout=_ACTIVITY_TIMEOUT,
            retry_policy=_RETRY,
            summary=f"record {kind.value}",
        )

    async def _notify(
        self,
        kind: TaskKind,
        *,
        recipient: str,
        subject: str,
        body: str,
        key_suffix: str = "",
        due_at: datetime | None = None,
    ) -> None:
        key = f"{self._workflow_id}/{kind.value}" + (f"/{key_suffix}" if key_suffix else "")
        await workflow.execute_activity_method(
            NotificationActivities.notify,
            Notification(
                idempotency_key=key,
                workflow_id=self._workflow_id,
                kind=kind,
                recipient=recipient,
                subject=subject,
                body=body,
                due_at=due_at,
            ),
            start_to_close_timeout=_ACTIVITY_TIMEOUT,
            retry_policy=_RETRY,
            summary=f"task: {kind.value}",
        )

    async def _close_tasks(self, kinds: list[TaskKind], status: TaskStatus) -> None:
        await workflow.execute_activity_method(
            NotificationActivities.close_tasks,
            CloseTasks(workflow_id=self._workflow_id, kinds=kinds, status=status),
            start_to_close_timeout=_ACTIVITY_TIMEOUT,
            retry_policy=_RETRY,
            summary=f"close tasks: {', '.join(k.value for k in kinds)}",
        )

    def _publish(self) -> None:
        """Keep the search attributes and the UI's current details in step with the state."""
        workflow.upsert_search_attributes(
            [
                search_attributes.PHASE.value_set(self._phase.value),
                search_attributes.MEETING_DEADLINE.value_set(
                    calendar.at_local_time(self._deadline, time(0, 0))
                ),
                search_attributes.OVERDUE.value_set(self._overdue),
            ]
        )
        due = self._due()
        next_step = (
            f"Next: {due[0].what} by {_last_day_before(due[0].by)}." if due else "Nothing due."
        )
        overdue = " OVERDUE: meeting deadline passed." if self._overdue else ""
        workflow.set_current_details(f"Phase: {self._phase.value}. {next_step}{overdue}")

    def _done(self) -> list[str]:
        done = [f"referral received {_norwegian_date(self._referral.received_at)}"]
        if self._reminder_sent:
            done.append("meeting reminder sent")
        if self._overdue:
            done.append("meeting deadline escalated")
        if self._assessment:
            done.append(f"assessed: {self._assessment.assessment.decision.value}")
        if self._invite:
            timing = "on time" if self._invite.on_time else "late"
            done.append(f"meeting invite sent {_norwegian_date(self._invite.sent_at)} ({timing})")
        if self._meeting:
            done.append(f"meeting held {_norwegian_date(self._meeting.held_at)}")
        return done

    def _due(self) -> list[DueItem]:
        if self._phase is Phase.AWAITING_ASSESSMENT:
            return [
                DueItem(what="assess the referral", by=self._escalation_at),
                DueItem(what="invite to avklaringsmøte", by=self._escalation_at),
            ]
        if self._phase is Phase.AWAITING_INVITE:
            return [DueItem(what="invite to avklaringsmøte", by=self._escalation_at)]
        if self._phase is Phase.MEETING_INVITED and self._invite:
            return [DueItem(what="hold avklaringsmøte", by=self._invite.invite.meeting_at)]
        return []


_MEETING_CHASERS = [TaskKind.INVITE_TO_MEETING_REMINDER, TaskKind.MEETING_DEADLINE_ESCALATION]
