"""Realistic inputs for tests: a referral, an assessment, an invite, independent check digits."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from rop_domain.models import (
    Assessment,
    AssessmentDecision,
    MeetingHeld,
    MeetingInvite,
    Participant,
    ParticipantRole,
    Referral,
    ValidationPolicy,
    parse_referral,
)

CLINICIAN = "9000123"
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
        "referral_id": f"T-{uuid.uuid4().hex[:12]}",
        "received_at": received_at.isoformat(),
        "source": "fastlege",
        "referrer": GP,
        "receiving_unit": "TSB",
        "health_trust": "helse-bergen",
        "municipality": "4601",
        "responsible_clinician": CLINICIAN,
        "general_practitioner": GP,
        "patient": {"reference": "pseudo-123", "national_id": national_id("150586951")},
    }
    data.update(overrides)
    return data


def assessment(decision: AssessmentDecision = AssessmentDecision.IN_TARGET_GROUP) -> Assessment:
    return Assessment(
        assessor=CLINICIAN, decision=decision, reason="Samtidig rus og psykisk lidelse"
    )


def invite(now: datetime, participants: list[Participant] | None = None) -> MeetingInvite:
    return MeetingInvite(
        invited_by=CLINICIAN,
        meeting_at=now + timedelta(days=5),
        location="DPS, møterom 2",
        participants=participants
        or [
            Participant(role=ParticipantRole.TSB, name="TSB Bergen", address="tsb@example.invalid")
        ],
    )


def meeting_held(at: datetime) -> MeetingHeld:
    return MeetingHeld(recorded_by=CLINICIAN, held_at=at, attendees=["PHV", "TSB", "fastlege"])


def parse_referral_for_test(data: dict[str, Any]) -> Referral:
    return parse_referral(data, ValidationPolicy(allow_synthetic_ids=True))
