"""Norwegian working days (virkedager) and the pathway's deadline instants.

The ROP-forløp counts its deadlines in working days: Monday to Friday, minus the
Norwegian public holidays. Some laws (ferieloven) count Saturday as a working day
too, so the rule is a setting. Every function here is pure and deterministic,
which is what lets the workflow compute its deadlines and timers itself.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

import holidays

OSLO = ZoneInfo("Europe/Oslo")


class WorkingDayRule(StrEnum):
    """Which weekdays count as working days, before public holidays are taken out."""

    MONDAY_TO_FRIDAY = "monday-friday"
    MONDAY_TO_SATURDAY = "monday-saturday"


FIRST_YEAR = 2000
LAST_YEAR = 2100


def _holiday_table() -> frozenset[date]:
    """Every Norwegian public holiday (helligdager and 1 and 17 May), 2000 to 2100.

    Computed once, at import, outside any workflow: the `holidays` package reads
    the locale for its translated names, which workflow code must not do. The dates
    themselves are fixed by law, so a table is the pure, deterministic form.
    `include_sundays=False` is stated explicitly: older `holidays` releases counted
    every Sunday as a holiday.
    """
    return frozenset(
        holidays.country_holidays(
            "NO", years=range(FIRST_YEAR, LAST_YEAR + 1), include_sundays=False
        )
    )


_HOLIDAYS = _holiday_table()


def public_holidays(year: int) -> frozenset[date]:
    """The Norwegian public holidays of one year."""
    return frozenset(day for day in _HOLIDAYS if day.year == year)


def is_working_day(day: date, rule: WorkingDayRule = WorkingDayRule.MONDAY_TO_FRIDAY) -> bool:
    """True if `day` is a working day under `rule`."""
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise ValueError(f"{day} is outside the holiday calendar ({FIRST_YEAR}-{LAST_YEAR})")
    last_weekday = 4 if rule is WorkingDayRule.MONDAY_TO_FRIDAY else 5
    return day.weekday() <= last_weekday and day not in _HOLIDAYS


def add_working_days(
    start: date, count: int, rule: WorkingDayRule = WorkingDayRule.MONDAY_TO_FRIDAY
) -> date:
    """The `count`-th working day after `start` (`start` itself is day zero).

    A negative `count` walks backwards: the `abs(count)`-th working day before `start`.
    """
    step = timedelta(days=1 if count >= 0 else -1)
    remaining = abs(count)
    day = start
    while remaining:
        day += step
        if is_working_day(day, rule):
            remaining -= 1
    return day


def working_days_between(
    start: date, end: date, rule: WorkingDayRule = WorkingDayRule.MONDAY_TO_FRIDAY
) -> int:
    """How many working days lie after `start` up to and including `end` (0 if `end <= start`)."""
    count = 0
    day = start
    while day < end:
        day += timedelta(days=1)
        if is_working_day(day, rule):
            count += 1
    return count


def local_date(instant: datetime) -> date:
    """The calendar date in Norway of a timezone-aware instant."""
    if instant.tzinfo is None:
        raise ValueError("instant must be timezone-aware")
    return instant.astimezone(OSLO).date()


def deadline_after(received_at: datetime, working_days: int, rule: WorkingDayRule) -> date:
    """The last day on which a step due `working_days` after `received_at` is on time.

    The day of receipt (in Norwegian time) is day zero: a referral received on
    Wednesday 1 April 2026 has its 10th working day on Monday 20 April 2026,
    since Maundy Thursday, Good Friday and Easter Monday do not count.
    """
    return add_working_days(local_date(received_at), working_days, rule)


def at_local_time(day: date, clock: time) -> datetime:
    """`clock` on `day` in Norway, as a timezone-aware instant (DST handled by zoneinfo)."""
    return datetime.combine(day, clock, tzinfo=OSLO)


def end_of_day(day: date) -> datetime:
    """The instant `day` ends in Norway: midnight at the start of the next day."""
    return at_local_time(day + timedelta(days=1), time(0, 0))


def reminder_instant(
    deadline: date, working_days_before: int, clock: time, rule: WorkingDayRule
) -> datetime:
    """When to remind: `clock` Norwegian time, `working_days_before` working days before `deadline`."""
    return at_local_time(add_working_days(deadline, -working_days_before, rule), clock)
