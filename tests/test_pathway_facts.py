"""The per-pathway facts (migration 0014): kept as each step is recorded, equal to the facts
recomputed from the event log, filled for records from before, and the national indicators
computed from them equal to this test's own counts (made with the Python calendar, not SQL's).
"""

from __future__ import annotations

import json
import random
import statistics
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import asyncpg
import pytest
import pytest_asyncio

from activities.database import create_pool, migrate, migration_files
from rop_domain import calendar
from rop_domain.calendar import OSLO
from starter.indicators import (
    IndicatorQuery,
    Indicators,
    Period,
    compute_indicators,
    compute_series,
)
from starter.local_stack import ensure_database
from tests import test_indicator_population as population

TODAY = datetime.now(OSLO).date()


@dataclass
class Referral:
    """One pathway as the national indicators see it."""

    workflow_id: str
    received_at: datetime
    decision: str | None
    assessed_at: datetime | None
    held_at: datetime | None
    closed_at: datetime | None

    @property
    def received_on(self) -> date:
        return calendar.local_date(self.received_at)

    @property
    def deadline(self) -> date:
        return calendar.add_working_days(self.received_on, 10)


def _referrals(seed: int) -> list[Referral]:
    """Referrals over the last ten weeks (Easter and 17 May fall in such spans some years):
    assessed early, on the deadline, late, not at all; some with a meeting; some closed."""
    rng = random.Random(seed)  # noqa: S311 - a repeatable script, not a secret
    now = datetime.now(OSLO)
    found = []
    for _ in range(40):
        received = calendar.at_local_time(
            TODAY - timedelta(days=rng.randint(0, 70)), time(rng.randint(7, 22), 30)
        )
        received_on = calendar.local_date(received)
        assessed = None
        if rng.random() < 0.75:
            working_days = rng.choice([1, 4, 9, 10, 10, 11, 15])
            on = calendar.add_working_days(received_on, working_days)
            assessed = calendar.at_local_time(on, time(rng.choice([8, 23]), 15))
            assessed = None if assessed > now else assessed
        decision = (
            None
            if assessed is None
            else rng.choice(["in-target-group"] * 3 + ["not-in-target-group"])
        )
        held = None
        if assessed is not None and decision == "in-target-group" and rng.random() < 0.7:
            held = assessed + timedelta(days=rng.randint(1, 30))
            held = None if held > now else held
        closed = None
        if rng.random() < 0.2:
            closed = received + timedelta(days=rng.randint(1, 40))
            closed = None if closed > now else closed
        found.append(
            Referral(
                workflow_id=f"rop-N-{uuid.uuid4().hex[:10]}",
                received_at=received,
                decision=decision,
                assessed_at=assessed,
                held_at=held,
                closed_at=closed,
            )
        )
    return found


async def _write(owner: asyncpg.Pool, trust: str, referrals: list[Referral]) -> None:
    """The rows the steps would write: the pathway, then its events in order."""
    for r in referrals:
        await owner.execute(
            """INSERT INTO pathways (workflow_id, referral_id, received_at, source, referrer,
                   receiving_unit, health_trust, municipality, responsible_clinician,
                   patient_reference, phase, meeting_deadline, assessment_decision, closed_at)
               VALUES ($1, $1, $2, 'fastlege', '9000001', 'TSB', $3, '4601', '9000123', 'x',
                       $4, $5, $6, $7)""",
            r.workflow_id,
            r.received_at,
            trust,
            "closed" if r.closed_at else "follow-up",
            r.deadline,
            r.decision,
            r.closed_at,
        )
        events: list[tuple[str, datetime, dict[str, object]]] = []
        if r.assessed_at:
            events.append(("assessed", r.assessed_at, {"decision": r.decision}))
        if r.held_at:
            events.append(("meeting-held", r.held_at, {"held_at": r.held_at.isoformat()}))
        for sequence, (kind, at, details) in enumerate(events):
            await owner.execute(
                "INSERT INTO pathway_events (idempotency_key, workflow_id, kind, actor, "
                "occurred_at, details) VALUES ($1, $2, $3, 'x', $4, $5::jsonb)",
                f"{r.workflow_id}/{sequence}",
                r.workflow_id,
                kind,
                at,
                json.dumps(details),
            )


def _late_without_assessment(r: Referral) -> bool:
    return (
        r.assessed_at is None
        and r.deadline < TODAY
        and (r.closed_at is None or calendar.local_date(r.closed_at) > r.deadline)
    )


async def _check_national(pool: asyncpg.Pool, trust: str, referrals: list[Referral]) -> None:
    """The national indicators, overall and per month, equal this test's counts."""
    async with pool.acquire() as connection:
        found = await compute_indicators(connection, IndicatorQuery(health_trust=trust))
        series = await compute_series(
            connection, IndicatorQuery(health_trust=trust), Period.MONTH, TODAY
        )

    def counted(chosen: list[Referral]) -> tuple[int, int, int, int, float | None]:
        assessed = [r for r in chosen if r.assessed_at]
        in_time = [
            r
            for r in assessed
            if r.assessed_at and calendar.local_date(r.assessed_at) <= r.deadline
        ]
        days = [
            calendar.working_days_between(r.received_on, calendar.local_date(r.held_at))
            for r in chosen
            if r.held_at
        ]
        late = [r for r in chosen if _late_without_assessment(r)]
        return (
            len(assessed),
            len(in_time),
            len(late),
            len(days),
            float(statistics.median(days)) if days else None,
        )

    def shown(i: Indicators) -> tuple[int, int, int, int, float | None]:
        return (
            i.assessed,
            i.assessed_in_time,
            i.late_without_assessment,
            i.meetings_held,
            i.median_working_days_to_meeting,
        )

    expected = counted(referrals)
    assert shown(found) == expected
    assessed, in_time, late, _, _ = expected
    assert found.assessed_in_time_share == round(in_time / (assessed + late), 3)
    # The script reaches each case: in time, late, late without an assessment, a meeting.
    assert 0 < in_time < assessed
    assert late > 0
    assert expected[3] > 3
    for point in series:
        month = [r for r in referrals if r.received_on.strftime("%Y-%m") == point.period]
        assert shown(point.indicators) == counted(month), point.period


async def _kept_and_recomputed(
    pool: asyncpg.Pool, workflow_ids: list[str]
) -> tuple[set[tuple[object, ...]], set[tuple[object, ...]]]:
    recomputed = await pool.fetch(
        "SELECT * FROM rop_facts_from_events() WHERE workflow_id = ANY ($1)", workflow_ids
    )
    columns = ", ".join(recomputed[0].keys())  # every column but the generated ones
    kept = await pool.fetch(
        f"SELECT {columns} FROM pathway_facts WHERE workflow_id = ANY ($1)",  # noqa: S608
        workflow_ids,
    )

    def rows(records: list[asyncpg.Record]) -> set[tuple[object, ...]]:
        return {
            tuple(tuple(sorted(v)) if isinstance(v, list) else v for v in record.values())
            for record in records
        }

    return rows(kept), rows(recomputed)


async def test_the_kept_facts_equal_the_facts_recomputed_from_the_event_log(
    owner_pool: asyncpg.Pool,
) -> None:
    trust = f"helse-facts-{uuid.uuid4().hex[:6]}"
    people = population._population(seed=25)  # revisions, closures, cancelled FACT measures
    referrals = _referrals(seed=25)
    await population._write(owner_pool, trust, people)
    await _write(owner_pool, trust, referrals)
    ids = [p.workflow_id for p in people] + [r.workflow_id for r in referrals]

    kept, recomputed = await _kept_and_recomputed(owner_pool, ids)
    assert len(kept) == len(ids)
    assert kept == recomputed
    facts = {
        row["workflow_id"]: row
        for row in await owner_pool.fetch(
            "SELECT * FROM pathway_facts WHERE workflow_id = ANY ($1)", ids
        )
    }
    # FACT follow-up: an ACT/FACT measure of the current plan, never cancelled.
    for p in people:
        expected = population._has_fact(p) and not p.fact_cancelled
        assert facts[p.workflow_id]["has_fact_measure"] is expected, p.workflow_id
    assert any(p.fact_cancelled for p in people)
    for r in referrals:
        assert facts[r.workflow_id]["assessment_deadline"] == r.deadline


async def test_the_national_indicators_equal_the_scripts_own_counts(
    owner_pool: asyncpg.Pool, api_pool: asyncpg.Pool
) -> None:
    trust = f"helse-nat-{uuid.uuid4().hex[:6]}"
    referrals = _referrals(seed=11)
    await _write(owner_pool, trust, referrals)
    await _check_national(api_pool, trust, referrals)  # as the API's role reads them


async def test_the_api_role_reads_facts_and_no_step_content(api_pool: asyncpg.Pool) -> None:
    assert await api_pool.fetchval("SELECT count(*) >= 0 FROM pathway_facts")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await api_pool.fetchval("SELECT count(*) FROM rop_facts_from_events()")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await api_pool.fetchval("SELECT count(*) FROM pathway_events")


@pytest_asyncio.fixture
async def database_before_facts(database_server_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A records database as the release before the facts table left it."""
    url = await ensure_database(database_server_url, f"rop_facts_{uuid.uuid4().hex[:10]}")
    owner = await create_pool(url)
    await migrate(owner, [m for m in migration_files() if m[1] < "0014"])
    yield owner
    await owner.close()


async def test_the_migration_fills_the_facts_of_records_from_before(
    database_before_facts: asyncpg.Pool,
) -> None:
    owner = database_before_facts
    trust = f"helse-old-{uuid.uuid4().hex[:6]}"
    people = population._population(seed=3)
    referrals = _referrals(seed=3)
    await population._write(owner, trust, people)
    await _write(owner, trust, referrals)

    assert (await migrate(owner))[0] == "0014_pathway_facts.sql"
    ids = [p.workflow_id for p in people] + [r.workflow_id for r in referrals]
    kept, recomputed = await _kept_and_recomputed(owner, ids)
    assert len(kept) == len(ids)
    assert kept == recomputed
    await _check_national(owner, trust, referrals)
    async with owner.acquire() as connection:
        found = await compute_indicators(
            connection, IndicatorQuery(health_trust=trust, to_date=TODAY)
        )
    active = [p for p in people if population._active(p)]
    assert found.crisis_plans_made_with_patient == sum(
        1 for p in people if p.crisis_plans and p.crisis_plans[-1][0]
    )
    [coverage] = [c for c in found.fact_coverage if c.health_trust == trust]
    assert coverage.patients_with_fact_measure == len(
        [p for p in active if population._has_fact(p) and not p.fact_cancelled]
    )


async def test_working_days_in_sql_are_the_calendars(owner_pool: asyncpg.Pool) -> None:
    holidays = {row["day"] for row in await owner_pool.fetch("SELECT day FROM public_holidays")}
    assert holidays == set(calendar._HOLIDAYS)
    rng = random.Random(0)  # noqa: S311
    starts = [date(2026, 3, 25), date(2026, 12, 18), date(2027, 5, 10)] + [
        date(2020, 1, 1) + timedelta(days=rng.randint(0, 7000)) for _ in range(60)
    ]
    for start in starts:
        for count in (1, 5, 10, 20):
            assert await owner_pool.fetchval(
                "SELECT rop_add_working_days($1, $2)", start, count
            ) == calendar.add_working_days(start, count), (start, count)
        end = start + timedelta(days=rng.randint(-3, 60))
        assert await owner_pool.fetchval(
            "SELECT rop_working_days_between($1, $2)", start, end
        ) == calendar.working_days_between(start, end), (start, end)
