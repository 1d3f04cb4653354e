"""Typed search attributes an operator filters on in the Temporal UI.

Search attributes are stored unencrypted: nothing personal may ever go here.
"""

from __future__ import annotations

from datetime import date, time
from typing import Any

from temporalio.common import SearchAttributeKey

from rop_domain import calendar
from rop_domain.models import Referral

PHASE = SearchAttributeKey.for_keyword("RopPhase")
HEALTH_TRUST = SearchAttributeKey.for_keyword("RopHealthTrust")
MUNICIPALITY = SearchAttributeKey.for_keyword("RopMunicipality")
RECEIVING_UNIT = SearchAttributeKey.for_keyword("RopReceivingUnit")
MEETING_DEADLINE = SearchAttributeKey.for_datetime("RopMeetingDeadline")
MEETING_INVITED_ON_TIME = SearchAttributeKey.for_bool("RopMeetingInvitedOnTime")
HAS_CRISIS_PLAN = SearchAttributeKey.for_bool("RopHasCrisisPlan")
NEXT_REVIEW_DUE = SearchAttributeKey.for_datetime("RopNextReviewDue")
OVERDUE = SearchAttributeKey.for_bool("RopOverdue")
DELIVERY_FAILED = SearchAttributeKey.for_int("RopDeliveryFailed")
"""How many tasks no channel could deliver. An Int, not a Bool: the SQL visibility store
of the dev server and of many clusters has three Bool slots, and the others are taken."""

STALLED = SearchAttributeKey.for_keyword("RopStalled")
"""Set to `recording` while the record service has kept failing for the pathway's steps
(for longer than a minute); unset once a step is recorded again."""
RECORDING_STALLED = "recording"

ALL: tuple[SearchAttributeKey[Any], ...] = (
    PHASE,
    HEALTH_TRUST,
    MUNICIPALITY,
    RECEIVING_UNIT,
    MEETING_DEADLINE,
    MEETING_INVITED_ON_TIME,
    HAS_CRISIS_PLAN,
    NEXT_REVIEW_DUE,
    OVERDUE,
    DELIVERY_FAILED,
    STALLED,
)
"""Every key the worker writes; the dev server and test servers register these."""


def pathway_values(
    *,
    phase: str,
    referral: Referral,
    meeting_deadline: date,
    has_crisis_plan: bool,
    overdue: bool,
    delivery_failed: int = 0,
    invited_on_time: bool | None = None,
    next_review_due: date | None = None,
    recording_stalled: bool = False,
) -> list[tuple[SearchAttributeKey[Any], Any]]:
    """The search attribute values of a pathway: what the workflow keeps current, and what
    the starter sets at start so a new pathway is filterable before its first task runs."""
    values: list[tuple[SearchAttributeKey[Any], Any]] = [
        (PHASE, phase),
        (HEALTH_TRUST, referral.health_trust),
        (MUNICIPALITY, referral.municipality),
        (RECEIVING_UNIT, referral.receiving_unit.value),
        (MEETING_DEADLINE, calendar.at_local_time(meeting_deadline, time(0, 0))),
        (HAS_CRISIS_PLAN, has_crisis_plan),
        (OVERDUE, overdue),
        (DELIVERY_FAILED, delivery_failed),
    ]
    if invited_on_time is not None:
        values.append((MEETING_INVITED_ON_TIME, invited_on_time))
    if next_review_due is not None:
        values.append((NEXT_REVIEW_DUE, calendar.at_local_time(next_review_due, time(0, 0))))
    if recording_stalled:
        values.append((STALLED, RECORDING_STALLED))
    return values
