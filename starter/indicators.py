"""The region's indicators, computed from the records (not from Temporal).

The regional plan measures itself on: patients with a crisis plan, meetings invited
on time, and health trusts with FACT teams. These are computed over the pathways
whose referral was received in the chosen period (Norwegian dates).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from activities.database import Connection
from rop_domain.models import Identifier, IsoDate, StrictModel

_ACTIVE = "phase NOT IN ('closed', 'not-in-target-group')"
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


class FactCoverage(StrictModel):
    """FACT teams of one health trust."""

    health_trust: str
    fact_teams: int


class Indicators(StrictModel):
    """The indicators for one query."""

    query: IndicatorQuery
    active_pathways: int
    with_crisis_plan: int
    crisis_plan_share: float | None = Field(description="Of active pathways")
    invited: int
    invited_on_time: int
    invited_on_time_share: float | None
    median_working_days_to_invite: float | None
    overdue_review: int
    overdue_crisis_plan: int
    overdue_review_or_crisis_plan: int
    active_by_municipality: dict[str, int]
    active_by_health_trust: dict[str, int]
    fact_coverage: list[FactCoverage]
    health_trusts_with_fact: int


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None


async def compute_indicators(connection: Connection, query: IndicatorQuery) -> Indicators:
    """Run the indicator queries in one read-only snapshot."""
    args: list[Any] = [query.from_date, query.to_date, query.health_trust]
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        totals = await connection.fetchrow(
            f"""SELECT
                  count(*) FILTER (WHERE {_ACTIVE}) AS active,
                  count(*) FILTER (WHERE {_ACTIVE} AND crisis_plan_version IS NOT NULL) AS crisis,
                  count(*) FILTER (WHERE invited_at IS NOT NULL) AS invited,
                  count(*) FILTER (WHERE invited_on_time) AS on_time,
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY invite_working_days)
                      FILTER (WHERE invited_at IS NOT NULL) AS median_days,
                  count(*) FILTER (WHERE {_ACTIVE} AND review_overdue) AS review_overdue,
                  count(*) FILTER (WHERE {_ACTIVE} AND crisis_plan_overdue) AS crisis_overdue,
                  count(*) FILTER (WHERE {_ACTIVE} AND (review_overdue OR crisis_plan_overdue))
                      AS either_overdue
                FROM pathways WHERE {_SCOPE}""",  # noqa: S608 - fixed fragments, values bound
            *args,
        )
        assert totals is not None
        by_municipality = await connection.fetch(
            f"SELECT municipality AS key, count(*) AS n FROM pathways "  # noqa: S608
            f"WHERE {_ACTIVE} AND {_SCOPE} GROUP BY municipality ORDER BY municipality",
            *args,
        )
        by_trust = await connection.fetch(
            f"SELECT health_trust AS key, count(*) AS n FROM pathways "  # noqa: S608
            f"WHERE {_ACTIVE} AND {_SCOPE} GROUP BY health_trust ORDER BY health_trust",
            *args,
        )
        coverage = await connection.fetch(
            f"""SELECT trust, count(f.id) AS teams FROM (
                    SELECT health_trust AS trust FROM fact_teams
                    UNION SELECT health_trust FROM pathways WHERE {_SCOPE}
                ) trusts
                LEFT JOIN fact_teams f ON f.health_trust = trusts.trust
                WHERE $3::text IS NULL OR trust = $3
                GROUP BY trust ORDER BY trust""",  # noqa: S608
            *args,
        )
    median = totals["median_days"]
    return Indicators(
        query=query,
        active_pathways=totals["active"],
        with_crisis_plan=totals["crisis"],
        crisis_plan_share=_share(totals["crisis"], totals["active"]),
        invited=totals["invited"],
        invited_on_time=totals["on_time"],
        invited_on_time_share=_share(totals["on_time"], totals["invited"]),
        median_working_days_to_invite=None if median is None else float(median),
        overdue_review=totals["review_overdue"],
        overdue_crisis_plan=totals["crisis_overdue"],
        overdue_review_or_crisis_plan=totals["either_overdue"],
        active_by_municipality={r["key"]: r["n"] for r in by_municipality},
        active_by_health_trust={r["key"]: r["n"] for r in by_trust},
        fact_coverage=[
            FactCoverage(health_trust=r["trust"], fact_teams=r["teams"]) for r in coverage
        ],
        health_trusts_with_fact=sum(1 for r in coverage if r["teams"]),
    )


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
            "Meetings invited on time",
            f"{indicators.invited_on_time} of {indicators.invited} "
            f"({pct(indicators.invited_on_time_share)})",
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
    ]
    width = max(len(label) for label, _ in rows)
    lines = [f"ROP indicators ({scope})", ""]
    lines += [f"{label:<{width}}  {value}" for label, value in rows]
    for title, counts in (
        ("Active by municipality", indicators.active_by_municipality),
        ("Active by health trust", indicators.active_by_health_trust),
    ):
        lines += ["", title]
        lines += [f"  {key:<{width - 2}}  {n}" for key, n in counts.items()] or ["  (none)"]
    lines += ["", "FACT teams by health trust"]
    lines += [f"  {c.health_trust:<{width - 2}}  {c.fact_teams}" for c in indicators.fact_coverage]
    return "\n".join(lines)
