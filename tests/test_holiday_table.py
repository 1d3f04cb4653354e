"""The holiday calendar is frozen: every Norwegian public holiday 2020-2040, as pathways count them.

Working days come from the `holidays` package. An upgrade that moved one Norwegian date
would move the deadlines of running pathways when they replay (a timer set for another
day: a non-deterministic change no kept history shows). This list is the law's twelve days
a year (1 January; Maundy Thursday, Good Friday, Easter Sunday and Monday; 1 and 17 May;
Ascension Day; Whit Sunday and Monday; 25 and 26 December), written out, so such an
upgrade fails here first. A real change of law is rolled out for new pathways only, behind
`workflow.patched` (README, "Changing workflow code under running pathways"), with this
list amended in the same commit.
"""

from __future__ import annotations

from datetime import date

import pytest

from rop_domain.calendar import public_holidays

HOLIDAYS = {
    2020: "01-01 04-09 04-10 04-12 04-13 05-01 05-17 05-21 05-31 06-01 12-25 12-26",
    2021: "01-01 04-01 04-02 04-04 04-05 05-01 05-13 05-17 05-23 05-24 12-25 12-26",
    2022: "01-01 04-14 04-15 04-17 04-18 05-01 05-17 05-26 06-05 06-06 12-25 12-26",
    2023: "01-01 04-06 04-07 04-09 04-10 05-01 05-17 05-18 05-28 05-29 12-25 12-26",
    2024: "01-01 03-28 03-29 03-31 04-01 05-01 05-09 05-17 05-19 05-20 12-25 12-26",
    2025: "01-01 04-17 04-18 04-20 04-21 05-01 05-17 05-29 06-08 06-09 12-25 12-26",
    2026: "01-01 04-02 04-03 04-05 04-06 05-01 05-14 05-17 05-24 05-25 12-25 12-26",
    2027: "01-01 03-25 03-26 03-28 03-29 05-01 05-06 05-16 05-17 12-25 12-26",
    2028: "01-01 04-13 04-14 04-16 04-17 05-01 05-17 05-25 06-04 06-05 12-25 12-26",
    2029: "01-01 03-29 03-30 04-01 04-02 05-01 05-10 05-17 05-20 05-21 12-25 12-26",
    2030: "01-01 04-18 04-19 04-21 04-22 05-01 05-17 05-30 06-09 06-10 12-25 12-26",
    2031: "01-01 04-10 04-11 04-13 04-14 05-01 05-17 05-22 06-01 06-02 12-25 12-26",
    2032: "01-01 03-25 03-26 03-28 03-29 05-01 05-06 05-16 05-17 12-25 12-26",
    2033: "01-01 04-14 04-15 04-17 04-18 05-01 05-17 05-26 06-05 06-06 12-25 12-26",
    2034: "01-01 04-06 04-07 04-09 04-10 05-01 05-17 05-18 05-28 05-29 12-25 12-26",
    2035: "01-01 03-22 03-23 03-25 03-26 05-01 05-03 05-13 05-14 05-17 12-25 12-26",
    2036: "01-01 04-10 04-11 04-13 04-14 05-01 05-17 05-22 06-01 06-02 12-25 12-26",
    2037: "01-01 04-02 04-03 04-05 04-06 05-01 05-14 05-17 05-24 05-25 12-25 12-26",
    2038: "01-01 04-22 04-23 04-25 04-26 05-01 05-17 06-03 06-13 06-14 12-25 12-26",
    2039: "01-01 04-07 04-08 04-10 04-11 05-01 05-17 05-19 05-29 05-30 12-25 12-26",
    2040: "01-01 03-29 03-30 04-01 04-02 05-01 05-10 05-17 05-20 05-21 12-25 12-26",
}
"""Month-day of each public holiday, per year."""


@pytest.mark.parametrize("year", sorted(HOLIDAYS))
def test_the_holidays_pathways_count_are_the_pinned_ones(year: int) -> None:
    pinned = {date(year, int(day[:2]), int(day[3:])) for day in HOLIDAYS[year].split()}
    # Twelve days, or eleven where two fall together (Whit Monday on 17 May: 2027, 2032).
    assert len(pinned) == (11 if year in (2027, 2032) else 12)
    assert public_holidays(year) == pinned
