"""The public status, done, due and overdue, from a state, without a server."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta

from rop_domain import calendar, deadlines
from rop_domain.deadlines import PathwaySettings
from rop_domain.followup import Closure, ClosureReason
from rop_domain.models import Phase, RecordedAssessment, Referral
from rop_domain.plan import MeasureStatus
from rop_domain.state import Chase, KeptAnswer, MeasureEntry, PathwayState, ReviewCycle
from rop_domain.tasks import TaskKind
from rop_domain.view import OpenTask, PathwayStatus
from tests import factories
from workflows import status_view

RECEIVED = datetime(2026, 11, 23, 9, 15, tzinfo=UTC)  # a Monday
HELD = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def _referral() -> Referral:
    return factories.parse_referral_for_test(factories.referral_data(RECEIVED))


def _deadlines(state: PathwayState) -> status_view.Deadlines:
    settings = PathwaySettings()
    meeting = deadlines.meeting_deadline(RECEIVED, settings)
    return status_view.Deadlines(
        meeting=meeting.day,
        meeting_reminder_at=meeting.reminder_at,
        meeting_escalation_at=meeting.escalation_at,
        crisis_plan=(
            deadlines.crisis_plan_deadline(state.meeting.held_at, settings)
            if state.meeting
            else None
        ),
    )


def _status(state: PathwayState) -> PathwayStatus:
    return status_view.public_status(
        state, _referral(), _deadlines(state), workflow_id="rop-T-1", recording_stalled=False
    )


def _in_follow_up() -> PathwayState:
    state = PathwayState(
        phase=Phase.FOLLOW_UP,
        sequence=41,
        runs=3,
        assessment=RecordedAssessment(assessment=factories.assessment(), assessed_at=RECEIVED),
        meeting=factories.meeting_held(HELD),
        measures=[
            MeasureEntry(measure=m, status=s)
            for m, s in zip(
                factories.measures(),
                [
                    MeasureStatus.COMPLETED,
                    MeasureStatus.ACTIVE,
                    MeasureStatus.READY,
                    MeasureStatus.PLANNED,
                ],
                strict=True,
            )
        ],
        plan_version=1,
        review=ReviewCycle(
            number=2, interval_weeks=12, due=date(2027, 2, 24), chase=Chase(reminded=True)
        ),
        reviews_completed=1,
        failed_deliveries=["rop-T-1/00007-start-measure"],
        open_tasks=[
            OpenTask(kind=TaskKind.MAKE_CRISIS_PLAN, recipient=factories.CRISIS_PLAN_RESPONSIBLE)
        ],
        answers=[
            KeptAnswer(update_id="u1", update_name="assess", at=RECEIVED, answer="{}"),
        ],
    )
    return state


def test_a_new_pathway_waits_for_its_assessment_and_invite_by_the_deadline() -> None:
    status = _status(PathwayState())
    deadline = date(2026, 12, 7)  # 10 working days after Monday 23 November
    assert status.meeting_deadline == deadline
    assert status.escalation_at == calendar.end_of_day(deadline)
    assert status.reminder_at == calendar.at_local_time(date(2026, 12, 3), time(8, 0))
    assert [item.what for item in status.due] == ["assess the referral", "invite to avklaringsmøte"]
    assert status.done == ["referral received 23.11.2026"]
    assert (status.overdue, status.crisis_plan.deadline, status.measures) == (False, None, [])


def test_in_follow_up_the_status_shows_each_part_and_what_is_late() -> None:
    state = _in_follow_up()
    status = _status(state)
    assert [(m.id, m.status) for m in status.measures] == [
        ("poliklinikk", MeasureStatus.COMPLETED),
        ("fact", MeasureStatus.ACTIVE),
        ("innleggelse", MeasureStatus.READY),
        ("bolig", MeasureStatus.PLANNED),
    ]
    assert status.overdue_items == ["review"]
    assert status.overdue
    assert status.review is not None
    assert (status.review.number, status.review.reminder_sent) == (2, True)
    assert status.crisis_plan.deadline == date(2026, 12, 16)  # 10 working days after the meeting
    assert [item.what for item in status.due] == ["register kriseplan", "hold review 2"]
    assert "measure poliklinikk completed" in status.done
    assert status.failed_deliveries == 1
    assert [t.kind for t in status.open_tasks] == [TaskKind.MAKE_CRISIS_PLAN]
    details = status_view.current_details(state, _deadlines(state))
    assert details == (
        "Phase: follow-up. Next: register kriseplan by 16.12.2026. OVERDUE: review.\n"
        "DELIVERY FAILED: 1 task(s) reached nobody; list them with `rop tasks --failed`, "
        "re-send with `rop notification resend` (RopDeliveryFailed)."
    )
    headed = status_view.current_details(
        state, _deadlines(state), headline="ROP pathway R-1", recording_stalled=True
    )
    assert headed.splitlines()[0] == "ROP pathway R-1"
    assert headed.splitlines()[2].startswith("STALLED: the record service keeps failing")


def test_the_internal_state_never_shows_in_the_status() -> None:
    public = json.loads(_status(_in_follow_up()).model_dump_json())
    internal = {"state", "sequence", "runs", "answers", "chase", "crisis_revision_raised_for"}
    keys: set[str] = set()

    def collect(value: object) -> None:
        if isinstance(value, dict):
            keys.update(value)
            for item in value.values():
                collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    collect(public)
    assert keys & internal == set()
    assert "rop-T-1/00007-start-measure" not in json.dumps(public)


def test_a_closed_pathway_is_overdue_with_nothing() -> None:
    state = _in_follow_up()
    state.phase = Phase.CLOSED
    state.closure = Closure(closed_by=factories.CLINICIAN, reason=ClosureReason.COMPLETED)
    state.closed_at = HELD + timedelta(days=200)
    status = _status(state)
    assert (status.overdue, status.overdue_items, status.due) == (False, [], [])
    assert status.closure is not None
    assert status.done[-1] == "pathway closed 20.06.2027 (completed)"
