"""`rop calendar deadline`: the deadline date on the last line of output."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from rop_domain import calendar

ROP = str(Path(sys.executable).parent / "rop")


def _deadline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ROP, "calendar", "deadline", *args], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--received", "2026-04-01"], "2026-04-20"),
        (["--received", "2026-04-01", "--working-days", "3"], "2026-04-09"),
        (["--received", "2026-12-22", "--count-saturdays"], "2027-01-06"),
    ],
)
def test_deadline_is_the_last_line(args: list[str], expected: str) -> None:
    result = _deadline(*args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == expected


def test_bad_date_is_one_clear_line() -> None:
    result = _deadline("--received", "01.04.2026")
    assert result.returncode == 1
    assert result.stderr.strip().startswith(
        "error: --received '01.04.2026': write a date as YYYY-MM-DD, or an instant with its zone"
    )
    naive = _deadline("--received", "2026-03-31T22:30:00")
    assert naive.returncode == 1
    assert "give the instant's zone" in naive.stderr


@pytest.mark.parametrize(
    "instant",
    ["2026-03-31T22:30:00Z", "2026-03-31T23:59:00+00:00", "2026-04-01T00:30:00+02:00"],
)
def test_a_late_evening_instant_counts_from_its_date_in_norway_as_the_pathway_does(
    instant: str,
) -> None:
    """22:30 UTC on 31 March is 1 April in Oslo (summer time): the deadline the pathway sets
    (`calendar.deadline_after`, from the instant), not the one of the UTC date."""
    received = datetime.fromisoformat(instant)
    pathway = calendar.deadline_after(received, 10, calendar.WorkingDayRule.MONDAY_TO_FRIDAY)
    result = _deadline("--received", instant)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == pathway.isoformat() == "2026-04-20"
    utc_date = _deadline("--received", "2026-03-31")
    assert utc_date.stdout.strip().splitlines()[-1] == "2026-04-17"  # a working day early


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ["--received", "1999-01-01"],
            "error: --received 1999-01-01: the count runs outside the holiday calendar (2000-2100)",
        ),
        (
            ["--received", "2100-12-20"],
            "error: --received 2100-12-20: the count runs outside the holiday calendar (2000-2100)",
        ),
        (
            ["--received", "2026-04-01", "--working-days", "0"],
            "error: --working-days must be from 1 to 260",
        ),
        (
            ["--received", "2026-04-01", "--working-days", "100000"],
            "error: --working-days must be from 1 to 260",
        ),
    ],
)
def test_dates_and_counts_out_of_range_are_one_clear_line(args: list[str], error: str) -> None:
    result = _deadline(*args)
    assert (result.returncode, result.stderr.strip(), result.stdout) == (1, error, "")
