"""The ROP pathway as one durable workflow, from referral to closure, for years if need be.

The workflow holds the pathway's state and its clock. It computes every deadline
itself (pure functions of the referral and the settings), waits on durable timers
for reminders and escalations, and cancels them when the step they chase is done.
People drive it through Updates whose validators refuse a wrong step before it
enters history; each accepted step is recorded by one activity in one transaction,
and shows in the status, search attributes and timers only once it is recorded (a
step the record refuses is not applied at all). An Update id is applied once: within
a run Temporal sees to it, across runs the answers kept in the state do.
After a periodic review, once the run's history is long (or whenever the server suggests
it), the workflow continues as new, carrying its compact state, so no run's history grows
without bound while a short pathway stays one run.
"""

# No `from __future__ import annotations` here: the sandbox imports this module for every
# workflow run, and string annotations would be compiled anew each time to read the types.

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from temporalio import workflow
from temporalio.common import RawValue

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, JsonValue, ValidationError

    from rop_domain import calendar, deadlines, tasks
    from rop_domain.commands import EventKind, SummaryChange
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
        NO_ADDRESS,
        Assessment,
        AssessmentDecision,
        MeetingInvite,
        MeetingMove,
        Phase,
        RecordedAssessment,
        RecordedInvite,
        Referral,
        referral_differences,
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
    from rop_domain.reconcile import RecordBehind, RecordedSteps, recorded_step
    from rop_domain.state import (
        Chase,
        MeasureEntry,
        PathwayInput,
        PathwayOutcome,
        ReviewCycle,
    )
    from rop_domain.steps import StepName
    from rop_domain.tasks import About, TaskKind, TaskStatus
    from rop_domain.view import PathwayStatus
    from workflows import status_view
    from workflows.effects import SYSTEM_ACTOR, StepRecord
    from workflows.patches import INVITE_TASK, UNDELIVERED_TASK
    from workflows.pathway_base import REJECTED, reject

# Part of the workflow class: imported into the sandbox with it, not passed through.
from workflows.watchers import PathwayWatchers

TASK_QUEUE = "rop-forlop"
__all__ = ["REJECTED", "TASK_QUEUE", "RopPathway"]

_CLOCK_TOLERANCE = timedelta(minutes=1)
"""People write times to the minute, and their clocks differ a little from the server's."""


_Argument = TypeVar("_Argument")
_Handler = Callable[[Any, _Argument], Awaitable[PathwayStatus]]
_Validator = Callable[[Any, _Argument], None]


def _once(handler: _Handler[_Argument]) -> _Handler[_Argument]:
    """An Update applied once per id, across runs: a repeat gets the first answer.

    Temporal itself answers a repeated Update id within a run; after continue-as-new
    the answers kept in the state do, for `ANSWERS_KEPT_FOR` (within `MAX_ANSWER_BYTES`).
    """

    @functools.wraps(handler)
    async def answered_once(self: "RopPathway", argument: _Argument) -> PathwayStatus:
        info = workflow.current_update_info()
        assert info is not None
        kept = self._state.kept_answer(info.id)
        if kept is not None:
            try:
                return PathwayStatus.model_validate_json(kept.text())
            except ValidationError:
                # An answer kept before the public status took its shape: the status now.
                return self.status()
        answer = await handler(self, argument)
        self._state.keep_answer(
            info.id,
            info.name,
            workflow.now(),
            answer.model_dump_json(),
            bounded_by_bytes=self._rules.answers_by_bytes,
        )
        return answer

    return answered_once


def _not_too_far_ahead(meeting_at: datetime, far_ahead_reason: str | None) -> None:
    """A meeting not absurdly far ahead without a stated reason (likely a mistyped date)."""
    if meeting_at - workflow.now() > deadlines.MEETING_AHEAD_WITHOUT_REASON and (
        not far_ahead_reason
    ):
        days = deadlines.MEETING_AHEAD_WITHOUT_REASON.days
        raise reject(
            f"meeting_at lies more than {days} days ahead: check the date, or give far_ahead_reason"
        )


def _unless_answered(validator: _Validator[_Argument]) -> _Validator[_Argument]:
    """A validator that lets through a repeat of an answered Update (`_once` answers it)."""

    @functools.wraps(validator)
    def check(self: "RopPathway", argument: _Argument) -> None:
        info = workflow.current_update_info()
        kept = self._state.kept_answer(info.id) if info is not None else None
        if kept is None:
            validator(self, argument)
        elif info is not None and kept.update_name != info.name:
            raise reject(f"Update id {info.id} was used for {kept.update_name} already")

    return check


@workflow.defn(name="RopPathway")
class RopPathway(PathwayWatchers):
    """One patient's ROP pathway."""

    @workflow.init
    def __init__(self, pathway: PathwayInput) -> None:
        super().__init__(pathway)  # the state, declared and set in `PathwayBase`
        self._effects.on_delivery_failed = self._delivery_failed
        self._effects.on_recording_stalled = self._recording_stalls
        self._effects.on_undelivered = self._tell_the_clinician

    @workflow.run
    async def run(self, pathway: PathwayInput) -> PathwayOutcome:
        self._publish()
        if pathway.state is None:
            workflow.logger.info("pathway started", extra={"meeting_deadline": str(self._deadline)})
            self._state.participants = await self._effects.intake(self._deadline)
            self._intake_done = True
        # A restart from the record: deliveries under way when the workflow was lost.
        self._effects.deliver(pathway.redeliver)
        watchers = [
            asyncio.create_task(self._watch_meeting_deadline()),
            asyncio.create_task(self._follow_up()),
        ]
        if self._rules.chases_assessment:
            watchers.append(asyncio.create_task(self._watch_assessment_deadline()))
        await workflow.wait_condition(
            lambda: (
                self._ended()
                or self._time_to_continue_as_new()
                or workflow.info().is_continue_as_new_suggested()
                or self._fault is not None
            )
        )
        if self._fault is not None:
            # Not an ApplicationError: the workflow task fails and is retried, the pathway
            # waits in plain sight of operators for a fix, and nothing is lost.
            raise RuntimeError(self._fault)
        await workflow.wait_condition(workflow.all_handlers_finished)
        # A delivery under way finishes in this run, so that no task is sent from two runs.
        await workflow.wait_condition(self._effects.deliveries_done)
        if not self._finished():
            # Pending timers end with this run; the next run sets its own from the state.
            self._state.runs += 1
            workflow.continue_as_new(
                PathwayInput(referral=self._referral, settings=self._settings, state=self._state)
            )
        await asyncio.gather(*watchers)
        workflow.logger.info("pathway ended", extra={"phase": self._state.phase.value})
        return PathwayOutcome(
            workflow_id=self._workflow_id,
            phase=self._state.phase,
            invited_on_time=self._state.invite.on_time if self._state.invite else None,
            overdue=bool(status_view.overdue_items(self._state)),
            reviews_completed=self._state.reviews_completed,
            runs=self._state.runs,
        )

    def _time_to_continue_as_new(self) -> bool:
        """After a review, once the run's history is long; runs from before
        `CONTINUE_WHEN_LONG` continued after every review."""
        if not self._review_completed_this_run:
            return False
        if not self._rules.continue_when_long:
            return True
        events = workflow.info().get_current_history_length()
        return events >= self._settings.continue_as_new_after_events

    # --- Updates: referral to meeting ---------------------------------------------------

    @workflow.update
    @_once
    async def assess(self, assessment: Assessment) -> PathwayStatus:
        """The specialist service decides whether the patient belongs in the pathway."""
        async with self._applying(lambda: self._validate_assess(assessment)) as new_step:
            accepted = assessment.decision is AssessmentDecision.IN_TARGET_GROUP
            self._state.assessment = RecordedAssessment(
                assessment=assessment, assessed_at=workflow.now()
            )
            self._state.phase = Phase.AWAITING_INVITE if accepted else Phase.NOT_IN_TARGET_GROUP
            step = new_step(
                EventKind.ASSESSED,
                actor=assessment.assessor,
                change=SummaryChange(
                    phase=self._state.phase, assessment_decision=assessment.decision
                ),
                details=assessment.model_dump(mode="json"),
            ).close_for(StepName.ASSESS)
            if accepted and self._rules.patched(INVITE_TASK):
                step.raise_task(TaskKind.INVITE_TO_MEETING, About(deadline=self._deadline))
            if not accepted:
                step.close(tasks.MEETING_CHASE, TaskStatus.CANCELLED).raise_task(
                    TaskKind.REFERRAL_NOT_ACCEPTED
                )
            await step.commit()
        return self.status()

    @assess.validator
    @_unless_answered
    def _validate_assess(self, assessment: Assessment) -> None:
        self._refuse_if_ended()
        if self._state.phase is not Phase.AWAITING_ASSESSMENT:
            raise reject(f"the referral is already assessed (phase: {self._state.phase.value})")

    @workflow.update
    @_once
    async def invite_to_meeting(self, invite: MeetingInvite) -> PathwayStatus:
        """The clinician invites the parties to the first clarification meeting (avklaringsmøte)."""
        async with self._applying(lambda: self._invite_fits_the_state(invite)) as new_step:
            sent_at = workflow.now()
            sent_on = calendar.local_date(sent_at)
            recorded = RecordedInvite(
                invite=invite,
                sent_at=sent_at,
                on_time=sent_on <= self._deadline,
                working_days_used=calendar.working_days_between(
                    calendar.local_date(self._referral.received_at),
                    sent_on,
                    self._settings.working_day_rule,
                ),
            )
            self._state.invite = recorded
            self._state.phase = Phase.MEETING_INVITED
            step = new_step(
                EventKind.MEETING_INVITED,
                actor=invite.invited_by,
                change=SummaryChange(
                    phase=self._state.phase,
                    invited_at=sent_at,
                    meeting_at=invite.meeting_at,
                    invited_on_time=recorded.on_time,
                    invite_working_days=recorded.working_days_used,
                    overdue=self._overdue(),
                ),
                details={
                    "meeting_at": invite.meeting_at.isoformat(),
                    "participants": [p.role.value for p in invite.participants],
                    "reached_by": {
                        p.role.value: p.reached_by for p in invite.participants if p.reached_by
                    },
                    "absent_reasons": {r.value: why for r, why in invite.absent_reasons.items()},
                    "on_time": recorded.on_time,
                    "working_days_used": recorded.working_days_used,
                },
            ).close_for(StepName.INVITE_TO_MEETING)
            self._invite_parties(step, invite)
            await step.commit()
        return self.status()

    @invite_to_meeting.validator
    @_unless_answered
    def _validate_invite(self, invite: MeetingInvite) -> None:
        self._invite_fits_the_state(invite)
        # Rules for what a new invite says. The validator only runs for Updates as they
        # arrive, never on replay, so invites accepted before these rules replay unchanged.
        _not_too_far_ahead(invite.meeting_at, invite.far_ahead_reason)
        invited = {p.role for p in invite.participants}
        unexplained = [
            p.role.value
            for p in self._state.participants
            if p.role not in invited and p.role not in invite.absent_reasons
        ]
        if unexplained:
            raise reject(
                f"recommended parties not invited: {', '.join(dict.fromkeys(unexplained))}; "
                "invite them, or say why not in absent_reasons"
            )
        unreachable = [
            p.role.value
            for p in invite.participants
            if p.address == NO_ADDRESS and not p.reached_by
        ]
        if unreachable:
            raise reject(
                f"no address for {', '.join(unreachable)}: give one, or say how the party was "
                "reached in reached_by (e.g. telefon)"
            )

    def _invite_fits_the_state(self, invite: MeetingInvite) -> None:
        """Checked again when the step's turn comes (and on replay): the pathway's state."""
        self._refuse_if_ended()
        if self._state.phase is Phase.AWAITING_ASSESSMENT:
            raise reject("the referral must be assessed as in the target group before an invite")
        if self._state.phase is not Phase.AWAITING_INVITE:
            raise reject(f"the meeting invite is already sent (phase: {self._state.phase.value})")
        if invite.meeting_at <= workflow.now():
            raise reject("meeting_at lies in the past")
        if not invite.participants:
            raise reject("participants must not be empty")

    @workflow.update
    @_once
    async def move_meeting(self, move: MeetingMove) -> PathwayStatus:
        """The meeting moves to another time: the old invitations are cancelled and the
        parties invited anew. Whether the first invite was on time does not change."""
        async with self._applying(lambda: self._validate_move(move)) as new_step:
            recorded = self._state.invite
            assert recorded is not None
            before = recorded.invite
            moved = before.model_copy(
                update={
                    "meeting_at": move.meeting_at,
                    "location": move.location or before.location,
                    "video_link": move.video_link or before.video_link,
                    "participants": move.participants or before.participants,
                    "far_ahead_reason": move.far_ahead_reason,
                }
            )
            self._state.invite = recorded.model_copy(update={"invite": moved})
            step = new_step(
                EventKind.MEETING_MOVED,
                actor=move.moved_by,
                change=SummaryChange(meeting_at=move.meeting_at),
                details={
                    "meeting_at": move.meeting_at.isoformat(),
                    "previous_meeting_at": before.meeting_at.isoformat(),
                    "reason": move.reason,
                    "participants": [p.role.value for p in moved.participants],
                },
            ).close_for(StepName.MOVE_MEETING)
            self._invite_parties(step, moved)
            await step.commit()
        return self.status()

    @move_meeting.validator
    @_unless_answered
    def _validate_move(self, move: MeetingMove) -> None:
        self._refuse_if_ended()
        if self._state.phase is not Phase.MEETING_INVITED or self._state.invite is None:
            raise reject(f"no meeting is waiting to be held (phase: {self._state.phase.value})")
        if move.meeting_at <= workflow.now():
            raise reject("meeting_at lies in the past")
        _not_too_far_ahead(move.meeting_at, move.far_ahead_reason)
        if move.meeting_at == self._state.invite.invite.meeting_at:
            raise reject("the meeting is at that time already")

    @workflow.update
    @_once
    async def record_meeting(self, outcome: MeetingOutcome) -> PathwayStatus:
        """The clarification meeting was held: koordinator, individual plan, crisis plan, measures."""
        async with self._applying(lambda: self._validate_meeting(outcome)) as new_step:
            self._state.meeting = outcome
            self._state.phase = Phase.FOLLOW_UP
            self._state.measures = [MeasureEntry(measure=m) for m in outcome.measures]
            self._state.plan_version = 1
            self._state.review = ReviewCycle(
                interval_weeks=outcome.review_interval_weeks,
                due=calendar.local_date(outcome.held_at)
                + timedelta(weeks=outcome.review_interval_weeks),
            )
            crisis_deadline = self._crisis_plan_deadline()
            assert crisis_deadline is not None
            step = (
                new_step(
                    EventKind.MEETING_HELD,
                    actor=outcome.recorded_by,
                    change=SummaryChange(
                        phase=self._state.phase,
                        meeting_held_at=outcome.held_at,
                        koordinator=outcome.koordinator,
                        individual_plan=outcome.individual_plan.value,
                        next_review_due=self._state.review.due,
                    ),
                    details={
                        **outcome.model_dump(mode="json"),
                        # What the indicator on recommended parties compares the meeting with.
                        "recommended_roles": sorted(
                            {p.role.value for p in self._state.participants}
                        ),
                    },
                )
                .close_for(StepName.RECORD_MEETING)
                .raise_task(TaskKind.MAKE_CRISIS_PLAN, About(deadline=crisis_deadline))
            )
            self._release_ready_measures(step, actor=outcome.recorded_by)
            await step.commit()
        return self.status()

    @record_meeting.validator
    @_unless_answered
    def _validate_meeting(self, outcome: MeetingOutcome) -> None:
        self._refuse_if_ended()
        if self._state.phase is not Phase.MEETING_INVITED or self._state.invite is None:
            raise reject(f"no meeting has been invited to yet (phase: {self._state.phase.value})")
        if outcome.held_at > workflow.now() + _CLOCK_TOLERANCE:
            raise reject("held_at lies in the future")
        if outcome.held_at < self._state.invite.sent_at - _CLOCK_TOLERANCE:
            raise reject("held_at lies before the invitation was sent")
        _check_plan(outcome.measures)

    # --- Updates: crisis plan -----------------------------------------------------------

    @workflow.update
    @_once
    async def register_crisis_plan(self, plan: CrisisPlan) -> PathwayStatus:
        """A new version of the crisis plan (kriseplan), made with the patient."""
        async with self._applying(lambda: self._crisis_plan_fits_the_state(plan)) as new_step:
            self._state.crisis_plan = plan
            self._state.crisis_plan_at = workflow.now()
            self._state.revision_chase = Chase()  # the new version's revision is ahead
            await (
                new_step(
                    EventKind.CRISIS_PLAN_REGISTERED,
                    actor=plan.registered_by,
                    change=SummaryChange(
                        crisis_plan_version=plan.version,
                        crisis_plan_at=self._state.crisis_plan_at,
                        crisis_plan_overdue=False,
                        overdue=self._overdue(),
                    ),
                    details=plan.model_dump(mode="json"),
                )
                .close_for(StepName.REGISTER_CRISIS_PLAN)
                .commit()
            )
        return self.status()

    @register_crisis_plan.validator
    @_unless_answered
    def _validate_crisis_plan(self, plan: CrisisPlan) -> None:
        self._crisis_plan_fits_the_state(plan)
        # Not in the model, nor checked on replay: plans accepted before the rule must still
        # decode and apply as they did.
        if not plan.made_with_patient and not plan.without_patient_reason:
            raise reject(
                "a crisis plan made without the patient needs without_patient_reason: "
                "the plan is made together with the patient and relatives"
            )

    def _crisis_plan_fits_the_state(self, plan: CrisisPlan) -> None:
        self._require_follow_up()
        current = self._state.crisis_plan
        if current is not None and plan.version <= current.version:
            raise reject(f"version must be above the current crisis plan's ({current.version})")
        if plan.next_revision <= calendar.local_date(workflow.now()):
            raise reject("next_revision must lie in the future")

    # --- Updates: measures --------------------------------------------------------------

    @workflow.update
    @_once
    async def start_measure(self, step: MeasureStep) -> PathwayStatus:
        """A measure whose predecessors are done has started."""
        async with self._applying(lambda: self._validate_start(step)) as new_step:
            self._entry(step.measure_id).status = MeasureStatus.ACTIVE
            await (
                new_step(
                    EventKind.MEASURE_STARTED, actor=step.by, details=step.model_dump(mode="json")
                )
                .close_for(StepName.START_MEASURE, reference=step.measure_id)
                .commit()
            )
        return self.status()

    @start_measure.validator
    @_unless_answered
    def _validate_start(self, step: MeasureStep) -> None:
        self._require_follow_up()
        entry = self._known_measure(step.measure_id)
        if entry.status is MeasureStatus.PLANNED:
            waiting = ", ".join(open_predecessors(entry.measure, self._state.statuses()))
            raise reject(f"measure {step.measure_id} waits for: {waiting}")
        if entry.status is not MeasureStatus.READY:
            raise reject(f"measure {step.measure_id} is already {entry.status.value}")

    @workflow.update
    @_once
    async def complete_measure(self, step: MeasureStep) -> PathwayStatus:
        """A measure is done; measures that waited for it may start."""
        async with self._applying(lambda: self._validate_complete(step)) as new_step:
            self._entry(step.measure_id).status = MeasureStatus.COMPLETED
            recorded = new_step(
                EventKind.MEASURE_COMPLETED, actor=step.by, details=step.model_dump(mode="json")
            ).close_for(StepName.COMPLETE_MEASURE, reference=step.measure_id)
            self._release_ready_measures(recorded, actor=step.by)
            await recorded.commit()
        return self.status()

    @complete_measure.validator
    @_unless_answered
    def _validate_complete(self, step: MeasureStep) -> None:
        self._require_follow_up()
        entry = self._known_measure(step.measure_id)
        waiting = open_predecessors(entry.measure, self._state.statuses())
        if entry.status is MeasureStatus.PLANNED and waiting:
            raise reject(
                f"measure {step.measure_id} cannot complete: its predecessors are open "
                f"({', '.join(waiting)})"
            )
        if entry.status in SETTLED:
            raise reject(f"measure {step.measure_id} is already {entry.status.value}")

    @workflow.update
    @_once
    async def cancel_measure(self, cancellation: MeasureCancellation) -> PathwayStatus:
        """A measure will not be carried out; it no longer blocks those after it."""
        async with self._applying(lambda: self._validate_cancel(cancellation)) as new_step:
            self._entry(cancellation.measure_id).status = MeasureStatus.CANCELLED
            step = new_step(
                EventKind.MEASURE_CANCELLED,
                actor=cancellation.by,
                details=cancellation.model_dump(mode="json"),
            ).close_for(StepName.CANCEL_MEASURE, reference=cancellation.measure_id)
            self._release_ready_measures(step, actor=cancellation.by)
            await step.commit()
        return self.status()

    @cancel_measure.validator
    @_unless_answered
    def _validate_cancel(self, cancellation: MeasureCancellation) -> None:
        self._require_follow_up()
        entry = self._known_measure(cancellation.measure_id)
        if entry.status in SETTLED:
            raise reject(f"measure {cancellation.measure_id} is already {entry.status.value}")

    @workflow.update
    @_once
    async def revise_plan(self, revision: PlanRevision) -> PathwayStatus:
        """Replace the plan of measures; measures kept by id keep their status."""
        async with self._applying(lambda: self._validate_revision(revision)) as new_step:
            step = new_step(
                EventKind.PLAN_REVISED,
                actor=revision.revised_by,
                details=self._replace_plan(revision.measures, reason=revision.reason),
            )
            self._release_ready_measures(step, actor=revision.revised_by)
            await step.commit()
        return self.status()

    @revise_plan.validator
    @_unless_answered
    def _validate_revision(self, revision: PlanRevision) -> None:
        self._require_follow_up()
        current = self._state.plan_version
        if revision.replaces_version is not None and revision.replaces_version != current:
            raise reject(
                f"plan version {revision.replaces_version} is already replaced "
                f"(current: version {current})"
                if revision.replaces_version < current
                else f"there is no plan version {revision.replaces_version} "
                f"(current: version {current})"
            )
        self._check_revision(revision.measures)

    # --- Updates: reviews, objection, closure -------------------------------------------

    @workflow.update
    @_once
    async def complete_review(self, review: Review) -> PathwayStatus:
        """The periodic review (evaluering) was held: continue, revise the plan, or end."""
        async with self._applying(lambda: self._validate_review(review)) as new_step:
            cycle = self._state.review
            assert cycle is not None
            self._state.reviews_completed += 1
            interval = review.next_interval_weeks or cycle.interval_weeks
            today = calendar.local_date(workflow.now())
            self._state.review = ReviewCycle(
                number=cycle.number + 1,
                interval_weeks=interval,
                due=today + timedelta(weeks=interval),
            )
            ends = review.outcome is ReviewOutcome.END_PATHWAY
            if ends:
                self._mark_closed(
                    Closure(closed_by=review.reviewed_by, reason=ClosureReason.COMPLETED)
                )
            step = new_step(
                EventKind.REVIEW_COMPLETED,
                actor=review.reviewed_by,
                change=SummaryChange(
                    reviews_completed=self._state.reviews_completed,
                    next_review_due=self._state.review.due,
                    review_overdue=False,
                    overdue=self._overdue(),
                ),
                details=review.model_dump(mode="json"),
            ).close_for(StepName.COMPLETE_REVIEW)
            if review.revised_plan is not None:
                step.event(
                    EventKind.PLAN_REVISED,
                    actor=review.reviewed_by,
                    details=self._replace_plan(review.revised_plan, reason="periodic review"),
                )
                self._release_ready_measures(step, actor=review.reviewed_by)
            if ends:
                step.event(
                    EventKind.PATHWAY_CLOSED,
                    actor=review.reviewed_by,
                    change=self._closed_change(),
                    details={"reason": ClosureReason.COMPLETED.value, "by": "periodic review"},
                )
                self._add_closure(step)
            await step.commit()
        self._review_completed_this_run = True
        return self.status()

    @complete_review.validator
    @_unless_answered
    def _validate_review(self, review: Review) -> None:
        self._require_follow_up()
        cycle = self._state.review
        if review.review_number is not None and cycle is not None:
            if review.review_number < cycle.number:
                raise reject(f"review {review.review_number} is already completed")
            if review.review_number > cycle.number:
                raise reject(
                    f"review {review.review_number} is not due yet (due: review {cycle.number})"
                )
        if review.revised_plan is not None:
            self._check_revision(review.revised_plan)

    @workflow.update
    @_once
    async def record_objection(self, objection: Objection) -> PathwayStatus:
        """The patient objects to sharing with cooperating services (helsepersonelloven § 25)."""
        async with self._applying(lambda: self._validate_objection(objection)) as new_step:
            self._state.objection = objection
            self._state.objection_at = workflow.now()
            await new_step(
                EventKind.OBJECTION_RECORDED,
                actor=objection.recorded_by,
                change=SummaryChange(objection=True),
                details=objection.model_dump(mode="json"),
            ).commit()
        return self.status()

    @record_objection.validator
    @_unless_answered
    def _validate_objection(self, objection: Objection) -> None:
        self._refuse_if_ended()
        if self._state.objection is not None:
            raise reject("an objection to sharing is already recorded")

    @workflow.update
    @_once
    async def close_pathway(self, closure: Closure) -> PathwayStatus:
        """End the pathway from any phase: open tasks are cancelled and the parties told."""
        async with self._applying(lambda: self._validate_closure(closure)) as new_step:
            self._mark_closed(closure)
            step = new_step(
                EventKind.PATHWAY_CLOSED,
                actor=closure.closed_by,
                change=self._closed_change(),
                details=closure.model_dump(mode="json"),
            )
            self._add_closure(step)
            await step.commit()
        return self.status()

    @close_pathway.validator
    @_unless_answered
    def _validate_closure(self, closure: Closure) -> None:
        self._refuse_if_ended()

    @workflow.update
    @_once
    async def resend_notification(self, task_key: str) -> PathwayStatus:
        """An operator re-sends a task whose delivery failed."""
        self._state.failed_deliveries.remove(task_key)
        self._publish()
        self._effects.deliver([task_key])
        return self.status()

    @resend_notification.validator
    @_unless_answered
    def _validate_resend(self, task_key: str) -> None:
        if task_key not in self._state.failed_deliveries:
            raise reject(f"no failed delivery of task {task_key} in this pathway")

    def _recording_stalls(self, stalled: bool) -> None:
        self._recording_stalled = stalled
        self._publish()

    def _delivery_failed(self, task_key: str) -> None:
        workflow.logger.error("task delivery failed", extra={"task_key": task_key})
        if task_key not in self._state.failed_deliveries:
            self._state.failed_deliveries.append(task_key)
        self._publish()

    async def _tell_the_clinician(self, task_key: str) -> None:
        """A task no channel delivered is the receiving clinician's to get through another
        way (runs from before `UNDELIVERED_TASK` only flagged it); not once the pathway ended."""
        if task_key.endswith(TaskKind.TASK_UNDELIVERED.value):
            return  # such a task that did not get through is on the task list: no chain
        if self._ended() or not self._rules.patched(UNDELIVERED_TASK):
            return
        async with self._applying():
            await (
                self._effects.step(
                    EventKind.DELIVERY_FAILED, actor=SYSTEM_ACTOR, details={"task": task_key}
                )
                .raise_task(TaskKind.TASK_UNDELIVERED, About(undelivered=task_key))
                .commit()
            )

    @workflow.query
    def status(self) -> PathwayStatus:
        """Phase, deadlines, each part as recorded, what is done, due and overdue."""
        s = self._visible()
        return status_view.public_status(
            s,
            self._referral,
            self._deadlines(s),
            workflow_id=self._workflow_id,
            recording_stalled=self._recording_stalled,
        )

    @workflow.query
    def recorded_steps(self) -> RecordedSteps:
        """The steps this pathway recorded in the last two weeks, whole, and the phase they
        brought it to: what its record must hold (`rop reconcile` compares, and repairs)."""
        return RecordedSteps(
            workflow_id=self._workflow_id,
            phase=self._visible().phase,
            record_behind=self._state.record_behind,
            steps=[recorded_step(kept) for kept in self._state.recorded_steps],
        )

    @workflow.update
    def note_reconciliation(self, finding: RecordBehind) -> PathwayStatus:
        """What the last reconciliation found: a record behind the workflow is flagged where
        operators look (RopStalled `record-behind`, the status, the UI's details) until a
        check finds it caught up. Not a step: nothing is recorded."""
        for state in (self._state, self._recorded):
            if state is not None:
                state.record_behind = finding.behind
        self._publish()
        return self.status()

    @workflow.signal(dynamic=True)
    def ignore_signal(self, name: str, args: Sequence[RawValue]) -> None:
        """No Signal drives a pathway (its steps are Updates, validated before they enter
        history). One sent straight to Temporal, with any payload, even one the codec
        refused, is logged and ignored: never buffered, never a failed workflow task."""
        workflow.logger.warning("signal ignored", extra={"signal": name[:100]})

    @workflow.query
    def referral_differences(self, referral: Referral) -> list[str]:
        """The fields in which `referral` differs from this pathway's own (their names only,
        never their values): a resubmission of the same referral id must not differ."""
        return referral_differences(self._referral, referral)

    def _invite_parties(self, step: StepRecord, invite: MeetingInvite) -> None:
        """Add to an invite (or a move): an invitation task for each party, due at the meeting."""
        place = invite.location or str(invite.video_link)
        consented = set(invite.consented_after_objection)  # a move keeps the invite's
        for participant in invite.participants:
            if participant.reached_by is not None:
                continue  # reached another way, as the invite records: nothing to send
            granted = participant.role in consented
            if self._rules.objection_withholds and self._effects.withholds(
                TaskKind.MEETING_INVITATION, participant.role.value, consented=granted
            ):
                step.raise_task(
                    TaskKind.REACH_PARTY, About(party=participant, meeting_at=invite.meeting_at)
                )
            step.raise_task(
                TaskKind.MEETING_INVITATION,
                About(party=participant, meeting_at=invite.meeting_at, place=place),
                consented=granted,
            )

    # --- Measures and closure, as parts of a step ---------------------------------------

    def _release_ready_measures(self, step: StepRecord, *, actor: str) -> None:
        """Measures whose predecessors are settled become ready; their providers get a task."""
        ready = newly_ready((e.measure for e in self._state.measures), self._state.statuses())
        for measure_id in ready:
            entry = self._entry(measure_id)
            entry.status = MeasureStatus.READY
            measure = entry.measure
            step.raise_task(TaskKind.START_MEASURE, About(measure=measure)).event(
                EventKind.MEASURE_READY,
                actor=actor,
                details={"measure": measure.id, "provider": measure.provider.value},
            )

    def _replace_plan(self, measures: list[Measure], *, reason: str) -> dict[str, JsonValue]:
        """Swap in a revised plan; return the event details, the old plan among them."""
        old_plan = _as_json(self._state.measures)
        statuses = carry_statuses(measures, self._state.statuses())
        self._state.measures = [MeasureEntry(measure=m, status=statuses[m.id]) for m in measures]
        self._state.plan_version += 1
        return {
            "reason": reason,
            "plan_version": self._state.plan_version,
            "previous_plan": old_plan,
            "plan": _as_json(measures),
        }

    def _mark_closed(self, closure: Closure) -> None:
        self._state.closure = closure
        self._state.closed_at = workflow.now()
        self._state.phase = Phase.CLOSED

    def _closed_change(self) -> SummaryChange:
        closure = self._state.closure
        assert closure is not None
        return SummaryChange(
            phase=Phase.CLOSED,
            closed_at=self._state.closed_at,
            closure_reason=closure.reason.value,
            overdue=False,
            crisis_plan_overdue=False,
            review_overdue=False,
        )

    def _add_closure(self, step: StepRecord) -> None:
        """Add to a closing step: cancel every open task, and tell every party."""
        closure = self._state.closure
        assert closure is not None
        step.close(None, TaskStatus.CANCELLED).raise_task(
            TaskKind.PATHWAY_CLOSED, About(reason=closure.reason.value)
        )

    # --- Helpers -------------------------------------------------------------------------

    def _entry(self, measure_id: str) -> MeasureEntry:
        entry = self._state.measure(measure_id)
        assert entry is not None
        return entry

    def _known_measure(self, measure_id: str) -> MeasureEntry:
        entry = self._state.measure(measure_id)
        if entry is None:
            known = ", ".join(e.measure.id for e in self._state.measures) or "none"
            raise reject(f"unknown measure {measure_id} (known: {known})")
        return entry

    def _check_revision(self, measures: list[Measure]) -> None:
        _check_plan(measures)
        kept = {m.id for m in measures}
        dropped = [
            e.measure.id
            for e in self._state.measures
            if e.status is MeasureStatus.ACTIVE and e.measure.id not in kept
        ]
        if dropped:
            raise reject(
                f"active measure(s) {', '.join(dropped)} missing from the revised plan: "
                "complete or cancel them first"
            )

    def _refuse_if_ended(self) -> None:
        if self._finished():
            raise reject(f"the pathway has ended (phase: {self._state.phase.value})")

    def _require_follow_up(self) -> None:
        self._refuse_if_ended()
        if self._state.phase is not Phase.FOLLOW_UP:
            raise reject(
                f"the clarification meeting has not been held yet (phase: {self._state.phase.value})"
            )


def _as_json(models: Sequence[BaseModel]) -> JsonValue:
    return cast("JsonValue", [model.model_dump(mode="json") for model in models])


def _check_plan(measures: list[Measure]) -> None:
    try:
        validate_plan(measures)
    except PlanError as error:
        raise reject(str(error)) from None
