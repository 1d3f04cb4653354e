"""The ROP pathway as one durable workflow, from referral to closure, for years if need be.

The workflow holds the pathway's state and its clock. It computes every deadline
itself (pure functions of the referral and the settings), waits on durable timers
for reminders and escalations, and cancels them when the step they chase is done.
People drive it through Updates whose validators refuse a wrong step before it
enters history. After each periodic review (or when the server suggests it) the
workflow continues as new, carrying its compact state, so no run's history grows
without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any, cast

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, JsonValue

    from activities.records import RecordActivities
    from rop_domain import calendar
    from rop_domain.commands import (
        EventKind,
        NewPathway,
        ParticipantQuery,
        SummaryChange,
        TaskKind,
        TaskStatus,
    )
    from rop_domain.followup import (
        Closure,
        ClosureReason,
        CrisisPlan,
        Measure,
        MeasureCancellation,
        MeasureStep,
        MeetingOutcome,
        Objection,
        PlanRevision,
        Review,
        ReviewOutcome,
    )
    from rop_domain.models import (
        FINAL_PHASES,
        Assessment,
        AssessmentDecision,
        DueItem,
        MeetingInvite,
        Participant,
        ParticipantRole,
        Phase,
        RecordedAssessment,
        RecordedInvite,
    )
    from rop_domain.plan import (
        SETTLED,
        MeasureStatus,
        PlanError,
        carry_statuses,
        newly_ready,
        open_predecessors,
        validate_plan,
    )
    from rop_domain.state import (
        Chase,
        MeasureEntry,
        PathwayInput,
        PathwayOutcome,
        PathwayState,
        PathwayStatus,
        ReviewCycle,
    )
    from workflows import search_attributes as sa
    from workflows.effects import ACTIVITY_TIMEOUT, RETRY, PathwayEffects
    from workflows.timers import settled_before

TASK_QUEUE = "rop-forlop"
REJECTED = "PathwayStepRejected"
"""ApplicationError type of an Update refused by its validator."""

_MEETING_CHASERS = [TaskKind.INVITE_TO_MEETING_REMINDER, TaskKind.MEETING_DEADLINE_ESCALATION]
_CRISIS_CHASERS = [
    TaskKind.MAKE_CRISIS_PLAN,
    TaskKind.CRISIS_PLAN_REMINDER,
    TaskKind.CRISIS_PLAN_ESCALATION,
]
_REVIEW_CHASERS = [TaskKind.HOLD_REVIEW, TaskKind.REVIEW_REMINDER, TaskKind.REVIEW_ESCALATION]
_SYSTEM = "rop-forlop"


def _reject(message: str) -> ApplicationError:
    return ApplicationError(message, type=REJECTED, non_retryable=True)


def _day(value: date | datetime) -> str:
    """A date as Norwegians write it (dd.mm.yyyy), in Norwegian time."""
    day = calendar.local_date(value) if isinstance(value, datetime) else value
    return day.strftime("%d.%m.%Y")


def _last_day_before(instant: datetime) -> str:
    """The last Norwegian day before `instant`: a step due before midnight is due that day."""
    return _day(instant - timedelta(microseconds=1))


@workflow.defn(name="RopPathway")
class RopPathway:
    """One patient's ROP pathway."""

    @workflow.init
    def __init__(self, pathway: PathwayInput) -> None:
        referral, settings = pathway.referral, pathway.settings
        self._referral = referral
        self._settings = settings
        self._s = pathway.state or PathwayState()
        self._workflow_id = workflow.info().workflow_id
        self._effects = PathwayEffects(referral, settings, self._s)
        self._deadline = calendar.deadline_after(
            referral.received_at, settings.meeting_working_days, settings.working_day_rule
        )
        self._reminder_at = self._reminder_instant(self._deadline)
        self._escalation_at = calendar.end_of_day(self._deadline)
        self._intake_done = pathway.state is not None
        self._review_completed_this_run = False
        # Steps record in the order their Updates were accepted.
        self._step_lock = asyncio.Lock()

    @workflow.run
    async def run(self, pathway: PathwayInput) -> PathwayOutcome:
        self._publish()
        if pathway.state is None:
            workflow.logger.info("pathway started", extra={"meeting_deadline": str(self._deadline)})
            await self._intake()
        watchers = [
            asyncio.create_task(self._watch_meeting_deadline()),
            asyncio.create_task(self._follow_up()),
        ]
        await workflow.wait_condition(
            lambda: self._finished() or self._review_completed_this_run or self._history_is_long()
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        if not self._finished():
            for watcher in watchers:
                watcher.cancel()
            self._s.runs += 1
            workflow.continue_as_new(
                PathwayInput(referral=self._referral, settings=self._settings, state=self._s)
            )
        await asyncio.gather(*watchers)
        workflow.logger.info("pathway ended", extra={"phase": self._s.phase.value})
        return PathwayOutcome(
            workflow_id=self._workflow_id,
            phase=self._s.phase,
            invited_on_time=self._s.invite.on_time if self._s.invite else None,
            overdue=bool(self._overdue_items()),
            reviews_completed=self._s.reviews_completed,
            runs=self._s.runs,
        )

    # --- Updates: referral to meeting ---------------------------------------------------

    @workflow.update
    async def assess(self, assessment: Assessment) -> PathwayStatus:
        """The specialist service decides whether the patient belongs in the pathway."""
        accepted = assessment.decision is AssessmentDecision.IN_TARGET_GROUP
        self._s.assessment = RecordedAssessment(assessment=assessment, assessed_at=workflow.now())
        self._s.phase = Phase.AWAITING_INVITE if accepted else Phase.NOT_IN_TARGET_GROUP
        self._publish()
        async with self._step():
            await self._effects.record(
                EventKind.ASSESSED,
                actor=assessment.assessor,
                change=SummaryChange(phase=self._s.phase, assessment_decision=assessment.decision),
                details=assessment.model_dump(mode="json"),
            )
            await self._effects.close_tasks([TaskKind.ASSESS_REFERRAL], TaskStatus.COMPLETED)
            if not accepted:
                await self._effects.close_tasks(_MEETING_CHASERS, TaskStatus.CANCELLED)
                await self._effects.notify(
                    TaskKind.REFERRAL_NOT_ACCEPTED,
                    recipient=self._referral.referrer,
                    subject=f"Henvisning {self._referral.referral_id} er vurdert: ikke ROP-forløp",
                    body="Henvisningen er vurdert og tas ikke inn i ROP-forløpet. Se journal.",
                    external=True,
                )
        return self.status()

    @assess.validator
    def _validate_assess(self, assessment: Assessment) -> None:
        self._refuse_if_ended()
        if self._s.phase is not Phase.AWAITING_ASSESSMENT:
            raise _reject(f"the referral is already assessed (phase: {self._s.phase.value})")

    @workflow.update
    async def invite_to_meeting(self, invite: MeetingInvite) -> PathwayStatus:
        """The clinician invites the parties to the first clarification meeting (avklaringsmøte)."""
        sent_at = workflow.now()
        sent_on = calendar.local_date(sent_at)
        self._s.invite = RecordedInvite(
            invite=invite,
            sent_at=sent_at,
            on_time=sent_on <= self._deadline,
            working_days_used=calendar.working_days_between(
                calendar.local_date(self._referral.received_at),
                sent_on,
                self._settings.working_day_rule,
            ),
        )
        self._s.phase = Phase.MEETING_INVITED
        self._publish()
        async with self._step():
            when = invite.meeting_at.astimezone(calendar.OSLO).strftime("%d.%m.%Y kl. %H:%M")
            place = invite.location or str(invite.video_link)
            await asyncio.gather(
                *(
                    self._effects.notify(
                        TaskKind.MEETING_INVITATION,
                        recipient=participant.address,
                        subject=f"Innkalling til avklaringsmøte (ROP) {when}",
                        body=f"Avklaringsmøte i ROP-forløp {self._referral.referral_id} {when}. "
                        f"Sted: {place}.",
                        external=self._is_external(participant),
                        due_at=invite.meeting_at,
                    )
                    for participant in invite.participants
                )
            )
            await self._effects.close_tasks(_MEETING_CHASERS, TaskStatus.CANCELLED)
            await self._effects.record(
                EventKind.MEETING_INVITED,
                actor=invite.invited_by,
                change=SummaryChange(
                    phase=self._s.phase,
                    invited_at=sent_at,
                    meeting_at=invite.meeting_at,
                    invited_on_time=self._s.invite.on_time,
                    invite_working_days=self._s.invite.working_days_used,
                    overdue=self._overdue_now(),
                ),
                details={
                    "meeting_at": invite.meeting_at.isoformat(),
                    "participants": [p.role.value for p in invite.participants],
                    "on_time": self._s.invite.on_time,
                    "working_days_used": self._s.invite.working_days_used,
                },
            )
        return self.status()

    @invite_to_meeting.validator
    def _validate_invite(self, invite: MeetingInvite) -> None:
        self._refuse_if_ended()
        if self._s.phase is Phase.AWAITING_ASSESSMENT:
            raise _reject("the referral must be assessed as in the target group before an invite")
        if self._s.phase is not Phase.AWAITING_INVITE:
            raise _reject(f"the meeting invite is already sent (phase: {self._s.phase.value})")
        if invite.meeting_at <= workflow.now():
            raise _reject("meeting_at lies in the past")
        if not invite.participants:
            raise _reject("participants must not be empty")

    @workflow.update
    async def record_meeting(self, outcome: MeetingOutcome) -> PathwayStatus:
        """The clarification meeting was held: koordinator, individual plan, crisis plan, measures."""
        self._s.meeting = outcome
        self._s.phase = Phase.FOLLOW_UP
        self._s.measures = [MeasureEntry(measure=m) for m in outcome.measures]
        self._s.plan_version = 1
        self._s.review = ReviewCycle(
            interval_weeks=outcome.review_interval_weeks,
            due=calendar.local_date(outcome.held_at)
            + timedelta(weeks=outcome.review_interval_weeks),
        )
        self._publish()
        async with self._step():
            crisis_deadline = self._crisis_plan_deadline()
            assert crisis_deadline is not None
            await self._effects.record(
                EventKind.MEETING_HELD,
                actor=outcome.recorded_by,
                change=SummaryChange(
                    phase=self._s.phase,
                    meeting_held_at=outcome.held_at,
                    koordinator=outcome.koordinator,
                    individual_plan=outcome.individual_plan.value,
                    next_review_due=self._s.review.due,
                ),
                details=outcome.model_dump(mode="json"),
            )
            await self._effects.notify(
                TaskKind.MAKE_CRISIS_PLAN,
                recipient=outcome.crisis_plan_responsible,
                subject=f"Lag kriseplan sammen med pasienten innen {_day(crisis_deadline)}",
                body=f"ROP-forløp {self._referral.referral_id}: kriseplan skal lages "
                "sammen med pasienten og eventuelt pårørende.",
                external=False,
                due_at=calendar.end_of_day(crisis_deadline),
            )
            await self._release_ready_measures(actor=outcome.recorded_by)
        return self.status()

    @record_meeting.validator
    def _validate_meeting(self, outcome: MeetingOutcome) -> None:
        self._refuse_if_ended()
        if self._s.phase is not Phase.MEETING_INVITED or self._s.invite is None:
            raise _reject(f"no meeting has been invited to yet (phase: {self._s.phase.value})")
        if outcome.held_at > workflow.now():
            raise _reject("held_at lies in the future")
        if outcome.held_at < self._s.invite.sent_at:
            raise _reject("held_at lies before the invitation was sent")
        _check_plan(outcome.measures)

    # --- Updates: crisis plan -----------------------------------------------------------

    @workflow.update
    async def register_crisis_plan(self, plan: CrisisPlan) -> PathwayStatus:
        """A new version of the crisis plan (kriseplan), made with the patient."""
        self._s.crisis_plan = plan
        self._s.crisis_plan_at = workflow.now()
        self._publish()
        async with self._step():
            await self._effects.close_tasks(
                [*_CRISIS_CHASERS, TaskKind.REVISE_CRISIS_PLAN], TaskStatus.COMPLETED
            )
            await self._effects.record(
                EventKind.CRISIS_PLAN_REGISTERED,
                actor=plan.registered_by,
                change=SummaryChange(
                    crisis_plan_version=plan.version,
                    crisis_plan_at=self._s.crisis_plan_at,
                    crisis_plan_overdue=False,
                    overdue=self._overdue_now(),
                ),
                details=plan.model_dump(mode="json"),
            )
        return self.status()

    @register_crisis_plan.validator
    def _validate_crisis_plan(self, plan: CrisisPlan) -> None:
        self._require_follow_up()
        current = self._s.crisis_plan
        if current is not None and plan.version <= current.version:
            raise _reject(f"version must be above the current crisis plan's ({current.version})")
        if plan.next_revision <= calendar.local_date(workflow.now()):
            raise _reject("next_revision must lie in the future")

    # --- Updates: measures --------------------------------------------------------------

    @workflow.update
    async def start_measure(self, step: MeasureStep) -> PathwayStatus:
        """A measure whose predecessors are done has started."""
        entry = self._entry(step.measure_id)
        entry.status = MeasureStatus.ACTIVE
        async with self._step():
            await self._effects.close_tasks(
                [TaskKind.START_MEASURE], TaskStatus.COMPLETED, reference=step.measure_id
            )
            await self._effects.record(
                EventKind.MEASURE_STARTED, actor=step.by, details=step.model_dump(mode="json")
            )
        return self.status()

    @start_measure.validator
    def _validate_start(self, step: MeasureStep) -> None:
        self._require_follow_up()
        entry = self._known_measure(step.measure_id)
        if entry.status is MeasureStatus.PLANNED:
            waiting = ", ".join(open_predecessors(entry.measure, self._s.statuses()))
            raise _reject(f"measure {step.measure_id} waits for: {waiting}")
        if entry.status is not MeasureStatus.READY:
            raise _reject(f"measure {step.measure_id} is already {entry.status.value}")

    @workflow.update
    async def complete_measure(self, step: MeasureStep) -> PathwayStatus:
        """A measure is done; measures that waited for it may start."""
        self._entry(step.measure_id).status = MeasureStatus.COMPLETED
        async with self._step():
            await self._effects.close_tasks(
                [TaskKind.START_MEASURE], TaskStatus.COMPLETED, reference=step.measure_id
            )
            await self._effects.record(
                EventKind.MEASURE_COMPLETED, actor=step.by, details=step.model_dump(mode="json")
            )
            await self._release_ready_measures(actor=step.by)
        return self.status()

    @complete_measure.validator
    def _validate_complete(self, step: MeasureStep) -> None:
        self._require_follow_up()
        entry = self._known_measure(step.measure_id)
        waiting = open_predecessors(entry.measure, self._s.statuses())
        if entry.status is MeasureStatus.PLANNED and waiting:
            raise _reject(
                f"measure {step.measure_id} cannot complete: its predecessors are open "
                f"({', '.join(waiting)})"
            )
        if entry.status in SETTLED:
            raise _reject(f"measure {step.measure_id} is already {entry.status.value}")

    @workflow.update
    async def cancel_measure(self, cancellation: MeasureCancellation) -> PathwayStatus:
        """A measure will not be carried out; it no longer blocks those after it."""
        self._entry(cancellation.measure_id).status = MeasureStatus.CANCELLED
        async with self._step():
            await self._effects.close_tasks(
                [TaskKind.START_MEASURE], TaskStatus.CANCELLED, reference=cancellation.measure_id
            )
            await self._effects.record(
                EventKind.MEASURE_CANCELLED,
                actor=cancellation.by,
                details=cancellation.model_dump(mode="json"),
            )
            await self._release_ready_measures(actor=cancellation.by)
        return self.status()

    @cancel_measure.validator
    def _validate_cancel(self, cancellation: MeasureCancellation) -> None:
        self._require_follow_up()
        entry = self._known_measure(cancellation.measure_id)
        if entry.status in SETTLED:
            raise _reject(f"measure {cancellation.measure_id} is already {entry.status.value}")

    @workflow.update
    async def revise_plan(self, revision: PlanRevision) -> PathwayStatus:
        """Replace the plan of measures; measures kept by id keep their status."""
        await self._replace_plan(
            revision.measures, actor=revision.revised_by, reason=revision.reason
        )
        return self.status()

    @revise_plan.validator
    def _validate_revision(self, revision: PlanRevision) -> None:
        self._require_follow_up()
        self._check_revision(revision.measures)

    # --- Updates: reviews, objection, closure -------------------------------------------

    @workflow.update
    async def complete_review(self, review: Review) -> PathwayStatus:
        """The periodic review (evaluering) was held: continue, revise the plan, or end."""
        cycle = self._s.review
        assert cycle is not None
        self._s.reviews_completed += 1
        interval = review.next_interval_weeks or cycle.interval_weeks
        today = calendar.local_date(workflow.now())
        self._s.review = ReviewCycle(
            number=cycle.number + 1, interval_weeks=interval, due=today + timedelta(weeks=interval)
        )
        self._review_completed_this_run = True
        if review.outcome is ReviewOutcome.END_PATHWAY:
            self._mark_closed(Closure(closed_by=review.reviewed_by, reason=ClosureReason.COMPLETED))
        self._publish()
        async with self._step():
            await self._effects.close_tasks(_REVIEW_CHASERS, TaskStatus.COMPLETED)
            await self._effects.record(
                EventKind.REVIEW_COMPLETED,
                actor=review.reviewed_by,
                change=SummaryChange(
                    reviews_completed=self._s.reviews_completed,
                    next_review_due=self._s.review.due,
                    review_overdue=False,
                    overdue=self._overdue_now(),
                ),
                details=review.model_dump(mode="json"),
            )
            if review.outcome is ReviewOutcome.REVISE_PLAN and review.revised_plan is not None:
                await self._replace_plan(
                    review.revised_plan,
                    actor=review.reviewed_by,
                    reason="periodic review",
                    locked=True,
                )
            if review.outcome is ReviewOutcome.END_PATHWAY:
                await self._carry_out_closure(locked=True)
        return self.status()

    @complete_review.validator
    def _validate_review(self, review: Review) -> None:
        self._require_follow_up()
        if review.revised_plan is not None:
            self._check_revision(review.revised_plan)

    @workflow.update
    async def record_objection(self, objection: Objection) -> PathwayStatus:
        """The patient objects to sharing with cooperating services (helsepersonelloven § 25)."""
        self._s.objection = objection
        self._s.objection_at = workflow.now()
        self._publish()
        async with self._step():
            await self._effects.record(
                EventKind.OBJECTION_RECORDED,
                actor=objection.recorded_by,
                change=SummaryChange(objection=True),
                details=objection.model_dump(mode="json"),
            )
        return self.status()

    @record_objection.validator
    def _validate_objection(self, objection: Objection) -> None:
        self._refuse_if_ended()
        if self._s.objection is not None:
            raise _reject("an objection to sharing is already recorded")

    @workflow.update
    async def close_pathway(self, closure: Closure) -> PathwayStatus:
        """End the pathway from any phase: open tasks are cancelled and the parties told."""
        self._mark_closed(closure)
        self._publish()
        await self._carry_out_closure(locked=False)
        return self.status()

    @close_pathway.validator
    def _validate_closure(self, closure: Closure) -> None:
        self._refuse_if_ended()

    @workflow.query
    def status(self) -> PathwayStatus:
        """Phase, deadlines, what is done, what is due and what is overdue."""
        return PathwayStatus(
            workflow_id=self._workflow_id,
            referral_id=self._referral.referral_id,
            phase=self._s.phase,
            received_at=self._referral.received_at,
            meeting_deadline=self._deadline,
            reminder_at=self._reminder_at,
            escalation_at=self._escalation_at,
            crisis_plan_deadline=self._crisis_plan_deadline(),
            overdue=bool(self._overdue_items()),
            overdue_items=self._overdue_items(),
            reminder_sent=self._s.meeting_chase.reminded,
            recommended_participants=self._s.participants,
            assessment=self._s.assessment,
            invite=self._s.invite,
            state=self._s,
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
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
            summary="record the referral",
        )
        self._s.participants = await workflow.execute_activity_method(
            RecordActivities.resolve_participants,
            ParticipantQuery(
                health_trust=referral.health_trust,
                municipality=referral.municipality,
                general_practitioner=referral.general_practitioner,
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
            summary="find recommended meeting participants",
        )
        await self._effects.notify(
            TaskKind.ASSESS_REFERRAL,
            recipient=referral.responsible_clinician,
            subject=f"Vurder henvisning {referral.referral_id} (ROP) og kall inn til "
            f"avklaringsmøte innen {_day(self._deadline)}",
            body="En henvisning til ROP-forløp venter på vurdering.",
            external=False,
            due_at=self._escalation_at,
        )
        self._intake_done = True

    async def _watch_meeting_deadline(self) -> None:
        """Remind before the meeting deadline, escalate when it has passed."""
        if self._s.phase not in (Phase.AWAITING_ASSESSMENT, Phase.AWAITING_INVITE):
            return
        await workflow.wait_condition(lambda: self._intake_done)
        await self._chase(
            deadline=self._deadline,
            settled=lambda: self._s.invite is not None or self._finished(),
            chase=self._s.meeting_chase,
            label="invite to avklaringsmøte",
            remind=self._remind_about_meeting,
            escalate=self._escalate_meeting_deadline,
        )

    async def _follow_up(self) -> None:
        """After the meeting: the crisis plan's deadline and revisions, and the review cycle."""
        await workflow.wait_condition(lambda: self._s.phase is Phase.FOLLOW_UP or self._finished())
        if self._finished():
            return
        await asyncio.gather(
            self._watch_crisis_plan_deadline(),
            self._watch_crisis_plan_revision(),
            self._watch_review(),
        )

    async def _chase(
        self,
        *,
        deadline: date,
        settled: Callable[[], bool],
        chase: Chase,
        label: str,
        remind: Callable[[], Awaitable[None]],
        escalate: Callable[[], Awaitable[None]],
    ) -> None:
        """Reminder at the reminder hour some working days before `deadline`; escalation at
        the end of the deadline day. Each is sent once, even across continue-as-new."""
        steps = (
            ("reminded", self._reminder_instant(deadline), f"remind: {label}", remind),
            ("escalated", calendar.end_of_day(deadline), f"escalate: {label}", escalate),
        )
        for flag, instant, summary, action in steps:
            if getattr(chase, flag):
                continue
            if await settled_before(instant, settled, summary):
                return
            async with self._step_lock:
                if settled():
                    return
                setattr(chase, flag, True)
                self._publish()
                await action()

    async def _remind_about_meeting(self) -> None:
        await self._effects.notify(
            TaskKind.INVITE_TO_MEETING_REMINDER,
            recipient=self._referral.responsible_clinician,
            subject=f"Påminnelse: kall inn til avklaringsmøte innen {_day(self._deadline)}",
            body=f"ROP-forløp {self._referral.referral_id}: fristen for innkalling nærmer seg.",
            external=False,
            due_at=self._escalation_at,
        )
        await self._effects.record(EventKind.MEETING_REMINDER_SENT, actor=_SYSTEM)

    async def _escalate_meeting_deadline(self) -> None:
        workflow.logger.warning("meeting deadline passed without an invite")
        await self._effects.notify(
            TaskKind.MEETING_DEADLINE_ESCALATION,
            recipient=await self._effects.unit_leader(),
            subject=f"Frist for avklaringsmøte passert ({_day(self._deadline)})",
            body=f"ROP-forløp {self._referral.referral_id}: ingen innkalling sendt innen fristen.",
            external=False,
        )
        await self._effects.record(
            EventKind.MEETING_OVERDUE, actor=_SYSTEM, change=SummaryChange(overdue=True)
        )

    async def _watch_crisis_plan_deadline(self) -> None:
        deadline = self._crisis_plan_deadline()
        if deadline is None or self._s.crisis_plan is not None:
            return
        await self._chase(
            deadline=deadline,
            settled=lambda: self._s.crisis_plan is not None or self._finished(),
            chase=self._s.crisis_chase,
            label="kriseplan",
            remind=self._remind_about_crisis_plan,
            escalate=self._escalate_crisis_plan,
        )

    async def _remind_about_crisis_plan(self) -> None:
        deadline = self._crisis_plan_deadline()
        assert deadline is not None
        assert self._s.meeting is not None
        await self._effects.notify(
            TaskKind.CRISIS_PLAN_REMINDER,
            recipient=self._s.meeting.crisis_plan_responsible,
            subject=f"Påminnelse: kriseplan skal være laget innen {_day(deadline)}",
            body=f"ROP-forløp {self._referral.referral_id}: kriseplanen er ikke registrert.",
            external=False,
            due_at=calendar.end_of_day(deadline),
        )
        await self._effects.record(EventKind.CRISIS_PLAN_REMINDER_SENT, actor=_SYSTEM)

    async def _escalate_crisis_plan(self) -> None:
        deadline = self._crisis_plan_deadline()
        assert deadline is not None
        await self._effects.notify(
            TaskKind.CRISIS_PLAN_ESCALATION,
            recipient=await self._effects.unit_leader(),
            subject=f"Frist for kriseplan passert ({_day(deadline)})",
            body=f"ROP-forløp {self._referral.referral_id}: ingen kriseplan innen fristen.",
            external=False,
        )
        await self._effects.record(
            EventKind.CRISIS_PLAN_OVERDUE,
            actor=_SYSTEM,
            change=SummaryChange(crisis_plan_overdue=True, overdue=True),
        )

    async def _watch_crisis_plan_revision(self) -> None:
        """Raise a task when the current crisis plan's revision falls due."""
        while True:
            await workflow.wait_condition(
                lambda: self._s.crisis_plan is not None or self._finished()
            )
            plan = self._s.crisis_plan
            if plan is None or self._finished():
                return

            def replaced(version: int = plan.version) -> bool:
                current = self._s.crisis_plan
                return self._finished() or current is None or current.version != version

            if self._s.crisis_revision_raised_for != plan.version:
                due_at = calendar.at_local_time(
                    plan.next_revision, time(self._settings.reminder_hour)
                )
                if not await settled_before(due_at, replaced, "crisis plan revision due"):
                    async with self._step_lock:
                        if not replaced():
                            await self._raise_crisis_revision(plan)
            await workflow.wait_condition(replaced)

    async def _raise_crisis_revision(self, plan: CrisisPlan) -> None:
        self._s.crisis_revision_raised_for = plan.version
        assert self._s.meeting is not None
        await self._effects.notify(
            TaskKind.REVISE_CRISIS_PLAN,
            recipient=self._s.meeting.crisis_plan_responsible,
            subject=f"Kriseplanen skal revideres ({_day(plan.next_revision)})",
            body=f"ROP-forløp {self._referral.referral_id}: revider kriseplan versjon "
            f"{plan.version} sammen med pasienten.",
            external=False,
        )
        await self._effects.record(
            EventKind.CRISIS_PLAN_REVISION_DUE, actor=_SYSTEM, details={"version": plan.version}
        )

    async def _watch_review(self) -> None:
        """Raise the review task when due; remind when overdue, escalate some days later."""
        cycle = self._s.review
        if cycle is None:
            return

        def done(number: int = cycle.number) -> bool:
            review = self._s.review
            return self._finished() or review is None or review.number != number

        if not cycle.task_raised:
            due_at = calendar.at_local_time(cycle.due, time(self._settings.reminder_hour))
            if await settled_before(due_at, done, f"review {cycle.number} due"):
                return
            async with self._step_lock:
                if done():
                    return
                cycle.task_raised = True
                await self._raise_review(cycle)
        escalation_day = calendar.add_working_days(
            cycle.due,
            self._settings.review_escalation_working_days,
            self._settings.working_day_rule,
        )
        steps = (
            ("reminded", calendar.end_of_day(cycle.due), "review overdue", self._remind_review),
            (
                "escalated",
                calendar.end_of_day(escalation_day),
                "escalate: review",
                self._escalate_review,
            ),
        )
        for flag, instant, summary, action in steps:
            if getattr(cycle.chase, flag):
                continue
            if await settled_before(instant, done, summary):
                return
            async with self._step_lock:
                if done():
                    return
                setattr(cycle.chase, flag, True)
                self._publish()
                await action(cycle)

    async def _raise_review(self, cycle: ReviewCycle) -> None:
        assert self._s.meeting is not None
        await self._effects.notify(
            TaskKind.HOLD_REVIEW,
            recipient=self._s.meeting.koordinator,
            subject=f"Evaluering {cycle.number} av ROP-forløp er due {_day(cycle.due)}",
            body=f"ROP-forløp {self._referral.referral_id}: hold evaluering av tiltaksplanen.",
            external=False,
            due_at=calendar.end_of_day(cycle.due),
        )
        await self._effects.record(
            EventKind.REVIEW_DUE, actor=_SYSTEM, details={"review": cycle.number}
        )

    async def _remind_review(self, cycle: ReviewCycle) -> None:
        assert self._s.meeting is not None
        await self._effects.notify(
            TaskKind.REVIEW_REMINDER,
            recipient=self._s.meeting.koordinator,
            subject=f"Påminnelse: evaluering {cycle.number} var due {_day(cycle.due)}",
            body=f"ROP-forløp {self._referral.referral_id}: evalueringen er ikke registrert.",
            external=False,
        )
        await self._effects.record(
            EventKind.REVIEW_OVERDUE,
            actor=_SYSTEM,
            change=SummaryChange(review_overdue=True, overdue=True),
            details={"review": cycle.number},
        )

    async def _escalate_review(self, cycle: ReviewCycle) -> None:
        await self._effects.notify(
            TaskKind.REVIEW_ESCALATION,
            recipient=await self._effects.unit_leader(),
            subject=f"Evaluering {cycle.number} av ROP-forløp er ikke holdt (due {_day(cycle.due)})",
            body=f"ROP-forløp {self._referral.referral_id}: evaluering mangler.",
            external=False,
        )
        await self._effects.record(
            EventKind.REVIEW_ESCALATED, actor=_SYSTEM, details={"review": cycle.number}
        )

    async def _release_ready_measures(self, *, actor: str) -> None:
        """Measures whose predecessors are settled become ready; their providers get a task."""
        ready = newly_ready((e.measure for e in self._s.measures), self._s.statuses())
        for measure_id in ready:
            self._entry(measure_id).status = MeasureStatus.READY
        for measure_id in ready:
            measure = self._entry(measure_id).measure
            await self._effects.notify(
                TaskKind.START_MEASURE,
                recipient=measure.responsible,
                subject=f"Start tiltak {measure.id} ({measure.kind.value}) i ROP-forløp",
                body=f"ROP-forløp {self._referral.referral_id}: tiltaket kan starte.",
                external=measure.provider.value != self._referral.receiving_unit.value,
                reference=measure.id,
            )
            await self._effects.record(
                EventKind.MEASURE_READY,
                actor=actor,
                details={"measure": measure.id, "provider": measure.provider.value},
            )

    async def _replace_plan(
        self, measures: list[Measure], *, actor: str, reason: str, locked: bool = False
    ) -> None:
        old_plan = _as_json(self._s.measures)
        statuses = carry_statuses(measures, self._s.statuses())
        self._s.measures = [MeasureEntry(measure=m, status=statuses[m.id]) for m in measures]
        self._s.plan_version += 1
        async with self._step(locked=locked):
            await self._effects.record(
                EventKind.PLAN_REVISED,
                actor=actor,
                details={
                    "reason": reason,
                    "plan_version": self._s.plan_version,
                    "previous_plan": old_plan,
                    "plan": _as_json(measures),
                },
            )
            await self._release_ready_measures(actor=actor)

    def _mark_closed(self, closure: Closure) -> None:
        self._s.closure = closure
        self._s.closed_at = workflow.now()
        self._s.phase = Phase.CLOSED

    async def _carry_out_closure(self, *, locked: bool) -> None:
        """Cancel every open task, tell the parties, close the record."""
        closure = self._s.closure
        assert closure is not None
        async with self._step(locked=locked):
            await self._effects.close_tasks(None, TaskStatus.CANCELLED)
            subject = f"ROP-forløp {self._referral.referral_id} er avsluttet"
            body = f"Forløpet er avsluttet ({closure.reason.value})."
            parties = [(self._referral.responsible_clinician, False)]
            if self._s.invite:
                parties += [
                    (p.address, self._is_external(p)) for p in self._s.invite.invite.participants
                ]
            parties += [
                (
                    e.measure.responsible,
                    e.measure.provider.value != self._referral.receiving_unit.value,
                )
                for e in self._s.measures
                if e.status not in SETTLED
            ]
            seen: set[str] = set()
            for recipient, external in parties:
                if recipient in seen:
                    continue
                seen.add(recipient)
                await self._effects.notify(
                    TaskKind.PATHWAY_CLOSED,
                    recipient=recipient,
                    subject=subject,
                    body=body,
                    external=external,
                )
            await self._effects.record(
                EventKind.PATHWAY_CLOSED,
                actor=closure.closed_by,
                change=SummaryChange(
                    phase=Phase.CLOSED,
                    closed_at=self._s.closed_at,
                    closure_reason=closure.reason.value,
                    overdue=False,
                    crisis_plan_overdue=False,
                    review_overdue=False,
                ),
                details=closure.model_dump(mode="json"),
            )

    # --- Helpers -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _step(self, *, locked: bool = False) -> AsyncIterator[None]:
        """Run an Update's side effects after intake, one step at a time, in order.

        `locked=True`: the caller already holds the step lock (a step inside a step).
        """
        await workflow.wait_condition(lambda: self._intake_done)
        if locked:
            yield
            return
        async with self._step_lock:
            yield

    def _finished(self) -> bool:
        return self._s.phase in FINAL_PHASES

    def _history_is_long(self) -> bool:
        return workflow.info().is_continue_as_new_suggested()

    def _reminder_instant(self, deadline: date) -> datetime:
        return calendar.reminder_instant(
            deadline,
            self._settings.reminder_working_days_before,
            time(self._settings.reminder_hour),
            self._settings.working_day_rule,
        )

    def _crisis_plan_deadline(self) -> date | None:
        if self._s.meeting is None:
            return None
        return calendar.add_working_days(
            calendar.local_date(self._s.meeting.held_at),
            self._settings.crisis_plan_working_days,
            self._settings.working_day_rule,
        )

    def _is_external(self, participant: Participant) -> bool:
        """Outside the receiving unit: everyone but the unit's own specialist service."""
        own = ParticipantRole(self._referral.receiving_unit.value.lower())
        return participant.role is not own

    def _entry(self, measure_id: str) -> MeasureEntry:
        entry = self._s.measure(measure_id)
        assert entry is not None
        return entry

    def _known_measure(self, measure_id: str) -> MeasureEntry:
        entry = self._s.measure(measure_id)
        if entry is None:
            known = ", ".join(e.measure.id for e in self._s.measures) or "none"
            raise _reject(f"unknown measure {measure_id} (known: {known})")
        return entry

    def _check_revision(self, measures: list[Measure]) -> None:
        _check_plan(measures)
        kept = {m.id for m in measures}
        dropped = [
            e.measure.id
            for e in self._s.measures
            if e.status is MeasureStatus.ACTIVE and e.measure.id not in kept
        ]
        if dropped:
            raise _reject(
                f"active measure(s) {', '.join(dropped)} missing from the revised plan: "
                "complete or cancel them first"
            )

    def _refuse_if_ended(self) -> None:
        if self._finished():
            raise _reject(f"the pathway has ended (phase: {self._s.phase.value})")

    def _require_follow_up(self) -> None:
        self._refuse_if_ended()
        if self._s.phase is not Phase.FOLLOW_UP:
            raise _reject(
                f"the clarification meeting has not been held yet (phase: {self._s.phase.value})"
            )

    def _overdue_items(self) -> list[str]:
        items: list[str] = []
        if self._finished():
            return items
        if self._s.meeting_chase.escalated and self._s.invite is None:
            items.append("meeting invite")
        if self._s.crisis_chase.escalated and self._s.crisis_plan is None:
            items.append("crisis plan")
        if self._s.review is not None and self._s.review.chase.reminded:
            items.append("review")
        return items

    def _overdue_now(self) -> bool:
        return bool(self._overdue_items())

    def _publish(self) -> None:
        """Keep the search attributes and the UI's current details in step with the state."""
        referral = self._referral
        updates: list[SearchAttributeUpdate[Any]] = [
            sa.PHASE.value_set(self._s.phase.value),
            sa.HEALTH_TRUST.value_set(referral.health_trust),
            sa.MUNICIPALITY.value_set(referral.municipality),
            sa.RECEIVING_UNIT.value_set(referral.receiving_unit.value),
            sa.MEETING_DEADLINE.value_set(calendar.at_local_time(self._deadline, time(0, 0))),
            sa.HAS_CRISIS_PLAN.value_set(self._s.crisis_plan is not None),
            sa.OVERDUE.value_set(bool(self._overdue_items())),
        ]
        if self._s.invite is not None:
            updates.append(sa.MEETING_INVITED_ON_TIME.value_set(self._s.invite.on_time))
        if self._s.review is not None and not self._finished():
            updates.append(
                sa.NEXT_REVIEW_DUE.value_set(calendar.at_local_time(self._s.review.due, time(0, 0)))
            )
        workflow.upsert_search_attributes(updates)
        due = self._due()
        next_step = (
            f"Next: {due[0].what} by {_last_day_before(due[0].by)}." if due else "Nothing due."
        )
        overdue = self._overdue_items()
        flagged = f" OVERDUE: {', '.join(overdue)}." if overdue else ""
        workflow.set_current_details(f"Phase: {self._s.phase.value}. {next_step}{flagged}")

    def _done(self) -> list[str]:
        s = self._s
        done = [f"referral received {_day(self._referral.received_at)}"]
        if s.meeting_chase.reminded:
            done.append("meeting reminder sent")
        if s.meeting_chase.escalated:
            done.append("meeting deadline escalated")
        if s.assessment:
            done.append(f"assessed: {s.assessment.assessment.decision.value}")
        if s.invite:
            timing = "on time" if s.invite.on_time else "late"
            done.append(f"meeting invite sent {_day(s.invite.sent_at)} ({timing})")
        if s.meeting:
            done.append(f"meeting held {_day(s.meeting.held_at)}")
        if s.crisis_plan and s.crisis_plan_at:
            done.append(
                f"crisis plan version {s.crisis_plan.version} registered {_day(s.crisis_plan_at)}"
            )
        done += [
            f"measure {e.measure.id} {e.status.value}" for e in s.measures if e.status in SETTLED
        ]
        if s.reviews_completed:
            done.append(f"{s.reviews_completed} review(s) completed")
        if s.objection and s.objection_at:
            done.append(f"objection to sharing recorded {_day(s.objection_at)}")
        if s.closure and s.closed_at:
            done.append(f"pathway closed {_day(s.closed_at)} ({s.closure.reason.value})")
        return done

    def _due(self) -> list[DueItem]:
        s = self._s
        if s.phase is Phase.AWAITING_ASSESSMENT:
            return [
                DueItem(what="assess the referral", by=self._escalation_at),
                DueItem(what="invite to avklaringsmøte", by=self._escalation_at),
            ]
        if s.phase is Phase.AWAITING_INVITE:
            return [DueItem(what="invite to avklaringsmøte", by=self._escalation_at)]
        if s.phase is Phase.MEETING_INVITED and s.invite:
            return [DueItem(what="hold avklaringsmøte", by=s.invite.invite.meeting_at)]
        if s.phase is not Phase.FOLLOW_UP:
            return []
        due: list[DueItem] = []
        crisis_deadline = self._crisis_plan_deadline()
        if s.crisis_plan is None and crisis_deadline is not None:
            due.append(DueItem(what="register kriseplan", by=calendar.end_of_day(crisis_deadline)))
        elif s.crisis_plan is not None:
            due.append(
                DueItem(
                    what="revise kriseplan", by=calendar.end_of_day(s.crisis_plan.next_revision)
                )
            )
        if s.review is not None:
            due.append(
                DueItem(what=f"hold review {s.review.number}", by=calendar.end_of_day(s.review.due))
            )
        return sorted(due, key=lambda item: item.by)


def _as_json(models: Sequence[BaseModel]) -> JsonValue:
    return cast("JsonValue", [model.model_dump(mode="json") for model in models])


def _check_plan(measures: list[Measure]) -> None:
    try:
        validate_plan(measures)
    except PlanError as error:
        raise _reject(str(error)) from None
