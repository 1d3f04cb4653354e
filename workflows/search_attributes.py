"""Typed search attributes an operator filters on in the Temporal UI.

Search attributes are stored unencrypted: nothing personal may ever go here.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from temporalio.common import SearchAttributeKey

from rop_domain import calendar
from rop_domain.models import Referral

PHASE = SearchAttributeKey.for_keyword("RopPhase")
HEALTH_TRUST = SearchAttributeKey.for_keyword("RopHealthTrust")
MUNICIPALITY = SearchAttributeKey.for_keyword("RopMunicipality")
RECEIVING_UNIT = SearchAttributeKey.for_keyword("RopReceivingUnit")
MEETING_DEADLINE = SearchAttributeKey.for_datetime("RopMeetingDeadline")
"""The meeting deadline's day, as `day_value` stores a day."""
MEETING_INVITED_ON_TIME = SearchAttributeKey.for_bool("RopMeetingInvitedOnTime")
HAS_CRISIS_PLAN = SearchAttributeKey.for_bool("RopHasCrisisPlan")
NEXT_REVIEW_DUE = SearchAttributeKey.for_datetime("RopNextReviewDue")
"""The next review's due day, as `day_value` stores a day."""
OVERDUE = SearchAttributeKey.for_bool("RopOverdue")
DELIVERY_FAILED = SearchAttributeKey.for_int("RopDeliveryFailed")
"""How many tasks no channel could deliver. An Int, not a Bool: the SQL visibility store
of the dev server and of many clusters has three Bool slots, and the others are taken."""

STALLED = SearchAttributeKey.for_keyword("RopStalled")
"""Set to `recording` while the record service has kept failing for the pathway's steps
(for longer than a minute); unset once a step is recorded again."""
ESCALATED_TO_UNIT = SearchAttributeKey.for_int("RopEscalatedToUnit")
"""How many escalations went to the unit itself, as the directory names no leader for it (an
Int: the SQL visibility store has three Bool slots, all taken); unset while none did."""
RECORDING_STALLED = "recording"
RECORD_BEHIND = "record-behind"
"""RopStalled's value while the last reconciliation found the record behind the workflow."""

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
    ESCALATED_TO_UNIT,
)
"""Every key the worker writes; the dev server and test servers register these."""


DAY_AT = time(12, 0, tzinfo=UTC)
"""Where in its day a day is stored: noon UTC reads as the same day in UTC, in Oslo (13:00
or 14:00) and in any zone within eleven hours of UTC, so the Temporal UI shows the right
day whichever zone it is set to, and a filter `>= "2026-12-07" AND < "2026-12-08"` finds
it. Pathways started before this rule stored 00:00 Oslo time (23:00 UTC the day
before), and a pathway keeps the rule it started with: `day_of` reads both."""


def day_value(day: date, *, at_noon: bool = True) -> datetime:
    """The Datetime a day-valued search attribute holds."""
    return datetime.combine(day, DAY_AT) if at_noon else calendar.at_local_time(day, time(0, 0))


def stored_at_noon(value: datetime) -> bool:
    """A day stored by `day_value` at noon, not by the rule before it."""
    return value.astimezone(UTC).timetz() == DAY_AT


def day_of(value: datetime) -> date:
    """The day a day-valued search attribute means, stored either way: its date in Norway."""
    return calendar.local_date(value)


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
    record_behind: bool = False,
    escalated_to_unit: int = 0,
    days_at_noon: bool = True,
) -> list[tuple[SearchAttributeKey[Any], Any]]:
    """The search attribute values of a pathway: what the workflow keeps current, and what
    the starter sets at start so a new pathway is filterable before its first task runs."""
    values: list[tuple[SearchAttributeKey[Any], Any]] = [
        (PHASE, phase),
        (HEALTH_TRUST, referral.health_trust),
        (MUNICIPALITY, referral.municipality),
        (RECEIVING_UNIT, referral.receiving_unit.value),
        (MEETING_DEADLINE, day_value(meeting_deadline, at_noon=days_at_noon)),
        (HAS_CRISIS_PLAN, has_crisis_plan),
        (OVERDUE, overdue),
        (DELIVERY_FAILED, delivery_failed),
    ]
    if invited_on_time is not None:
        values.append((MEETING_INVITED_ON_TIME, invited_on_time))
    if next_review_due is not None:
        values.append((NEXT_REVIEW_DUE, day_value(next_review_due, at_noon=days_at_noon)))
    if recording_stalled:
        values.append((STALLED, RECORDING_STALLED))
    elif record_behind:
        values.append((STALLED, RECORD_BEHIND))
    if escalated_to_unit:
        values.append((ESCALATED_TO_UNIT, escalated_to_unit))
    return values
