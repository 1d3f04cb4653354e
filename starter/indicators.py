"""The region's indicators, computed from the records (not from Temporal).

The regional plan measures itself on: patients with a crisis plan, meetings invited
on time, and health trusts with FACT teams. These are computed over the pathways
whose referral was received in the chosen period (Norwegian dates); each is defined in
words in the README ("Indicators") and here in SQL, once.
"""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from enum import StrEnum
from typing import Any, TypeAlias

import asyncpg
from pydantic import Field, model_validator

from activities.database import Connection
from rop_domain.models import Identifier, IsoDate, StrictModel

_ACTIVE = "phase NOT IN ('closed', 'not-in-target-group')"
_IN_TARGET = "assessment_decision = 'in-target-group'"
# At the end of the period (its last day in Oslo, or today): in the pathway, not ended, and
# with a crisis plan registered by then.
_PERIOD_END = "(coalesce($2::date, (now() AT TIME ZONE 'Europe/Oslo')::date) + 1)"
_AT_PERIOD_END = f"""(f.first_crisis_plan_at AT TIME ZONE 'Europe/Oslo' < {_PERIOD_END}
    AND assessment_decision IS DISTINCT FROM 'not-in-target-group'
    AND (closed_at IS NULL OR closed_at AT TIME ZONE 'Europe/Oslo' >= {_PERIOD_END}))"""
# Age at receipt, in the groups the regional plan speaks of ("unge voksne": 18-25).
_AGE_GROUP = """CASE
    WHEN birth_year IS NULL THEN 'unknown'
    WHEN extract(year FROM received_at AT TIME ZONE 'Europe/Oslo') - birth_year < 18
        THEN 'under 18'
    WHEN extract(year FROM received_at AT TIME ZONE 'Europe/Oslo') - birth_year <= 25
        THEN '18-25'
    WHEN extract(year FROM received_at AT TIME ZONE 'Europe/Oslo') - birth_year <= 64
        THEN '26-64'
    ELSE '65 and over' END"""
# Past its meeting deadline (an Oslo date) with no invite, and not ended before it.
_LATE_WITHOUT_INVITE = """(invited_at IS NULL
    AND assessment_decision IS DISTINCT FROM 'not-in-target-group'
    AND meeting_deadline < (now() AT TIME ZONE 'Europe/Oslo')::date
    AND (closed_at IS NULL OR (closed_at AT TIME ZONE 'Europe/Oslo')::date > meeting_deadline))"""
_SCOPE = """(($1::date IS NULL OR (received_at AT TIME ZONE 'Europe/Oslo')::date >= $1)
    AND ($2::date IS NULL OR (received_at AT TIME ZONE 'Europe/Oslo')::date <= $2)
    AND ($3::text IS NULL OR health_trust = $3))"""


class IndicatorQuery(StrictModel):
    """Which pathways count: referrals received from..to, optionally one health trust."""

    from_date: IsoDate | None = None
    to_date: IsoDate | None = None
    health_trust: Identifier | None = None

    @model_validator(mode="after")
    def _ordered(self) -> IndicatorQuery:
        if self.from_date and self.to_date and self.from_date > self.to_date:
            raise ValueError("--from must not lie after --to")
        return self


SMALL_CELL = 5
"""Counts from 1 below this in a breakdown are withheld (`ROP_INDICATOR_SMALL_CELL`)."""

Count: TypeAlias = int | str
"""A count, or `<5` (as the small-cell rule writes it) where it is withheld."""


def withheld(small_cell: int) -> str:
    return f"<{small_cell}"


def suppress(counts: dict[str, int], small_cell: int) -> tuple[dict[str, Count], bool]:
    """A breakdown with its small cells withheld, and whether its total must be withheld too.

    A count from 1 to `small_cell - 1` could single out a patient (one minor in prison in a
    municipality), so it reads `<5`; 0 stays 0. A single withheld cell could be worked out
    from the total and the cells shown, so the next smallest cell is withheld with it; where
    there is no other cell, the total is the withheld count, and is withheld instead.
    """
    if small_cell <= 1:
        return dict(counts), False
    hidden = {key for key, n in counts.items() if 0 < n < small_cell}
    total_withheld = False
    if len(hidden) == 1:
        shown = sorted((n, key) for key, n in counts.items() if n > 0 and key not in hidden)
        if shown:
            hidden.add(shown[0][1])
        else:
            total_withheld = True
    mark = withheld(small_cell)
    return {key: mark if key in hidden else n for key, n in counts.items()}, total_withheld


class FactCoverage(StrictModel):
    """FACT teams of one health trust (example data never counts)."""

    health_trust: str
    fact_teams: int
    patients_with_fact_measure: Count = Field(
        default=0,
        description="Pathways in scope whose current plan has an ACT/FACT measure (`<5`: a small "
        "count, withheld)",
    )


class Indicators(StrictModel):
    """The indicators for one query."""

    query: IndicatorQuery
    active_pathways: Count = Field(
        description="`<5` where a breakdown's only small cell would otherwise be this total"
    )
    with_crisis_plan: int
    crisis_plan_share: float | None = Field(description="Of active pathways")
    with_crisis_plan_at_period_end: int = Field(
        description="Pathways in scope with a crisis plan on the period's last day (or today), "
        "not ended by then: the regional plan's count at the end of a period"
    )
    ever_with_crisis_plan: int = Field(
        description="Pathways in scope, closed ones too, that have had a crisis plan"
    )
    in_target_group: int = Field(description="Pathways in scope assessed as in the target group")
    ever_crisis_plan_share: float | None = Field(description="Of those in the target group")
    crisis_plans_made_with_patient: int = Field(
        description="Of the pathways' current crisis plans, those made with the patient"
    )
    crisis_plans_with_relatives: int
    made_with_patient_share: float | None
    with_relatives_share: float | None
    invited: int
    invited_on_time: int
    late_without_invite: int = Field(
        description="Past their meeting deadline with no invite: late, though not yet invited"
    )
    invited_on_time_share: float | None = Field(
        description="On time, of those invited and those past their deadline without an invite"
    )
    median_working_days_to_invite: float | None
    meetings_compared: int = Field(
        description="Meetings held whose recommended parties are known (recorded since issue 13)"
    )
    meetings_with_all_recommended: int = Field(
        description="Of those, the meetings every recommended party took part in"
    )
    all_recommended_share: float | None
    overdue_review: int
    overdue_crisis_plan: int
    overdue_review_or_crisis_plan: int
    active_by_municipality: dict[str, Count]
    active_by_health_trust: dict[str, Count]
    active_by_age_group: dict[str, Count] = Field(
        description="Age at receipt: under 18, 18-25 (unge voksne), 26-64, 65 and over, unknown"
    )
    active_by_residence: dict[str, Count] = Field(
        description="Where the patient lived when referred (home, institution, prison...)"
    )
    by_pathway_reason: dict[str, Count] = Field(
        description="Pathways in scope by why a ROP pathway (the local start condition)"
    )
    fact_coverage: list[FactCoverage]
    health_trusts_with_fact: int
    municipalities_with_active_pathways: int
    municipalities_covered_by_fact: int = Field(
        description="Of the municipalities with active pathways, those a FACT team covers"
    )
    trust_municipalities_with_active_pathways: int = Field(
        description="Pairs of health trust and municipality with active pathways"
    )
    trust_municipalities_with_arena: int = Field(
        description="Of those, the pairs with an established arena for samhandling"
    )
    arena_share: float | None


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None


# One statement per kind of figure; `_SCOPE`'s $1..$3 bind the query.
_TOTALS = f"""SELECT
      count(*) FILTER (WHERE {_ACTIVE}) AS active,
      count(*) FILTER (WHERE {_ACTIVE} AND crisis_plan_version IS NOT NULL) AS crisis,
      count(*) FILTER (WHERE crisis_plan_version IS NOT NULL) AS crisis_ever,
      count(*) FILTER (WHERE {_IN_TARGET}) AS in_target,
      count(*) FILTER (WHERE invited_at IS NOT NULL) AS invited,
      count(*) FILTER (WHERE invited_on_time) AS on_time,
      count(*) FILTER (WHERE {_LATE_WITHOUT_INVITE}) AS late_without_invite,
      percentile_cont(0.5) WITHIN GROUP (ORDER BY invite_working_days)
          FILTER (WHERE invited_at IS NOT NULL) AS median_days,
      count(*) FILTER (WHERE {_ACTIVE} AND review_overdue) AS review_overdue,
      count(*) FILTER (WHERE {_ACTIVE} AND crisis_plan_overdue) AS crisis_overdue,
      count(*) FILTER (WHERE {_ACTIVE} AND (review_overdue OR crisis_plan_overdue))
          AS either_overdue
    FROM pathways WHERE {_SCOPE}"""  # noqa: S608 - fixed fragments, values bound

# Each pathway's current crisis plan and plan of measures (migration 0009).
_PLANS = f"""SELECT count(*) FILTER (WHERE f.made_with_patient) AS with_patient,
           count(*) FILTER (WHERE {_AT_PERIOD_END}) AS crisis_at_end,
           count(*) FILTER (WHERE f.relatives_involved) AS with_relatives,
           count(*) FILTER (WHERE f.has_crisis_plan) AS plans,
           count(*) FILTER (WHERE f.all_recommended_attended IS NOT NULL) AS meetings,
           count(*) FILTER (WHERE f.all_recommended_attended) AS all_attended
    FROM pathways p JOIN rop_pathway_facts() f USING (workflow_id)
    WHERE {_SCOPE}"""  # noqa: S608

_FACT_PATIENTS = f"""SELECT p.health_trust AS key, count(*) AS n
    FROM pathways p JOIN rop_pathway_facts() f USING (workflow_id)
    WHERE {_ACTIVE} AND {_SCOPE} AND f.has_fact_measure
    GROUP BY p.health_trust"""  # noqa: S608

_COVERAGE = f"""SELECT trust, count(f.id) AS teams FROM (
        SELECT health_trust AS trust FROM fact_teams WHERE NOT example_data
        UNION SELECT health_trust FROM pathways WHERE {_SCOPE}
    ) trusts
    LEFT JOIN fact_teams f ON f.health_trust = trusts.trust AND NOT f.example_data
    WHERE $3::text IS NULL OR trust = $3
    GROUP BY trust ORDER BY trust"""  # noqa: S608

_MUNICIPALITIES = f"""SELECT count(*) AS with_pathways,
           count(*) FILTER (WHERE EXISTS (
               SELECT FROM fact_teams f
               WHERE NOT f.example_data AND m.municipality = ANY (f.municipalities)))
               AS covered
    FROM (SELECT DISTINCT municipality FROM pathways WHERE {_ACTIVE} AND {_SCOPE}) m"""  # noqa: S608

# Municipalities with active pathways, and those with an established arena with the pathway's
# health trust by the period's end (or today); example data never counts.
_ARENAS = f"""SELECT count(*) AS municipalities,
           count(*) FILTER (WHERE EXISTS (
               SELECT FROM cooperation_arenas a
               WHERE NOT a.example_data AND a.health_trust = m.health_trust
                 AND a.municipality = m.municipality
                 AND a.established <= coalesce($2::date, current_date))) AS with_arena
    FROM (SELECT DISTINCT health_trust, municipality FROM pathways
          WHERE {_ACTIVE} AND {_SCOPE}) m"""  # noqa: S608

_BREAKDOWNS = {
    "active_by_municipality": ("municipality", True),
    "active_by_health_trust": ("health_trust", True),
    "active_by_age_group": (_AGE_GROUP, True),
    "active_by_residence": ("coalesce(residence, 'unknown')", True),
    "by_pathway_reason": ("coalesce(pathway_reason, 'unknown')", False),
}
"""Counts by a column or expression: (key, over active pathways only)."""


async def compute_indicators(
    connection: Connection, query: IndicatorQuery, *, small_cell: int = 1
) -> Indicators:
    """Run the indicator queries in one read-only snapshot. With `small_cell` above 1 (what
    the API and the CLI pass: `ROP_INDICATOR_SMALL_CELL`), breakdowns withhold their small
    counts (`suppress`); 1 gives every count, for the library's own callers and tests."""
    args: list[Any] = [query.from_date, query.to_date, query.health_trust]
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        totals = await _one(connection, _TOTALS, args)
        plans = await _one(connection, _PLANS, args)
        municipalities = await _one(connection, _MUNICIPALITIES, args)
        arenas = await _one(connection, _ARENAS, args)
        breakdowns = {
            name: await _counts(connection, _by(key, active), args)
            for name, (key, active) in _BREAKDOWNS.items()
        }
        fact_by_trust = await _counts(connection, _FACT_PATIENTS, args)
        coverage = await connection.fetch(_COVERAGE, *args)
    median = totals["median_days"]
    shown: dict[str, dict[str, Count]] = {}
    total_withheld = False
    for name, counts in breakdowns.items():
        shown[name], withholds = suppress(counts, small_cell)
        total_withheld |= withholds and _BREAKDOWNS[name][1]  # over active pathways
    fact_counts, _ = suppress(fact_by_trust, small_cell)
    return Indicators(
        query=query,
        active_pathways=withheld(small_cell) if total_withheld else totals["active"],
        with_crisis_plan=totals["crisis"],
        crisis_plan_share=None if total_withheld else _share(totals["crisis"], totals["active"]),
        with_crisis_plan_at_period_end=plans["crisis_at_end"],
        ever_with_crisis_plan=totals["crisis_ever"],
        in_target_group=totals["in_target"],
        ever_crisis_plan_share=_share(totals["crisis_ever"], totals["in_target"]),
        crisis_plans_made_with_patient=plans["with_patient"],
        crisis_plans_with_relatives=plans["with_relatives"],
        made_with_patient_share=_share(plans["with_patient"], plans["plans"]),
        with_relatives_share=_share(plans["with_relatives"], plans["plans"]),
        invited=totals["invited"],
        invited_on_time=totals["on_time"],
        late_without_invite=totals["late_without_invite"],
        invited_on_time_share=_share(
            totals["on_time"], totals["invited"] + totals["late_without_invite"]
        ),
        median_working_days_to_invite=None if median is None else float(median),
        meetings_compared=plans["meetings"],
        meetings_with_all_recommended=plans["all_attended"],
        all_recommended_share=_share(plans["all_attended"], plans["meetings"]),
        overdue_review=totals["review_overdue"],
        overdue_crisis_plan=totals["crisis_overdue"],
        overdue_review_or_crisis_plan=totals["either_overdue"],
        **shown,
        fact_coverage=[
            FactCoverage(
                health_trust=r["trust"],
                fact_teams=r["teams"],
                patients_with_fact_measure=fact_counts.get(r["trust"], 0),
            )
            for r in coverage
        ],
        health_trusts_with_fact=sum(1 for r in coverage if r["teams"]),
        municipalities_with_active_pathways=municipalities["with_pathways"],
        municipalities_covered_by_fact=municipalities["covered"],
        trust_municipalities_with_active_pathways=arenas["municipalities"],
        trust_municipalities_with_arena=arenas["with_arena"],
        arena_share=_share(arenas["with_arena"], arenas["municipalities"]),
    )


def _by(key: str, active_only: bool) -> str:
    where = f"{_ACTIVE} AND {_SCOPE}" if active_only else _SCOPE
    return f"SELECT {key} AS key, count(*) AS n FROM pathways WHERE {where} GROUP BY 1 ORDER BY 1"  # noqa: S608


async def _one(connection: Connection, sql: str, args: list[Any]) -> asyncpg.Record:
    row = await connection.fetchrow(sql, *args)
    assert row is not None  # an aggregate always has its one row
    return row


async def _counts(connection: Connection, sql: str, args: list[Any]) -> dict[str, int]:
    return {row["key"]: row["n"] for row in await connection.fetch(sql, *args)}


def render_table(indicators: Indicators) -> str:
    """The indicators as a table a person reads in a terminal."""

    def pct(share: float | None) -> str:
        return "-" if share is None else f"{share:.0%}"

    q = indicators.query
    scope = f"referrals {q.from_date or '…'} – {q.to_date or '…'}" + (
        f", {q.health_trust}" if q.health_trust else ""
    )
    median = indicators.median_working_days_to_invite
    rows = [
        ("Active pathways", str(indicators.active_pathways)),
        (
            "With a crisis plan",
            f"{indicators.with_crisis_plan} ({pct(indicators.crisis_plan_share)})",
        ),
        (
            "With a crisis plan at the period's end",
            str(indicators.with_crisis_plan_at_period_end),
        ),
        (
            "Ever with a crisis plan",
            f"{indicators.ever_with_crisis_plan} of {indicators.in_target_group} in the target "
            f"group ({pct(indicators.ever_crisis_plan_share)})",
        ),
        (
            "Crisis plans made with the patient",
            f"{indicators.crisis_plans_made_with_patient} "
            f"({pct(indicators.made_with_patient_share)})",
        ),
        (
            "Crisis plans with relatives",
            f"{indicators.crisis_plans_with_relatives} ({pct(indicators.with_relatives_share)})",
        ),
        (
            "Meetings invited on time",
            f"{indicators.invited_on_time} of {indicators.invited} invited and "
            f"{indicators.late_without_invite} late without an invite "
            f"({pct(indicators.invited_on_time_share)})",
        ),
        (
            "Meetings with every recommended party",
            f"{indicators.meetings_with_all_recommended} of {indicators.meetings_compared} "
            f"({pct(indicators.all_recommended_share)})",
        ),
        (
            "Median working days to invite",
            "-" if median is None else f"{median:g}",
        ),
        ("Overdue review", str(indicators.overdue_review)),
        ("Overdue crisis plan", str(indicators.overdue_crisis_plan)),
        ("Overdue review or crisis plan", str(indicators.overdue_review_or_crisis_plan)),
        (
            "Health trusts with a FACT team",
            f"{indicators.health_trusts_with_fact} of {len(indicators.fact_coverage)}",
        ),
        (
            "With an arena for samhandling",
            f"{indicators.trust_municipalities_with_arena} of "
            f"{indicators.trust_municipalities_with_active_pathways} trust-municipality pairs "
            f"with active pathways ({pct(indicators.arena_share)})",
        ),
        (
            "Municipalities covered by FACT",
            f"{indicators.municipalities_covered_by_fact} of "
            f"{indicators.municipalities_with_active_pathways} with active pathways",
        ),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [f"ROP indicators ({scope})", ""]
    lines += [f"{label:<{width}}  {value}" for label, value in rows]
    for title, counts in (
        ("Active by municipality", indicators.active_by_municipality),
        ("Active by health trust", indicators.active_by_health_trust),
        ("Active by age group", indicators.active_by_age_group),
        ("Active by residence", indicators.active_by_residence),
        ("By reason for the pathway", indicators.by_pathway_reason),
    ):
        lines += ["", title]
        lines += [f"  {key:<{width - 2}}  {n}" for key, n in counts.items()] or ["  (none)"]
    lines += ["", "FACT teams (patients with a FACT measure) by health trust"]
    lines += [
        f"  {c.health_trust:<{width - 2}}  {c.fact_teams} ({c.patients_with_fact_measure})"
        for c in indicators.fact_coverage
    ]
    return "\n".join(lines)


class Period(StrEnum):
    """The length of one point of a time series."""

    MONTH = "month"
    QUARTER = "quarter"


class SeriesPoint(StrictModel):
    """The indicators over the referrals received in one month or quarter."""

    period: str = Field(description="2026-03 for a month, 2026-Q1 for a quarter")
    indicators: Indicators


def periods(first: date, last: date, by: Period) -> list[tuple[str, date, date]]:
    """The months or quarters from the one holding `first` to the one holding `last`:
    (label, first day, last day), each cut to first..last."""
    step = 1 if by is Period.MONTH else 3
    month = (first.month - 1) // step * step + 1
    start = date(first.year, month, 1)
    found: list[tuple[str, date, date]] = []
    while start <= last:
        following = date(
            start.year + (start.month + step - 1) // 12, (start.month + step - 1) % 12 + 1, 1
        )
        label = (
            f"{start.year}-{start.month:02d}"
            if by is Period.MONTH
            else f"{start.year}-Q{(start.month - 1) // 3 + 1}"
        )
        found.append((label, max(start, first), min(following - timedelta(days=1), last)))
        start = following
    return found


async def compute_series(
    connection: Connection, query: IndicatorQuery, by: Period, today: date, *, small_cell: int = 1
) -> list[SeriesPoint]:
    """The indicators per month or quarter of the query's period (the last 12 months to
    `today` unless it says), each point over the referrals received in it."""
    last = query.to_date or today
    if query.from_date is not None:
        first = query.from_date
    else:  # the first day of the month eleven months before `last`'s
        month = last.year * 12 + last.month - 1 - 11
        first = date(month // 12, month % 12 + 1, 1)
    return [
        SeriesPoint(
            period=label,
            indicators=await compute_indicators(
                connection,
                query.model_copy(update={"from_date": start, "to_date": end}),
                small_cell=small_cell,
            ),
        )
        for label, start, end in periods(first, last, by)
    ]


def series_csv(points: list[SeriesPoint]) -> str:
    """The series as CSV: one row per period, a column per number (shares as fractions);
    per-trust and per-municipality counts as `active_by_health_trust:<trust>` columns."""
    keyed: list[dict[str, object]] = []
    for point in points:
        row: dict[str, object] = {"period": point.period}
        data = point.indicators.model_dump(mode="json")
        row["health_trust"] = data["query"]["health_trust"] or ""
        row |= {name: data[name] for name in Indicators.model_fields if _is_number(data[name])}
        for table in ("active_by_health_trust", "active_by_municipality"):
            row |= {f"{table}:{key}": n for key, n in data[table].items()}
        keyed.append(row)
    columns = list(dict.fromkeys(column for row in keyed for column in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, restval=0, lineterminator="\n")
    writer.writeheader()
    writer.writerows(keyed)
    return out.getvalue()


def _is_number(value: object) -> bool:
    """A figure for a CSV column: a number, none, or a withheld count (`<5`)."""
    if isinstance(value, str):
        return value.startswith("<")
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def read_action(query: IndicatorQuery, what: str = "read indicators") -> str:
    """How an indicator read stands in the access log: what, and its scope (no pathway)."""
    period = f"{query.from_date or '…'}..{query.to_date or '…'}"
    return f"{what} ({period}, trust {query.health_trust or 'all'})"


MIN_BREAKDOWN_DAYS = 28
"""The shortest period whose breakdowns are shown: a day's or a week's could single out a
patient even with small cells withheld (who was referred when is known to many)."""


def check_breakdown_period(query: IndicatorQuery, today: date) -> None:
    """Raise ValueError for a period shorter than a month (the query's own; a series' points
    are whole months or quarters, cut only at the period's ends)."""
    if query.from_date is None:
        return
    last = query.to_date or today
    if (last - query.from_date).days + 1 < MIN_BREAKDOWN_DAYS:
        raise ValueError(
            f"a period of at least {MIN_BREAKDOWN_DAYS} days: the indicators' breakdowns of a "
            "shorter one could single out a patient"
        )
