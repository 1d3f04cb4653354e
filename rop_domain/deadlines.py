"""The pathway's deadline rules, in one place: their defaults, and the functions that apply them.

The local pathway: invite to the avklaringsmøte within 10 working days of receipt; the
crisis plan within 10 working days of the meeting; a reminder 2 working days before a
deadline at 08:00 Norwegian time; an escalation when the deadline's day has ended. The
starter (for the search attribute a new pathway starts with) and the workflow (for its
timers) call the same functions, so they can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING

from rop_domain import calendar

if TYPE_CHECKING:
    from rop_domain.models import PathwaySettings

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
