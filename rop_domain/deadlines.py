"""The pathway's deadline rules, in one place: their defaults, the per-pathway policy that
parameterises them (`PathwaySettings`), and the functions that apply them.

The local pathway: invite to the avklaringsmøte within 10 working days of receipt; the
crisis plan within 10 working days of the meeting; a reminder 2 working days before a
deadline at 08:00 Norwegian time; an escalation when the deadline's day has ended. The
starter (for the search attribute a new pathway starts with) and the workflow (for its
timers) call the same functions, so they can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum

from pydantic import Field

from rop_domain import calendar
from rop_domain.calendar import WorkingDayRule
from rop_domain.models import StrictModel

ASSESSMENT_WORKING_DAYS = 10
"""Working days from receipt (day zero) to the last day to assess the referral (the specialist
service's assessment deadline: pasient- og brukerrettighetsloven § 2-2)."""
MEETING_WORKING_DAYS = 10
"""Working days from receipt (day zero) to the last day to invite to the avklaringsmøte."""
CRISIS_PLAN_WORKING_DAYS = 10
"""Working days from the meeting to the last day to register the crisis plan."""
REMINDER_WORKING_DAYS_BEFORE = 2
REMINDER_HOUR = 8
"""A reminder goes out at 08:00 Norwegian time, two working days before the deadline."""
MEETING_AHEAD_WITHOUT_REASON = timedelta(days=180)
"""A meeting further ahead than this needs a stated reason: likely a mistyped date."""
REVIEW_ESCALATION_WORKING_DAYS = 5
"""Working days after a missed review before it escalates to the unit's leader."""


class ObjectionMode(StrEnum):
    """What a patient's objection to sharing does to notifications for other organisations."""

    REDACT = "redact"  # sent, with no patient-related content
    SUPPRESS = "suppress"  # not sent; the record says it was withheld


class PathwaySettings(StrictModel):
    """A pathway's policy: the parameters of the rules below and of how the pathway behaves,
    fixed for a pathway when it starts so a config change cannot move its deadlines. Built
    from settings in one place (`rop_runtime.settings.RopSettings.pathway_settings`, with a
    health trust's own from `ROP_TRUST_POLICIES`)."""

    meeting_working_days: int = Field(default=MEETING_WORKING_DAYS, ge=1, le=60)
    assessment_working_days: int = Field(default=ASSESSMENT_WORKING_DAYS, ge=1, le=60)
    working_day_rule: WorkingDayRule = WorkingDayRule.MONDAY_TO_FRIDAY
    reminder_working_days_before: int = Field(default=REMINDER_WORKING_DAYS_BEFORE, ge=0, le=20)
    reminder_hour: int = Field(default=REMINDER_HOUR, ge=0, le=23)
    crisis_plan_working_days: int = Field(default=CRISIS_PLAN_WORKING_DAYS, ge=1, le=60)
    review_escalation_working_days: int = Field(default=REVIEW_ESCALATION_WORKING_DAYS, ge=1, le=30)
    objection_mode: ObjectionMode = ObjectionMode.REDACT
    recording_stalled_seconds: int = Field(
        default=60,
        ge=1,
        le=3600,
        description="How long the record service may keep failing before the pathway says so",
    )
    continue_as_new_after_events: int = Field(
        default=1000,
        ge=0,
        le=10_000,
        description=(
            "A run continues as new after a review once its history has this many events "
            "(0: after every review), or whenever the server suggests it"
        ),
    )


@dataclass(frozen=True)
class MeetingDeadline:
    """The meeting invite's deadline and the two instants that chase it."""

    day: date
    """The last day on which the invite is on time."""
    reminder_at: datetime
    escalation_at: datetime
    """When the deadline's day has ended in Norway: the invite is late from then on."""


def meeting_deadline(received_at: datetime, settings: PathwaySettings) -> MeetingDeadline:
    """The meeting deadline of a referral received at `received_at`, under `settings`."""
    day = calendar.deadline_after(
        received_at, settings.meeting_working_days, settings.working_day_rule
    )
    return MeetingDeadline(
        day=day, reminder_at=reminder_at(day, settings), escalation_at=calendar.end_of_day(day)
    )


def assessment_deadline(received_at: datetime, settings: PathwaySettings) -> MeetingDeadline:
    """The assessment deadline of a referral received at `received_at`, and its chase."""
    day = calendar.deadline_after(
        received_at, settings.assessment_working_days, settings.working_day_rule
    )
    return MeetingDeadline(
        day=day, reminder_at=reminder_at(day, settings), escalation_at=calendar.end_of_day(day)
    )


def reminder_at(deadline: date, settings: PathwaySettings) -> datetime:
    """When a step due on `deadline` is reminded of."""
    return calendar.reminder_instant(
        deadline,
        settings.reminder_working_days_before,
        time(settings.reminder_hour),
        settings.working_day_rule,
    )


def crisis_plan_deadline(meeting_held_at: datetime, settings: PathwaySettings) -> date:
    """The last day to register the first crisis plan after the meeting."""
    return calendar.add_working_days(
        calendar.local_date(meeting_held_at),
        settings.crisis_plan_working_days,
        settings.working_day_rule,
    )
