"""The task table decides: who gets each kind of task, what its template says and when it is
due, from the pathway's state and what the raise site knows (`rop_domain.tasks`). No servers.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from rop_domain import calendar
from rop_domain.models import Participant, ParticipantRole, RecordedInvite
from rop_domain.plan import MeasureStatus
from rop_domain.state import MeasureEntry, PathwayState
from rop_domain.tasks import TASKS, About, Addressee, TaskKind, addressees, due_at, parameters
from tests import factories

RECEIVED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MEETING_AT = datetime(2026, 3, 12, 10, 0, tzinfo=UTC)
DEADLINE = date(2026, 3, 16)
LEADER = "leder-tsb@example.invalid"
GP_OFFICE = Participant(
    role=ParticipantRole.FASTLEGE,
    name="Legekontoret",
    address="fastlege@example.invalid",
    person=factories.GP,
)
REFERRAL = factories.parse_referral_for_test(factories.referral_data(RECEIVED))
FOLLOWED_UP = PathwayState(
    invite=RecordedInvite(
        invite=factories.invite(RECEIVED).model_copy(
            update={"invited_by": "9000444", "participants": [GP_OFFICE]}
        ),
        sent_at=RECEIVED,
        on_time=True,
        working_days_used=1,
    ),
    meeting=factories.meeting_held(MEETING_AT),
    measures=[
        MeasureEntry(measure=m, status=MeasureStatus.COMPLETED if m.id == "fact" else "planned")
        for m in factories.measures()
    ],
)
"""A pathway after its meeting: invited by a clinician other than the receiving one, with
its plan's FACT measure completed."""
BOLIG = factories.measures()[3]

WHO = {
    TaskKind.ASSESS_REFERRAL: factories.CLINICIAN,
    TaskKind.ASSESSMENT_REMINDER: factories.CLINICIAN,
    TaskKind.ASSESSMENT_ESCALATION: LEADER,
    TaskKind.INVITE_TO_MEETING: factories.CLINICIAN,
    TaskKind.REACH_PARTY: "9000444",
    TaskKind.INVITE_TO_MEETING_REMINDER: factories.CLINICIAN,
    TaskKind.MEETING_DEADLINE_ESCALATION: LEADER,
    TaskKind.MEETING_INVITATION: "fastlege@example.invalid",
    TaskKind.REFERRAL_NOT_ACCEPTED: factories.GP,
    TaskKind.MAKE_CRISIS_PLAN: factories.CRISIS_PLAN_RESPONSIBLE,
    TaskKind.CRISIS_PLAN_REMINDER: factories.CRISIS_PLAN_RESPONSIBLE,
    TaskKind.CRISIS_PLAN_ESCALATION: LEADER,
    TaskKind.REVISE_CRISIS_PLAN: factories.CRISIS_PLAN_RESPONSIBLE,
    TaskKind.CRISIS_PLAN_REVISION_REMINDER: factories.CRISIS_PLAN_RESPONSIBLE,
    TaskKind.CRISIS_PLAN_REVISION_ESCALATION: LEADER,
    TaskKind.START_MEASURE: "bergen-bolig",
    TaskKind.HOLD_REVIEW: factories.KOORDINATOR,
    TaskKind.REVIEW_REMINDER: factories.KOORDINATOR,
    TaskKind.REVIEW_ESCALATION: LEADER,
    TaskKind.TASK_UNDELIVERED: factories.CLINICIAN,
}
"""Who gets each kind (but the closure's notice, below), as the local pathway says."""

ABOUT = About(
    deadline=DEADLINE,
    meeting_at=MEETING_AT,
    place="DPS, møterom 2",
    party=GP_OFFICE,
    version=2,
    measure=BOLIG,
    review=3,
    reason="completed",
    leader=LEADER,
    undelivered="rop-T-1/00007-meeting-invitation",
)
"""Everything a raise site could know: each kind takes what it needs."""


@pytest.mark.parametrize("kind", list(WHO), ids=[k.value for k in WHO])
def test_each_kind_goes_to_whom_the_table_says(kind: TaskKind) -> None:
    (to,) = addressees(kind, REFERRAL, FOLLOWED_UP, ABOUT)
    assert to.address == WHO[kind]


def test_an_invitation_and_a_measure_carry_their_party_for_need_of_service() -> None:
    (invited,) = addressees(TaskKind.MEETING_INVITATION, REFERRAL, FOLLOWED_UP, ABOUT)
    assert invited == Addressee("fastlege@example.invalid", unit="fastlege", person=factories.GP)
    (provider,) = addressees(TaskKind.START_MEASURE, REFERRAL, FOLLOWED_UP, ABOUT)
    assert provider == Addressee("bergen-bolig", unit="kommune")


def test_the_closure_tells_each_party_once_and_not_the_settled_measures() -> None:
    told = addressees(TaskKind.PATHWAY_CLOSED, REFERRAL, FOLLOWED_UP, About(reason="completed"))
    assert told == [
        Addressee(factories.CLINICIAN, unit="TSB"),  # also responsible for two measures
        Addressee("fastlege@example.invalid", unit="fastlege"),
        Addressee("bergen-bolig", unit="kommune"),  # not fact-bergen: its measure completed
    ]


def test_each_template_gets_its_parameters_and_no_more() -> None:
    templates = Path(__file__).resolve().parent.parent / "activities" / "templates" / "nb"
    for kind in TaskKind:
        message = parameters(kind, "R-1", ABOUT)
        used = set(re.findall(r"\{\{\s*(\w+)", (templates / f"{kind.value}.txt").read_text()))
        assert used <= set(message), f"{kind.value}: the template uses more than it is given"
        assert message["referral_id"] == "R-1"
    assert parameters(TaskKind.START_MEASURE, "R-1", ABOUT) == {
        "referral_id": "R-1",
        "measure_id": "bolig",
        "measure_kind": BOLIG.kind.value,
    }
    assert parameters(TaskKind.TASK_UNDELIVERED, "R-1", ABOUT) == {
        "referral_id": "R-1",
        "task_number": "7",
        "task_kind": "meeting-invitation",
    }
    assert parameters(TaskKind.REVIEW_REMINDER, "R-1", ABOUT) == {
        "referral_id": "R-1",
        "review": "3",
        "deadline": "2026-03-16",
    }


def test_a_raise_site_that_forgets_a_part_is_told_which() -> None:
    with pytest.raises(ValueError, match="hold-review task needs its review"):
        parameters(TaskKind.HOLD_REVIEW, "R-1", About(deadline=DEADLINE))
    with pytest.raises(ValueError, match="needs its unit leader"):
        addressees(TaskKind.REVIEW_ESCALATION, REFERRAL, FOLLOWED_UP, About(deadline=DEADLINE))
    with pytest.raises(ValueError, match="needs its meeting"):
        addressees(TaskKind.HOLD_REVIEW, REFERRAL, PathwayState(), ABOUT)


def test_chases_are_due_when_their_deadline_day_ends_and_invitations_at_the_meeting() -> None:
    end_of_deadline_day = calendar.end_of_day(DEADLINE)
    undated = {
        TaskKind.REACH_PARTY,
        TaskKind.REFERRAL_NOT_ACCEPTED,
        TaskKind.START_MEASURE,
        TaskKind.PATHWAY_CLOSED,
        TaskKind.TASK_UNDELIVERED,
    }
    for kind in TaskKind:
        expected = (
            None
            if kind in undated
            else MEETING_AT
            if kind is TaskKind.MEETING_INVITATION
            else end_of_deadline_day
        )
        assert due_at(kind, ABOUT) == expected, kind.value
    assert all(TASKS[kind].done_by is None for kind in undated - {TaskKind.START_MEASURE})


def test_every_kind_has_a_raise_site_in_the_workflow() -> None:
    workflows = Path(__file__).resolve().parent.parent / "workflows"
    source = "\n".join(path.read_text() for path in workflows.glob("*.py"))
    missing = [kind.value for kind in TaskKind if f"TaskKind.{kind.name}" not in source]
    assert missing == [], "task kinds the workflow never raises"
