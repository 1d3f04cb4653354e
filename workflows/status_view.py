"""What the pathway's state means to its clients: the public status, done, due and overdue.

Pure functions of the state, used by the `status` query, every step's answer and the UI's
current details. The state itself never leaves the workflow: `public_status` is the one
place that decides what of it clients see (`rop_domain.view.PathwayStatus`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from rop_domain import calendar
    from rop_domain.models import FINAL_PHASES, DueItem, Phase, Referral
    from rop_domain.plan import SETTLED
    from rop_domain.state import PathwayState
    from rop_domain.view import (
        CrisisPlanStatus,
        MeasureStatusView,
        PathwayStatus,
        RecordedClosure,
        RecordedObjection,
        ReviewStatus,
    )


def day(value: date | datetime) -> str:
    """A date as Norwegians write it (dd.mm.yyyy), in Norwegian time."""
    local = calendar.local_date(value) if isinstance(value, datetime) else value
    return local.strftime("%d.%m.%Y")


@dataclass(frozen=True)
class Deadlines:
    """The pathway's fixed meeting deadline, and the crisis plan's once the meeting is held."""

    meeting: date
    meeting_reminder_at: datetime
    meeting_escalation_at: datetime
    crisis_plan: date | None
    assessment: date | None = None


def public_status(
    state: PathwayState,
    referral: Referral,
    deadlines: Deadlines,
    *,
    workflow_id: str,
    recording_stalled: bool,
) -> PathwayStatus:
    """The pathway as its clients see it, from the state as recorded."""
    late = overdue_items(state)
    review = state.review
    return PathwayStatus(
        workflow_id=workflow_id,
        referral_id=referral.referral_id,
        phase=state.phase,
        received_at=referral.received_at,
        meeting_deadline=deadlines.meeting,
        reminder_at=deadlines.meeting_reminder_at,
        escalation_at=deadlines.meeting_escalation_at,
        reminder_sent=state.meeting_chase.reminded,
        meeting_escalated=state.meeting_chase.escalated,
        crisis_plan_deadline=deadlines.crisis_plan,
        assessment_deadline=deadlines.assessment,
        overdue=bool(late),
        overdue_items=late,
        recommended_participants=state.participants,
        assessment=state.assessment,
        invite=state.invite,
        meeting=state.meeting,
        crisis_plan=CrisisPlanStatus(
            deadline=deadlines.crisis_plan,
            current=state.crisis_plan,
            registered_at=state.crisis_plan_at,
            reminder_sent=state.crisis_chase.reminded,
            escalated=state.crisis_chase.escalated,
            revision_overdue=state.crisis_plan is not None and state.revision_chase.reminded,
            revision_escalated=state.crisis_plan is not None and state.revision_chase.escalated,
        ),
        measures=[
            MeasureStatusView(**entry.measure.model_dump(), status=entry.status)
            for entry in state.measures
        ],
        plan_version=state.plan_version,
        review=(
            None
            if review is None
            else ReviewStatus(
                number=review.number,
                due=review.due,
                interval_weeks=review.interval_weeks,
                task_raised=review.task_raised,
                reminder_sent=review.chase.reminded,
                escalated=review.chase.escalated,
            )
        ),
        reviews_completed=state.reviews_completed,
        objection=(
            RecordedObjection(objection=state.objection, recorded_at=state.objection_at)
            if state.objection is not None and state.objection_at is not None
            else None
        ),
        closure=(
            RecordedClosure(closure=state.closure, closed_at=state.closed_at)
            if state.closure is not None and state.closed_at is not None
            else None
        ),
        open_tasks=list(state.open_tasks),
        done=done(state, referral),
        due=due(state, deadlines),
        failed_deliveries=len(state.failed_deliveries),
        recording_stalled=recording_stalled,
        record_behind=state.record_behind,
        escalated_to_unit=state.escalated_to_unit,
    )


def overdue_items(state: PathwayState) -> list[str]:
    """What is overdue now: a step whose deadline escalated (or review whose due day passed)."""
    if state.phase in FINAL_PHASES:
        return []
    items: list[str] = []
    if state.assessment_chase.escalated and state.assessment is None:
        items.append("assessment")
    if state.meeting_chase.escalated and state.invite is None:
        items.append("meeting invite")
    if state.crisis_chase.escalated and state.crisis_plan is None:
        items.append("crisis plan")
    if state.revision_chase.reminded and state.crisis_plan is not None:
        items.append("crisis plan revision")
    if state.review is not None and state.review.chase.reminded:
        items.append("review")
    return items


def done(state: PathwayState, referral: Referral) -> list[str]:
    """The steps taken so far, in words."""
    items = [f"referral received {day(referral.received_at)}"]
    if state.meeting_chase.reminded:
        items.append("meeting reminder sent")
    if state.meeting_chase.escalated:
        items.append("meeting deadline escalated")
    if state.assessment:
        items.append(f"assessed: {state.assessment.assessment.decision.value}")
    if state.invite:
        timing = "on time" if state.invite.on_time else "late"
        items.append(f"meeting invite sent {day(state.invite.sent_at)} ({timing})")
    if state.meeting:
        items.append(f"meeting held {day(state.meeting.held_at)}")
    if state.crisis_plan and state.crisis_plan_at:
        items.append(
            f"crisis plan version {state.crisis_plan.version} registered {day(state.crisis_plan_at)}"
        )
    items += [
        f"measure {e.measure.id} {e.status.value}" for e in state.measures if e.status in SETTLED
    ]
    if state.reviews_completed:
        items.append(f"{state.reviews_completed} review(s) completed")
    if state.objection and state.objection_at:
        items.append(f"objection to sharing recorded {day(state.objection_at)}")
    if state.closure and state.closed_at:
        items.append(f"pathway closed {day(state.closed_at)} ({state.closure.reason.value})")
    return items


def due(state: PathwayState, deadlines: Deadlines) -> list[DueItem]:
    """What the pathway waits for, soonest first; `by` is the instant it becomes late."""
    if state.phase is Phase.AWAITING_ASSESSMENT:
        return [
            DueItem(what="assess the referral", by=deadlines.meeting_escalation_at),
            DueItem(what="invite to avklaringsmøte", by=deadlines.meeting_escalation_at),
        ]
    if state.phase is Phase.AWAITING_INVITE:
        return [DueItem(what="invite to avklaringsmøte", by=deadlines.meeting_escalation_at)]
    if state.phase is Phase.MEETING_INVITED and state.invite:
        return [DueItem(what="hold avklaringsmøte", by=state.invite.invite.meeting_at)]
    if state.phase is not Phase.FOLLOW_UP:
        return []
    items: list[DueItem] = []
    if state.crisis_plan is None and deadlines.crisis_plan is not None:
        items.append(
            DueItem(what="register kriseplan", by=calendar.end_of_day(deadlines.crisis_plan))
        )
    elif state.crisis_plan is not None:
        items.append(
            DueItem(
                what="revise kriseplan", by=calendar.end_of_day(state.crisis_plan.next_revision)
            )
        )
    if state.review is not None:
        items.append(
            DueItem(
                what=f"hold review {state.review.number}",
                by=calendar.end_of_day(state.review.due),
            )
        )
    return sorted(items, key=lambda item: item.by)


def pathway_summary(referral: Referral) -> str:
    """What a pathway is, in one line of the Temporal UI: the starter's static summary, and the
    first line of every run's current details (a run continued as new has no static summary
    of its own). The referral's id, unit and places: never the patient."""
    return (
        f"ROP pathway for referral {referral.referral_id}: {referral.receiving_unit.value}, "
        f"{referral.health_trust}, kommune {referral.municipality}"
    )


def current_details(
    state: PathwayState,
    deadlines: Deadlines,
    *,
    headline: str | None = None,
    recording_stalled: bool = False,
) -> str:
    """The Temporal UI's current details: what the pathway is (`headline`), its phase, what is
    due next and by which day, what is late, and what keeps failing."""
    upcoming = due(state, deadlines)
    if upcoming:
        first = upcoming[0]
        last_day = day(first.by - _JUST_BEFORE)
        next_step = f"Next: {first.what} by {last_day}."
    else:
        next_step = "Nothing due."
    late = overdue_items(state)
    flagged = f" OVERDUE: {', '.join(late)}." if late else ""
    lines = [f"Phase: {state.phase.value}. {next_step}{flagged}"]
    if headline is not None:
        lines.insert(0, headline)
    if recording_stalled:
        lines.append("STALLED: the record service keeps failing; steps wait (RopStalled).")
    elif state.record_behind:
        lines.append(
            "RECORD BEHIND: steps this pathway applied are missing from the record (a restore?); "
            "`rop reconcile --pathway <id> --repair` writes them (RopStalled)."
        )
    if state.escalated_to_unit:
        lines.append(
            "NO LEADER: an escalation went to the unit itself; name the unit's leader in the "
            "contact directory (RopEscalatedToUnit)."
        )
    if state.failed_deliveries:
        lines.append(
            f"DELIVERY FAILED: {len(state.failed_deliveries)} task(s) reached nobody; "
            "list them with `rop tasks --failed`, re-send with `rop notification resend` (RopDeliveryFailed)."
        )
    return "\n".join(lines)


_JUST_BEFORE = timedelta(microseconds=1)
"""A step due before midnight is due on the day that ends there."""
