"""Working days (virkedager) and the deadline instants the workflow's timers use."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from rop_domain.calendar import (
    OSLO,
    WorkingDayRule,
    add_working_days,
    deadline_after,
    end_of_day,
    is_working_day,
    public_holidays,
    working_days_between,
)
from rop_domain.deadlines import PathwaySettings, meeting_deadline, reminder_at

SATURDAYS = WorkingDayRule.MONDAY_TO_SATURDAY


def test_public_holidays_are_the_twelve_of_the_law_and_no_ordinary_sundays() -> None:
    days = public_holidays(2026)
    assert sorted(days) == [
        date(2026, 1, 1),
        date(2026, 4, 2),  # Maundy Thursday
        date(2026, 4, 3),  # Good Friday
        date(2026, 4, 5),  # Easter Sunday
        date(2026, 4, 6),  # Easter Monday
        date(2026, 5, 1),
        date(2026, 5, 14),  # Ascension Day
        date(2026, 5, 17),
        date(2026, 5, 24),  # Whit Sunday
        date(2026, 5, 25),  # Whit Monday
        date(2026, 12, 25),
        date(2026, 12, 26),
    ]


def test_easter_week_does_not_count() -> None:
    # Wednesday 1 April 2026: Maundy Thursday, Good Friday and Easter Monday are skipped.
    assert add_working_days(date(2026, 4, 1), 10) == date(2026, 4, 20)


def test_ascension_day_and_whit_monday_do_not_count() -> None:
    # 2027: Ascension Thursday 6 May, 17 May and Whit Monday are the same Monday.
    assert not is_working_day(date(2027, 5, 6))
    assert not is_working_day(date(2027, 5, 17))
    assert add_working_days(date(2027, 5, 5), 1) == date(2027, 5, 7)
    assert add_working_days(date(2027, 5, 14), 1) == date(2027, 5, 18)


def test_seventeenth_of_may_on_a_weekday_does_not_count() -> None:
    assert not is_working_day(date(2028, 5, 17))  # a Wednesday
    assert add_working_days(date(2028, 5, 16), 1) == date(2028, 5, 18)


def test_christmas_to_new_year_counts_christmas_eve_and_new_years_eve() -> None:
    assert is_working_day(date(2026, 12, 24))
    assert is_working_day(date(2026, 12, 31))
    assert add_working_days(date(2026, 12, 22), 10) == date(2027, 1, 7)


def test_year_boundary() -> None:
    # Wednesday 30 Dec 2026: New Year's Eve counts, New Year's Day and the weekend do not.
    assert add_working_days(date(2026, 12, 30), 2) == date(2027, 1, 4)
    assert working_days_between(date(2026, 12, 30), date(2027, 1, 4)) == 2


def test_saturday_switch_counts_saturdays_but_never_sundays_or_holidays() -> None:
    # 26 Dec 2026 is a Saturday and a holiday; 2 Jan 2027 is an ordinary Saturday.
    assert add_working_days(date(2026, 12, 22), 10, SATURDAYS) == date(2027, 1, 6)
    assert is_working_day(date(2027, 1, 2), SATURDAYS)
    assert not is_working_day(date(2027, 1, 2))
    assert not is_working_day(date(2027, 1, 3), SATURDAYS)


def test_referral_received_on_a_weekend_counts_from_the_next_working_day() -> None:
    assert add_working_days(date(2026, 11, 28), 1) == date(2026, 11, 30)


def test_negative_count_walks_backwards_over_holidays() -> None:
    assert add_working_days(date(2026, 4, 7), -1) == date(2026, 4, 1)
    assert add_working_days(date(2026, 4, 7), -2) == date(2026, 3, 31)


def test_deadline_uses_the_norwegian_date_of_receipt() -> None:
    # 23:30 UTC on 31 March is already 1 April in Oslo (summer time).
    received = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)
    assert meeting_deadline(received, PathwaySettings()).day == date(2026, 4, 20)
    assert deadline_after(received, 3, WorkingDayRule.MONDAY_TO_FRIDAY) == date(2026, 4, 9)


def test_deadline_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        deadline_after(datetime(2026, 4, 1, 9, 0), 10, WorkingDayRule.MONDAY_TO_FRIDAY)  # noqa: DTZ001


def test_end_of_day_is_oslo_midnight_across_daylight_saving_changes() -> None:
    # Summer time starts on 29 March 2026 and ends on 25 October 2026.
    assert end_of_day(date(2026, 3, 28)) == datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
    assert end_of_day(date(2026, 3, 29)) == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)
    assert end_of_day(date(2026, 10, 25)) == datetime(2026, 10, 25, 23, 0, tzinfo=UTC)
    longest_day = end_of_day(date(2026, 10, 25)).astimezone(UTC) - end_of_day(
        date(2026, 10, 24)
    ).astimezone(UTC)
    assert longest_day == timedelta(hours=25)


def test_reminder_is_at_eight_oslo_time_two_working_days_before() -> None:
    summer = reminder_at(date(2026, 4, 20), PathwaySettings())
    assert summer == datetime(2026, 4, 16, 6, 0, tzinfo=UTC)
    winter = reminder_at(date(2027, 1, 7), PathwaySettings())
    assert winter == datetime(2027, 1, 5, 7, 0, tzinfo=UTC)
    assert winter.astimezone(OSLO).time() == time(8, 0)


def test_dates_outside_the_holiday_table_are_refused() -> None:
    with pytest.raises(ValueError, match="outside the holiday calendar"):
        is_working_day(date(2101, 1, 3))
