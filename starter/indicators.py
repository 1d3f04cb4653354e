"""The region's indicators, computed from the records (not from Temporal).

The regional plan measures itself on: patients with a crisis plan, meetings invited
on time, and health trusts with FACT teams. These are computed over the pathways
whose referral was received in the chosen period (Norwegian dates); each is defined in
words in the README ("Indicators") and here in SQL, once.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeAlias

import asyncpg
from pydantic import Field, model_validator

from activities.database import Connection
from rop_domain.calendar import OSLO
from rop_domain.models import Identifier, IsoDate, Kommunenummer, StrictModel

_ACTIVE = "f.active"  # neither closed nor assessed as not in the target group
_IN_TARGET = "f.assessment_decision = 'in-target-group'"
_TODAY = "(now() AT TIME ZONE 'Europe/Oslo')::date"
# At the end of the point's period (its last day in Oslo, or today): in the pathway, not
# ended, and with a crisis plan registered by then.
_AT_PERIOD_END = """(f.first_crisis_plan_at AT TIME ZONE 'Europe/Oslo' < b.period_end + 1
    AND f.assessment_decision IS DISTINCT FROM 'not-in-target-group'
    AND (f.closed_at IS NULL OR f.closed_at AT TIME ZONE 'Europe/Oslo' >= b.period_end + 1))"""
# Past a deadline (an Oslo date) without the step, and not ended before it.
_LATE = """(f.assessment_decision IS DISTINCT FROM 'not-in-target-group'
    AND {deadline} < {today}
    AND (f.closed_at IS NULL OR (f.closed_at AT TIME ZONE 'Europe/Oslo')::date > {deadline}))"""
_LATE_WITHOUT_INVITE = (
    "(f.invited_at IS NULL AND " + _LATE.format(deadline="f.meeting_deadline", today=_TODAY) + ")"
)
_LATE_WITHOUT_ASSESSMENT = (
    "(f.assessed_at IS NULL AND "
    + _LATE.format(deadline="f.assessment_deadline", today=_TODAY)
    + ")"
)
_ASSESSED_IN_TIME = """(f.assessed_at IS NOT NULL
    AND (f.assessed_at AT TIME ZONE 'Europe/Oslo')::date <= f.assessment_deadline)"""


class IndicatorQuery(StrictModel):
    """Which pathways count: referrals received from..to, optionally one health trust and
    one municipality."""

    from_date: IsoDate | None = None
    to_date: IsoDate | None = None
    health_trust: Identifier | None = None
    municipality: Kommunenummer | None = None

    @model_validator(mode="after")
    def _ordered(self) -> IndicatorQuery:
        if self.from_date and self.to_date and self.from_date > self.to_date:
            raise ValueError("the period must not begin (from) after it ends (to)")
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
    assessed: int = Field(description="Referrals in scope the specialist service has assessed")
    assessed_in_time: int = Field(
        description="Of those, assessed within 10 working days of receipt (the assessment "
        "deadline, pasient- og brukerrettighetsloven § 2-2)"
    )
    late_without_assessment: int = Field(
        description="Past their assessment deadline, not assessed, not ended before it"
    )
    assessed_in_time_share: float | None = Field(
        description="In time, of those assessed and those past their deadline unassessed "
        "(Helsedirektoratet reports the rest: the share not assessed in time)"
    )
    invited: int
    invited_on_time: int
    late_without_invite: int = Field(
        description="Past their meeting deadline with no invite: late, though not yet invited"
    )
    invited_on_time_share: float | None = Field(
        description="On time, of those invited and those past their deadline without an invite"
    )
    median_working_days_to_invite: float | None
    meetings_held: int = Field(description="Pathways in scope whose avklaringsmøte was held")
    median_working_days_to_meeting: float | None = Field(
        description="Median working days from receipt to the first clarification meeting"
    )
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


# The pathways in scope with their facts (migration 0014), each with its point of a series
# (`b.bucket`) and that point's last day (`b.period_end`). $1..$2: the period of receipt,
# $3: a health trust, $4: the last day of the whole period (its end, or today).
_FROM_SCOPED = """FROM pathway_facts f
    CROSS JOIN LATERAL (SELECT {bucket} AS bucket, least({bucket_end}, $4::date) AS period_end) b"""
_IN_SCOPE = """($1::date IS NULL OR f.received_on >= $1::date)
      AND ($2::date IS NULL OR f.received_on <= $2::date)
      AND ($3::text IS NULL OR f.health_trust = $3::text)
      AND ($5::text IS NULL OR f.municipality = $5::text)"""

# Every count and median of a point, in one pass over its pathways.
_TOTALS = f"""SELECT b.bucket,
      count(*) FILTER (WHERE {_ACTIVE}) AS active,
      count(*) FILTER (WHERE {_ACTIVE} AND f.crisis_plan_version IS NOT NULL) AS crisis,
      count(*) FILTER (WHERE f.crisis_plan_version IS NOT NULL) AS crisis_ever,
      count(*) FILTER (WHERE {_AT_PERIOD_END}) AS crisis_at_end,
      count(*) FILTER (WHERE {_IN_TARGET}) AS in_target,
      count(*) FILTER (WHERE f.has_crisis_plan) AS plans,
      count(*) FILTER (WHERE f.made_with_patient) AS with_patient,
      count(*) FILTER (WHERE f.relatives_involved) AS with_relatives,
      count(*) FILTER (WHERE f.assessed_at IS NOT NULL) AS assessed,
      count(*) FILTER (WHERE {_ASSESSED_IN_TIME}) AS assessed_in_time,
      count(*) FILTER (WHERE {_LATE_WITHOUT_ASSESSMENT}) AS late_without_assessment,
      count(*) FILTER (WHERE f.invited_at IS NOT NULL) AS invited,
      count(*) FILTER (WHERE f.invited_on_time) AS on_time,
      count(*) FILTER (WHERE {_LATE_WITHOUT_INVITE}) AS late_without_invite,
      percentile_cont(0.5) WITHIN GROUP (ORDER BY f.invite_working_days)
          FILTER (WHERE f.invited_at IS NOT NULL) AS median_days,
      count(*) FILTER (WHERE f.meeting_working_days IS NOT NULL) AS meetings_held,
      percentile_cont(0.5) WITHIN GROUP (ORDER BY f.meeting_working_days)
          FILTER (WHERE f.meeting_working_days IS NOT NULL) AS median_days_to_meeting,
      count(*) FILTER (WHERE f.all_recommended_attended IS NOT NULL) AS meetings,
      count(*) FILTER (WHERE f.all_recommended_attended) AS all_attended,
      count(*) FILTER (WHERE {_ACTIVE} AND f.review_overdue) AS review_overdue,
      count(*) FILTER (WHERE {_ACTIVE} AND f.crisis_plan_overdue) AS crisis_overdue,
      count(*) FILTER (WHERE {_ACTIVE} AND (f.review_overdue OR f.crisis_plan_overdue))
          AS either_overdue
    {_FROM_SCOPED}
    WHERE {_IN_SCOPE}
    GROUP BY b.bucket"""

# Every breakdown of a point, in one pass: a row per cell, its key in the one column of its
# breakdown that is not NULL.
_BREAKDOWNS = f"""SELECT b.bucket, f.municipality, f.health_trust, f.age_group,
           coalesce(f.residence, 'unknown') AS residence,
           coalesce(f.pathway_reason, 'unknown') AS reason,
           count(*) AS pathways,
           count(*) FILTER (WHERE {_ACTIVE}) AS active,
           count(*) FILTER (WHERE {_ACTIVE} AND f.has_fact_measure) AS fact_patients
    {_FROM_SCOPED}
    WHERE {_IN_SCOPE}
    GROUP BY GROUPING SETS ((1, 2), (1, 3), (1, 4), (1, 5), (1, 6))"""

BREAKDOWNS = {
    "active_by_municipality": True,
    "active_by_health_trust": True,
    "active_by_age_group": True,
    "active_by_residence": True,
    "by_pathway_reason": False,
}
"""The breakdowns an indicator set shows: name -> whether it counts active pathways only."""

# Municipalities with active pathways, those a FACT team covers, and the pairs of health
# trust and municipality with an established arena for samhandling by the point's last day.
# Example data never counts.
_PLACES = f"""SELECT m.bucket,
           count(DISTINCT m.municipality) AS municipalities,
           count(DISTINCT m.municipality) FILTER (WHERE EXISTS (
               SELECT FROM fact_teams t
               WHERE NOT t.example_data AND m.municipality = ANY (t.municipalities))) AS covered,
           count(*) AS pairs,
           count(*) FILTER (WHERE EXISTS (
               SELECT FROM cooperation_arenas a
               WHERE NOT a.example_data AND a.health_trust = m.health_trust
                 AND a.municipality = m.municipality
                 AND a.established <= m.period_end)) AS with_arena
    FROM (SELECT DISTINCT b.bucket, b.period_end, f.health_trust, f.municipality
          {_FROM_SCOPED}
          WHERE {_ACTIVE} AND {_IN_SCOPE}) m
    GROUP BY m.bucket"""  # noqa: S608

_FACT_TEAMS = """SELECT health_trust, count(*) AS teams FROM fact_teams
    WHERE NOT example_data AND ($1::text IS NULL OR health_trust = $1::text)
    GROUP BY health_trust"""

_WHOLE_PERIOD = ("''", "$4::date")
"""One point: the whole period."""
_POINTS = {
    "month": ("to_char(f.received_on, 'YYYY-MM')",
              "(date_trunc('month', f.received_on) + interval '1 month - 1 day')::date"),
    "quarter": ("to_char(f.received_on, 'YYYY-\"Q\"Q')",
                "(date_trunc('quarter', f.received_on) + interval '3 months - 1 day')::date"),
}  # fmt: skip
"""A series' points: (label, last day) of the month or quarter a referral was received in."""


async def compute_indicators(
    connection: Connection, query: IndicatorQuery, *, small_cell: int = 1, today: date | None = None
) -> Indicators:
    """The indicators of one query. With `small_cell` above 1 (what the API and the CLI pass:
    `ROP_INDICATOR_SMALL_CELL`), breakdowns withhold their small counts (`suppress`); 1 gives
    every count, for the library's own callers and tests. The period's last day is its
    `to_date`, or `today` (Norway's, unless given)."""
    last = query.to_date or today or datetime.now(OSLO).date()
    [(_, found)] = await _compute(connection, query, last, _WHOLE_PERIOD, [("", query)], small_cell)
    return found


async def _compute(
    connection: Connection,
    query: IndicatorQuery,
    last: date,
    points: tuple[str, str],
    labelled: list[tuple[str, IndicatorQuery]],
    small_cell: int,
) -> list[tuple[str, Indicators]]:
    """Each labelled point's indicators, from four grouped statements in one read-only
    snapshot, however many points there are."""
    bucket, bucket_end = points
    args: list[Any] = [query.from_date, query.to_date, query.health_trust, last, query.municipality]

    def grouped(sql: str) -> str:
        return sql.replace("{bucket}", bucket).replace("{bucket_end}", bucket_end)

    async with connection.transaction(isolation="repeatable_read", readonly=True):
        totals = {r["bucket"]: r for r in await connection.fetch(grouped(_TOTALS), *args)}
        places = {r["bucket"]: r for r in await connection.fetch(grouped(_PLACES), *args)}
        cells: dict[str, dict[str, dict[str, int]]] = {}
        for r in await connection.fetch(grouped(_BREAKDOWNS), *args):
            for breakdown, key, count in _cells(r):
                if count:
                    cells.setdefault(r["bucket"], {}).setdefault(breakdown, {})[key] = count
        teams = {
            r["health_trust"]: r["teams"]
            for r in await connection.fetch(_FACT_TEAMS, query.health_trust)
        }
    return [
        (
            label,
            _indicators(
                point, totals.get(label), places.get(label), cells.get(label, {}), teams, small_cell
            ),
        )
        for label, point in labelled
    ]


def _cells(row: asyncpg.Record) -> list[tuple[str, str, int]]:
    """The cells one row of `_BREAKDOWNS` gives: (breakdown, key, count)."""
    if row["municipality"] is not None:
        return [("active_by_municipality", row["municipality"], row["active"])]
    if row["health_trust"] is not None:
        trust = row["health_trust"]
        return [
            ("active_by_health_trust", trust, row["active"]),
            ("fact_patients", trust, row["fact_patients"]),
            ("trusts", trust, row["pathways"]),
        ]
    if row["age_group"] is not None:
        return [("active_by_age_group", row["age_group"], row["active"])]
    if row["residence"] is not None:
        return [("active_by_residence", row["residence"], row["active"])]
    return [("by_pathway_reason", row["reason"], row["pathways"])]


_COUNTS = [
    "active",
    "crisis",
    "crisis_ever",
    "crisis_at_end",
    "in_target",
    "plans",
    "with_patient",
    "with_relatives",
    "assessed",
    "assessed_in_time",
    "late_without_assessment",
    "invited",
    "on_time",
    "late_without_invite",
    "meetings_held",
    "meetings",
    "all_attended",
    "review_overdue",
    "crisis_overdue",
    "either_overdue",
]
"""The counts of `_TOTALS`, by column name."""


def _indicators(
    query: IndicatorQuery,
    totals: asyncpg.Record | None,
    places: asyncpg.Record | None,
    cells: dict[str, dict[str, int]],
    teams: dict[str, int],
    small_cell: int,
) -> Indicators:
    """One point's indicators from its rows of the grouped statements (none: no pathways)."""
    t: dict[str, Any] = dict(totals) if totals else {}
    n = {key: int(t.get(key) or 0) for key in _COUNTS}
    p: dict[str, Any] = dict(places) if places else {}
    m = {key: int(p.get(key) or 0) for key in ("municipalities", "covered", "pairs", "with_arena")}
    shown: dict[str, dict[str, Count]] = {}
    total_withheld = False
    for name, active_only in BREAKDOWNS.items():
        shown[name], withholds = suppress(cells.get(name, {}), small_cell)
        total_withheld |= withholds and active_only
    fact_counts, _ = suppress(cells.get("fact_patients", {}), small_cell)
    trusts = sorted(set(teams) | set(cells.get("trusts", {})))
    return Indicators(
        query=query,
        active_pathways=withheld(small_cell) if total_withheld else n["active"],
        with_crisis_plan=n["crisis"],
        crisis_plan_share=None if total_withheld else _share(n["crisis"], n["active"]),
        with_crisis_plan_at_period_end=n["crisis_at_end"],
        ever_with_crisis_plan=n["crisis_ever"],
        in_target_group=n["in_target"],
        ever_crisis_plan_share=_share(n["crisis_ever"], n["in_target"]),
        crisis_plans_made_with_patient=n["with_patient"],
        crisis_plans_with_relatives=n["with_relatives"],
        made_with_patient_share=_share(n["with_patient"], n["plans"]),
        with_relatives_share=_share(n["with_relatives"], n["plans"]),
        assessed=n["assessed"],
        assessed_in_time=n["assessed_in_time"],
        late_without_assessment=n["late_without_assessment"],
        assessed_in_time_share=_share(
            n["assessed_in_time"], n["assessed"] + n["late_without_assessment"]
        ),
        invited=n["invited"],
        invited_on_time=n["on_time"],
        late_without_invite=n["late_without_invite"],
        invited_on_time_share=_share(n["on_time"], n["invited"] + n["late_without_invite"]),
        median_working_days_to_invite=_median(t.get("median_days")),
        meetings_held=n["meetings_held"],
        median_working_days_to_meeting=_median(t.get("median_days_to_meeting")),
        meetings_compared=n["meetings"],
        meetings_with_all_recommended=n["all_attended"],
        all_recommended_share=_share(n["all_attended"], n["meetings"]),
        overdue_review=n["review_overdue"],
        overdue_crisis_plan=n["crisis_overdue"],
        overdue_review_or_crisis_plan=n["either_overdue"],
        **shown,
        fact_coverage=[
            FactCoverage(
                health_trust=trust,
                fact_teams=teams.get(trust, 0),
                patients_with_fact_measure=fact_counts.get(trust, 0),
            )
            for trust in trusts
        ],
        health_trusts_with_fact=sum(1 for trust in trusts if teams.get(trust)),
        municipalities_with_active_pathways=m["municipalities"],
        municipalities_covered_by_fact=m["covered"],
        trust_municipalities_with_active_pathways=m["pairs"],
        trust_municipalities_with_arena=m["with_arena"],
        arena_share=_share(m["with_arena"], m["pairs"]),
    )


def _median(value: float | None) -> float | None:
    return None if value is None else float(value)


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
            "Referrals assessed in time",
            f"{indicators.assessed_in_time} of {indicators.assessed} assessed and "
            f"{indicators.late_without_assessment} late without an assessment "
            f"({pct(indicators.assessed_in_time_share)})",
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
        (
            "Median working days to the meeting",
            "-"
            if indicators.median_working_days_to_meeting is None
            else f"{indicators.median_working_days_to_meeting:g} "
            f"({indicators.meetings_held} meetings held)",
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
    `today` unless it says), each point over the referrals received in it: one grouped pass
    gives every point, not a pass per point."""
    last = query.to_date or today
    if query.from_date is not None:
        first = query.from_date
    else:  # the first day of the month eleven months before `last`'s
        month = last.year * 12 + last.month - 1 - 11
        first = date(month // 12, month % 12 + 1, 1)
    labelled = [
        (label, query.model_copy(update={"from_date": start, "to_date": end}))
        for label, start, end in periods(first, last, by)
    ]
    whole = query.model_copy(update={"from_date": first, "to_date": last})
    found = await _compute(connection, whole, last, _POINTS[by.value], labelled, small_cell)
    return [SeriesPoint(period=label, indicators=indicators) for label, indicators in found]


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
    place = f", municipality {query.municipality}" if query.municipality else ""
    return f"{what} ({period}, trust {query.health_trust or 'all'}{place})"


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
