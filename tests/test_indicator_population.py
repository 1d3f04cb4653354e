"""The indicators over a scripted population of records, against counts this test makes
itself from the same script, by the README's definitions."""

from __future__ import annotations

import csv
import io
import json
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import asyncpg

from activities.contact_directory import (
    CooperationArena,
    FactTeam,
    upsert_arenas,
    upsert_fact_teams,
)
from rop_domain.calendar import OSLO
from starter.indicators import (
    IndicatorQuery,
    Period,
    compute_indicators,
    compute_series,
    periods,
    series_csv,
)

TODAY = datetime.now(OSLO).date()
"""Today as the indicators count days: in Norway."""


@dataclass
class Scripted:
    """One pathway of the population, as the records would hold it."""

    workflow_id: str
    municipality: str
    decision: str | None
    phase: str
    deadline: date
    invited_on_time: bool | None  # None: not invited
    closed_on: date | None
    crisis_plans: list[tuple[bool, bool]] = field(default_factory=list)
    """Each version's (made with the patient, relatives involved), oldest first."""
    measure_kinds: list[list[str]] = field(default_factory=list)
    """The plan of measures at the meeting, then at each revision."""
    birth_year: int | None = None
    residence: str | None = None
    reason: str | None = None
    recommended: list[str] = field(default_factory=list)
    """The parties recommended for the meeting (none: a meeting recorded before they were)."""
    came: list[str] = field(default_factory=list)
    """Who came, as roles (`attended`) or as free text (`attendees`)."""
    fact_cancelled: bool = False
    """The current plan's ACT/FACT measure was cancelled (no FACT follow-up)."""


def _population(seed: int) -> list[Scripted]:
    rng = random.Random(seed)  # noqa: S311 - a repeatable script, not a secret
    people = []
    for _ in range(40):
        decision = rng.choice(["in-target-group", "in-target-group", "not-in-target-group", None])
        deadline = TODAY + timedelta(days=rng.randint(-40, 20))
        invited = decision == "in-target-group" and rng.random() < 0.6
        closed = rng.random() < 0.25
        plans = (
            [(rng.random() < 0.7, rng.random() < 0.5) for _ in range(rng.randint(0, 3))]
            if invited
            else []
        )
        kinds = ["outpatient", "ambulant-act-fact", "municipal-housing-follow-up"]
        measures = [rng.sample(kinds, rng.randint(0, 2)) for _ in range(rng.randint(0, 2))]
        people.append(
            Scripted(
                workflow_id=f"rop-P-{uuid.uuid4().hex[:10]}",
                municipality=rng.choice(["4601", "4627", "4624"]),
                decision=decision,
                phase=(
                    "not-in-target-group"
                    if decision == "not-in-target-group"
                    else "closed"
                    if closed
                    else "follow-up"
                    if invited
                    else "awaiting-invite"
                    if decision
                    else "awaiting-assessment"
                ),
                deadline=deadline,
                invited_on_time=(rng.random() < 0.5) if invited else None,
                closed_on=deadline + timedelta(days=rng.randint(-10, 10)) if closed else None,
                crisis_plans=plans,
                measure_kinds=measures if invited else [],
                birth_year=rng.choice([None, 1950, 1985, 2000, 2003, 2010]),
                residence=rng.choice([None, "home", "institution", "prison"]),
                reason=rng.choice([None, "cooperation-not-working", "other"]),
                recommended=rng.choice([[], ["phv", "tsb"], ["phv", "tsb", "kommune"]]),
                came=rng.choice([["phv", "tsb"], ["PHV", "TSB", "kommune"], ["tsb"]]),
            )
        )
    # Every third pathway with a FACT measure has it cancelled: a fixed rule, so the random
    # script above stays as it was.
    for number, p in enumerate(p for p in people if _has_fact(p)):
        p.fact_cancelled = number % 3 == 0
    return people


async def _write(owner: asyncpg.Pool, trust: str, people: list[Scripted]) -> None:
    received = datetime.now(UTC) - timedelta(days=1)
    for p in people:
        await owner.execute(
            """INSERT INTO pathways (workflow_id, referral_id, received_at, source, referrer,
                   receiving_unit, health_trust, municipality, responsible_clinician,
                   patient_reference, phase, meeting_deadline, assessment_decision, invited_at,
                   invited_on_time, invite_working_days, crisis_plan_version, closed_at,
                   birth_year, residence, pathway_reason)
               VALUES ($1, $1, $2, 'fastlege', '9000001', 'TSB', $3, $4, '9000123', 'x', $5,
                       $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)""",
            p.workflow_id,
            received,
            trust,
            p.municipality,
            p.phase,
            p.deadline,
            p.decision,
            received if p.invited_on_time is not None else None,
            p.invited_on_time,
            5 if p.invited_on_time is not None else None,
            len(p.crisis_plans) or None,
            (
                datetime.combine(p.closed_on, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
                if p.closed_on
                else None
            ),
            p.birth_year,
            p.residence,
            p.reason,
        )
        events: list[tuple[str, dict[str, object]]] = []
        for number, kinds in enumerate(p.measure_kinds):
            key = "measures" if number == 0 else "plan"
            measures = [{"id": f"m{i}", "kind": kind} for i, kind in enumerate(kinds)]
            details: dict[str, object] = {key: measures}
            if number == 0:
                # Roles as `attended`, texts as `attendees`, as meetings record them.
                details |= {
                    "attended": [c for c in p.came if c.islower()],
                    "attendees": [c for c in p.came if not c.islower()] or ["x"],
                }
                if p.recommended:
                    details["recommended_roles"] = p.recommended
            events.append(("meeting-held" if number == 0 else "plan-revised", details))
        if _fact_cancelled(p):  # the current plan's FACT measure, cancelled since
            [fact_id] = [
                f"m{i}" for i, kind in enumerate(p.measure_kinds[-1]) if kind == "ambulant-act-fact"
            ]
            events.append(
                ("measure-cancelled", {"measure_id": fact_id, "by": "x", "reason": "flyttet"})
            )
        for version, (with_patient, relatives) in enumerate(p.crisis_plans, start=1):
            events.append(
                (
                    "crisis-plan-registered",
                    {
                        "version": version,
                        "made_with_patient": with_patient,
                        "relatives_involved": relatives,
                    },
                )
            )
        for sequence, (kind, details) in enumerate(events):
            await owner.execute(
                "INSERT INTO pathway_events (idempotency_key, workflow_id, kind, actor, "
                "occurred_at, details) VALUES ($1, $2, $3, 'x', now(), $4::jsonb)",
                f"{p.workflow_id}/{sequence}",
                p.workflow_id,
                kind,
                json.dumps(details),
            )


def _has_fact(p: Scripted) -> bool:
    """The current plan holds an ACT/FACT measure."""
    return bool(p.measure_kinds) and "ambulant-act-fact" in p.measure_kinds[-1]


def _fact_cancelled(p: Scripted) -> bool:
    return p.fact_cancelled


def _active(p: Scripted) -> bool:
    return p.phase not in ("closed", "not-in-target-group")


def _late_without_invite(p: Scripted) -> bool:
    return (
        p.invited_on_time is None
        and p.decision != "not-in-target-group"
        and p.deadline < TODAY
        and (p.closed_on is None or p.closed_on > p.deadline)
    )


async def test_indicators_equal_the_scripts_own_counts(
    owner_pool: asyncpg.Pool, api_pool: asyncpg.Pool
) -> None:
    trust = f"helse-pop-{uuid.uuid4().hex[:6]}"
    people = _population(seed=13)
    await _write(owner_pool, trust, people)
    await upsert_fact_teams(
        owner_pool,
        [
            FactTeam(id=f"{trust}-1", health_trust=trust, name="FACT", municipalities=["4601"]),
            FactTeam(
                id=f"{trust}-x",
                health_trust=trust,
                name="Example FACT",
                municipalities=["4627"],
                example_data=True,
            ),
        ],
    )
    await upsert_arenas(
        owner_pool,
        [
            CooperationArena(
                id=f"{trust}-4601", health_trust=trust, municipality="4601", name="Arena",
                established=TODAY - timedelta(days=300),
            ),
            CooperationArena(
                id=f"{trust}-4627", health_trust=trust, municipality="4627", name="Example",
                established=TODAY - timedelta(days=300), example_data=True,
            ),
            CooperationArena(
                id=f"{trust}-4624", health_trust=trust, municipality="4624", name="Planned",
                established=TODAY + timedelta(days=30),
            ),
        ],
    )  # fmt: skip
    async with api_pool.acquire() as connection:
        found = await compute_indicators(connection, IndicatorQuery(health_trust=trust))
        in_4601 = await compute_indicators(
            connection, IndicatorQuery(health_trust=trust, municipality="4601")
        )

    active = [p for p in people if _active(p)]
    with_plan = [p for p in people if p.crisis_plans]
    current = [p.crisis_plans[-1] for p in with_plan]
    invited = [p for p in people if p.invited_on_time is not None]
    late = [p for p in people if _late_without_invite(p)]
    on_time = [p for p in invited if p.invited_on_time]
    fact = [p for p in active if _has_fact(p) and not _fact_cancelled(p)]  # FACT follow-up
    municipalities = {p.municipality for p in active}

    def share(part: int, whole: int) -> float | None:
        return round(part / whole, 3) if whole else None

    assert found.active_pathways == len(active)
    # One municipality's scope, applied in SQL as the period's and the trust's are.
    assert in_4601.active_pathways == len([p for p in active if p.municipality == "4601"])
    assert set(in_4601.active_by_municipality) == {"4601"}
    assert in_4601.in_target_group == len(
        [p for p in people if p.municipality == "4601" and p.decision == "in-target-group"]
    )
    assert found.with_crisis_plan == len([p for p in active if p.crisis_plans])
    assert found.ever_with_crisis_plan == len(with_plan)
    # Registered (today, as the script writes them) and not ended by the period's end.
    assert found.with_crisis_plan_at_period_end == len(
        [p for p in with_plan if p.closed_on is None or p.closed_on > TODAY]
    )
    assert found.in_target_group == len([p for p in people if p.decision == "in-target-group"])
    assert found.crisis_plans_made_with_patient == sum(1 for patient, _ in current if patient)
    assert found.crisis_plans_with_relatives == sum(1 for _, relatives in current if relatives)
    assert found.made_with_patient_share == share(
        found.crisis_plans_made_with_patient, len(current)
    )
    assert (found.invited, found.invited_on_time, found.late_without_invite) == (
        len(invited),
        len(on_time),
        len(late),
    )
    assert found.invited_on_time_share == share(len(on_time), len(invited) + len(late))
    [coverage] = found.fact_coverage
    assert (coverage.fact_teams, coverage.patients_with_fact_measure) == (1, len(fact))
    assert found.municipalities_with_active_pathways == len(municipalities)
    assert found.municipalities_covered_by_fact == len(municipalities & {"4601"})
    # An arena counts once established, and example data never.
    assert found.trust_municipalities_with_active_pathways == len(municipalities)
    assert found.trust_municipalities_with_arena == len(municipalities & {"4601"})
    received_year = (datetime.now(UTC) - timedelta(days=1)).astimezone(OSLO).year

    def age_group(p: Scripted) -> str:
        if p.birth_year is None:
            return "unknown"
        age = received_year - p.birth_year
        return (
            "under 18"
            if age < 18
            else "18-25"
            if age <= 25
            else "26-64"
            if age <= 64
            else "65 and over"
        )

    assert found.active_by_age_group == dict(Counter(age_group(p) for p in active))
    assert found.active_by_residence == dict(Counter(p.residence or "unknown" for p in active))
    assert found.by_pathway_reason == dict(Counter(p.reason or "unknown" for p in people))
    compared = [p for p in people if p.measure_kinds and p.recommended]
    all_came = [p for p in compared if set(p.recommended) <= {c.lower() for c in p.came}]
    assert (found.meetings_compared, found.meetings_with_all_recommended) == (
        len(compared),
        len(all_came),
    )
    assert 0 < len(all_came) < len(compared)
    # The population is varied enough for each count to mean something.
    assert 0 < len(late) < len(people)
    assert 0 < len(fact) < len(active)
    assert any(_fact_cancelled(p) for p in active)  # a cancelled FACT measure is not counted
    assert 0 < found.crisis_plans_made_with_patient < len(current)


def test_periods_are_whole_months_and_quarters_cut_to_the_range() -> None:
    assert periods(date(2026, 11, 15), date(2027, 2, 3), Period.MONTH) == [
        ("2026-11", date(2026, 11, 15), date(2026, 11, 30)),
        ("2026-12", date(2026, 12, 1), date(2026, 12, 31)),
        ("2027-01", date(2027, 1, 1), date(2027, 1, 31)),
        ("2027-02", date(2027, 2, 1), date(2027, 2, 3)),
    ]
    assert periods(date(2026, 2, 1), date(2026, 12, 31), Period.QUARTER) == [
        ("2026-Q1", date(2026, 2, 1), date(2026, 3, 31)),
        ("2026-Q2", date(2026, 4, 1), date(2026, 6, 30)),
        ("2026-Q3", date(2026, 7, 1), date(2026, 9, 30)),
        ("2026-Q4", date(2026, 10, 1), date(2026, 12, 31)),
    ]


async def test_a_series_puts_each_referral_in_its_month_and_reads_as_csv(
    owner_pool: asyncpg.Pool, api_pool: asyncpg.Pool
) -> None:
    trust = f"helse-ser-{uuid.uuid4().hex[:6]}"
    people = _population(seed=7)
    await _write(owner_pool, trust, people)  # all received yesterday
    received = (datetime.now(UTC) - timedelta(days=1)).astimezone(OSLO).date()
    async with api_pool.acquire() as connection:
        series = await compute_series(
            connection, IndicatorQuery(health_trust=trust), Period.MONTH, received
        )
    assert len(series) == 12
    *earlier, last = series
    assert last.period == f"{received.year}-{received.month:02d}"
    assert last.indicators.active_pathways == len([p for p in people if _active(p)])
    assert {point.indicators.active_pathways for point in earlier} == {0}

    table = list(csv.DictReader(io.StringIO(series_csv(series))))
    assert [row["period"] for row in table] == [point.period for point in series]
    assert table[-1]["active_pathways"] == str(last.indicators.active_pathways)
    assert table[-1][f"active_by_health_trust:{trust}"] == str(last.indicators.active_pathways)
    assert {row["health_trust"] for row in table} == {trust}
