"""Realistic inputs for tests: a referral, an assessment, an invite, independent check digits."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import JsonValue

from rop_domain.commands import EventKind, Notification, PathwayEvent, SummaryChange
from rop_domain.followup import (
    Closure,
    ClosureReason,
    CrisisPlan,
    IndividualPlanStatus,
    Measure,
    MeasureKind,
    MeetingOutcome,
    Provider,
)
from rop_domain.models import (
    Assessment,
    AssessmentDecision,
    MeetingInvite,
    Participant,
    ParticipantRole,
    Referral,
    ValidationPolicy,
    parse_referral,
)
from rop_domain.tasks import TaskKind

CLINICIAN = "9000123"
PATIENT_NAME = "Kari Nordmann"
GP = "9000001"


def check_digits(first_nine: str) -> str:
    """The two mod-11 check digits, written out here independently of the code under test."""
    weights1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
    weights2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
    k1 = (11 - sum(w * int(d) for w, d in zip(weights1, first_nine, strict=True)) % 11) % 11
    k2 = (
        11 - sum(w * int(d) for w, d in zip(weights2, first_nine + str(k1), strict=True)) % 11
    ) % 11
    if 10 in (k1, k2):
        raise ValueError(f"{first_nine} has no valid check digits; pick another individual number")
    return f"{k1}{k2}"


def national_id(first_nine: str) -> str:
    return first_nine + check_digits(first_nine)


def referral_data(received_at: datetime, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        # Never eleven digits in a row, which the logs mask as a possible fødselsnummer.
        "referral_id": f"T-{uuid.uuid4().hex[:6]}x{uuid.uuid4().hex[:6]}",
        "received_at": received_at.isoformat(),
        "source": "fastlege",
        "referrer": GP,
        "receiving_unit": "TSB",
        "health_trust": "helse-bergen",
        "municipality": "4601",
        "responsible_clinician": CLINICIAN,
        "general_practitioner": GP,
        "patient": {
            "reference": "pseudo-123",
            "national_id": national_id("150586951"),
            "name": PATIENT_NAME,
        },
    }
    data.update(overrides)
    return data


def assessment(decision: AssessmentDecision = AssessmentDecision.IN_TARGET_GROUP) -> Assessment:
    return Assessment(
        assessor=CLINICIAN, decision=decision, reason="Samtidig rus og psykisk lidelse"
    )


RECOMMENDED = (
    ParticipantRole.PHV,
    ParticipantRole.TSB,
    ParticipantRole.FASTLEGE,
    ParticipantRole.KOMMUNE,
)
"""The parties the example directory recommends for a referral of helse-bergen and 4601."""


def invite(now: datetime, participants: list[Participant] | None = None) -> MeetingInvite:
    """An invite to TSB (or `participants`), saying why each other recommended party is not
    invited."""
    invited = participants or [
        Participant(role=ParticipantRole.TSB, name="TSB Bergen", address="tsb@example.invalid")
    ]
    roles = {p.role for p in invited}
    return MeetingInvite(
        invited_by=CLINICIAN,
        meeting_at=now + timedelta(days=5),
        location="DPS, møterom 2",
        participants=invited,
        absent_reasons={r: "Deltar på neste møte" for r in RECOMMENDED if r not in roles},
    )


KOORDINATOR = "9000777"
CRISIS_PLAN_RESPONSIBLE = "9000555"


def measures() -> list[Measure]:
    """A plan in the regional plan's shape: two measures in parallel, then a sequence."""
    return [
        Measure(
            id="poliklinikk",
            kind=MeasureKind.OUTPATIENT,
            provider=Provider.TSB,
            responsible=CLINICIAN,
        ),
        Measure(
            id="fact",
            kind=MeasureKind.AMBULANT_ACT_FACT,
            provider=Provider.FACT_TEAM,
            responsible="fact-bergen",
        ),
        Measure(
            id="innleggelse",
            kind=MeasureKind.INPATIENT,
            provider=Provider.TSB,
            responsible=CLINICIAN,
            indication="Behov for avrusning under innleggelse",
            depends_on=["poliklinikk"],
        ),
        Measure(
            id="bolig",
            kind=MeasureKind.MUNICIPAL_HOUSING,
            provider=Provider.KOMMUNE,
            responsible="bergen-bolig",
            depends_on=["innleggelse"],
        ),
    ]


def meeting_held(
    at: datetime, plan: list[Measure] | None = None, review_weeks: int = 12
) -> MeetingOutcome:
    return MeetingOutcome(
        recorded_by=CLINICIAN,
        held_at=at,
        attendees=["PHV", "TSB", "fastlege"],
        koordinator=KOORDINATOR,
        individual_plan=IndividualPlanStatus.OFFERED,
        crisis_plan_responsible=CRISIS_PLAN_RESPONSIBLE,
        review_interval_weeks=review_weeks,
        measures=measures() if plan is None else plan,
    )


def crisis_plan(next_revision: date, version: int = 1) -> CrisisPlan:
    return CrisisPlan(
        registered_by=CRISIS_PLAN_RESPONSIBLE,
        version=version,
        made_with_patient=True,
        relatives_involved=True,
        next_revision=next_revision,
    )


def closure(reason: ClosureReason = ClosureReason.COMPLETED) -> Closure:
    return Closure(closed_by=CLINICIAN, reason=reason, note="test")


def parse_referral_for_test(data: dict[str, Any]) -> Referral:
    """Validated as at the edge, whose clock is the referral's receipt (tests skip time)."""
    received = datetime.fromisoformat(str(data["received_at"]))
    return parse_referral(data, ValidationPolicy(allow_synthetic_ids=True, now=received))


TASK_PARAMS = {
    "referral_id": "R-2026-0042",
    "deadline": "2026-04-20",
    "meeting_at": "2026-04-15T10:00:00+02:00",
    "place": "DPS Bjørgvin, møterom 2",
    "version": "2",
    "measure_id": "bolig",
    "measure_kind": "municipal-housing-follow-up",
    "review": "3",
    "reason": "completed",
    "role": "fastlege",
    "task_number": "7",
    "task_kind": "meeting-invitation",
}
"""Parameters enough for every task template."""


def event(
    workflow_id: str,
    label: str,
    kind: EventKind,
    actor: str,
    details: dict[str, JsonValue],
    *,
    at: datetime | None = None,
    change: SummaryChange | None = None,
) -> PathwayEvent:
    """An event as the workflow gives the record service one (key `<id>/<label>`)."""
    return PathwayEvent(
        idempotency_key=f"{workflow_id}/{label}",
        workflow_id=workflow_id,
        kind=kind,
        actor=actor,
        occurred_at=at or datetime.now(UTC),
        change=change or SummaryChange(),
        details=details,
    )


def task(
    workflow_id: str,
    label: str,
    kind: TaskKind,
    recipient: str,
    *,
    party: str | None = None,
    due: datetime | None = None,
    redacted: bool = True,
    params: dict[str, str] | None = None,
) -> Notification:
    """A task as the workflow raises one, with the generic text (for tests and benchmarks
    that read who a task is for, not what it says): sent redacted, unless `redacted=False`
    (then with the template's `params`)."""
    return Notification(
        idempotency_key=f"{workflow_id}/{label}",
        workflow_id=workflow_id,
        kind=kind,
        recipient=recipient,
        due_at=due,
        party=party,
        redacted=redacted,
        params=params or {},
    )
