"""Who a pathway names, as data: written with each step, filled by the migration, and the
same grounds the old search of the event log granted, less what it should never have.

A scripted population of 30 pathways is written through the record service (the step
statement the worker runs), with the shapes the workflow gives its steps: referrals from
GPs and NAV, assessments (some with an HPR number as their reason), invitations, meetings
with koordinator, crisis-plan responsible and measures (responsible people and units),
plan revisions, and steps recorded by people named nowhere else (as a step taken by
breaking the glass is). Then:

- the migration's fill (0012), run again on the same records, gives the rows the step
  statement wrote;
- for every pathway and every HPR number of the script, the table grants exactly what
  0008's `rop_need_of_service` granted, except a person named only in free text or only as
  the one who recorded a step.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest_asyncio
from temporalio.testing import ActivityEnvironment

from activities.database import create_pool, migrate, migration_files
from activities.records import RecordActivities
from rop_domain.commands import EventKind, NewPathway, PathwayStep
from rop_domain.followup import IndividualPlanStatus, Measure, MeasureKind, MeetingOutcome, Provider
from rop_domain.models import Assessment, AssessmentDecision, ParticipantRole
from rop_domain.tasks import TaskKind
from starter.local_stack import ensure_database
from tests import factories

PEOPLE = [f"90{n:05d}" for n in range(1000, 1012)]
"""The HPR numbers the script draws from."""
OUTSIDER = "9099999"
"""Records steps but is named in no typed field (as one who broke the glass)."""
NOTED = "9088888"
"""Stands only in free text (an assessment's reason)."""


def _old_function() -> str:
    """Migration 0008's `rop_need_of_service`, as it was, under another name in pg_temp."""
    [sql] = [sql for _, name, sql in migration_files() if name == "0008_need_of_service.sql"]
    start = sql.index("CREATE FUNCTION rop_need_of_service(")
    body = sql[start : sql.index("$$;", start) + 3]
    return body.replace("rop_need_of_service(", "pg_temp.old_need_of_service(", 1)


@dataclass
class Script:
    workflow_id: str
    actors: set[str] = field(default_factory=set)
    noted: set[str] = field(default_factory=set)


@pytest_asyncio.fixture
async def owner(database_server_url: str) -> AsyncIterator[asyncpg.Pool]:
    url = await ensure_database(database_server_url, f"rop_parties_{uuid.uuid4().hex[:10]}")
    pool = await create_pool(url)
    await migrate(pool)
    yield pool
    await pool.close()


async def _write_population(pool: asyncpg.Pool, seed: int) -> list[Script]:
    chance = random.Random(seed)  # noqa: S311 - a test's script, not a secret
    records = RecordActivities(pool)
    env = ActivityEnvironment()
    scripts = []
    for number in range(30):
        data = factories.referral_data(
            datetime.now(UTC) - timedelta(days=chance.randint(0, 60)),
            referral_id=f"PARTY-{seed}-{number}",
            responsible_clinician=chance.choice(PEOPLE),
            general_practitioner=chance.choice([*PEOPLE, None]),
            source=(source := chance.choice(["fastlege", "nav"])),
            referrer=chance.choice(PEOPLE) if source == "fastlege" else "nav-bergenhus",
        )
        referral = factories.parse_referral_for_test(data)
        wid = referral.workflow_id
        script = Script(wid)
        scripts.append(script)
        await env.run(
            records.open_pathway,
            NewPathway(
                workflow_id=wid,
                referral=referral,
                meeting_deadline=datetime.now(UTC).date(),
                notifications=[
                    factories.task(
                        wid, "1-assess", TaskKind.ASSESS_REFERRAL, referral.responsible_clinician
                    )
                ],
            ),
        )
        assessor = chance.choice([*PEOPLE, OUTSIDER])
        reason = NOTED if chance.random() < 0.3 else "Samtidig rus og psykisk lidelse"
        script.actors.add(assessor)
        if reason == NOTED:
            script.noted.add(NOTED)
        assessment = Assessment(
            assessor=assessor, decision=AssessmentDecision.IN_TARGET_GROUP, reason=reason
        )
        steps = [
            PathwayStep(
                events=[
                    factories.event(
                        wid,
                        "2-assessed",
                        EventKind.ASSESSED,
                        assessor,
                        assessment.model_dump(mode="json"),
                    )
                ]
            )
        ]
        if chance.random() < 0.8:
            inviter = chance.choice([*PEOPLE, OUTSIDER])
            script.actors.add(inviter)
            steps.append(
                PathwayStep(
                    events=[
                        factories.event(
                            wid,
                            "3-invited",
                            EventKind.MEETING_INVITED,
                            inviter,
                            {"participants": ["tsb", "kommune"]},
                        )
                    ],
                    notifications=[
                        factories.task(
                            wid,
                            "3-tsb",
                            TaskKind.MEETING_INVITATION,
                            "tsb@example.invalid",
                            party=ParticipantRole.TSB.value,
                        ),
                        factories.task(  # names the unit, unless sent redacted
                            wid,
                            "3-phv",
                            TaskKind.MEETING_INVITATION,
                            "phv@example.invalid",
                            party=ParticipantRole.PHV.value,
                            redacted=chance.random() < 0.3,
                            params={
                                "referral_id": referral.referral_id,
                                "meeting_at": datetime.now(UTC).isoformat(),
                                "place": "DPS",
                            },
                        ),
                        factories.task(
                            wid,
                            "3-kommune",
                            TaskKind.MEETING_INVITATION,
                            "4601",
                            party=ParticipantRole.KOMMUNE.value,
                        ),
                    ],
                )
            )
            measures = [
                Measure(
                    id="poliklinikk",
                    kind=MeasureKind.OUTPATIENT,
                    provider=Provider.TSB,
                    # a person, or the unit's outpatient clinic (the unit is then named)
                    responsible=chance.choice([*PEOPLE, "tsb-poliklinikk"]),
                ),
                Measure(
                    id="bolig",
                    kind=MeasureKind.MUNICIPAL_HOUSING,
                    provider=Provider.KOMMUNE,
                    responsible=chance.choice(["4601", "bergen-bolig"]),
                ),
            ]
            outcome = MeetingOutcome(
                recorded_by=inviter,
                held_at=datetime.now(UTC),
                attendees=["PHV", "TSB"],
                koordinator=chance.choice(PEOPLE),
                individual_plan=IndividualPlanStatus.OFFERED,
                crisis_plan_responsible=chance.choice(PEOPLE),
                measures=measures,
            )
            steps.append(
                PathwayStep(
                    events=[
                        factories.event(
                            wid,
                            "4-held",
                            EventKind.MEETING_HELD,
                            inviter,
                            outcome.model_dump(mode="json"),
                        )
                    ],
                    notifications=[
                        factories.task(
                            wid,
                            "4-crisis",
                            TaskKind.MAKE_CRISIS_PLAN,
                            outcome.crisis_plan_responsible,
                        ),
                        *(
                            factories.task(
                                wid,
                                f"4-{m.id}",
                                TaskKind.START_MEASURE,
                                m.responsible,
                                party=m.provider.value,
                                redacted=False,
                                params={
                                    "referral_id": referral.referral_id,
                                    "measure_id": m.id,
                                    "measure_kind": m.kind.value,
                                },
                            )
                            for m in measures
                        ),
                    ],
                )
            )
            if chance.random() < 0.5:
                revised = [
                    m.model_copy(update={"responsible": chance.choice(PEOPLE)}) for m in measures
                ]
                steps.append(
                    PathwayStep(
                        events=[
                            factories.event(
                                wid,
                                "5-revised",
                                EventKind.PLAN_REVISED,
                                outcome.koordinator,
                                {
                                    "reason": "ny vurdering",
                                    "plan_version": 2,
                                    "previous_plan": [m.model_dump(mode="json") for m in measures],
                                    "plan": [m.model_dump(mode="json") for m in revised],
                                },
                            )
                        ]
                    )
                )
                script.actors.add(outcome.koordinator)
        for step in steps:
            await env.run(records.record_step, step)
    return scripts


async def _rows(pool: asyncpg.Pool) -> set[tuple[str, ...]]:
    return {
        tuple(row)
        for row in await pool.fetch(
            "SELECT workflow_id, party_type, party, named_as, step_key FROM pathway_parties"
        )
    }


def _fill_statements() -> str:
    """The parts of migrations 0012 and 0023 that fill the table from the records."""
    sql = {name: sql for _, name, sql in migration_files()}
    parties = sql["0012_pathway_parties.sql"]
    start = parties.index("-- From today's records")
    return (
        parties[start : parties.index("-- Need of service from the table")]
        + sql["0023_unit_tasks_name_their_unit.sql"]
    )


async def test_the_migration_fills_what_the_steps_write_and_grants_what_0008_granted(
    owner: asyncpg.Pool,
) -> None:
    scripts = await _write_population(owner, seed=24)
    written = await _rows(owner)
    assert len(written) > 30 * 5

    units = {(row[2], row[3]) for row in written if row[1] == "unit"}
    assert ("helse-bergen/PHV", "invited") in units  # an invitation sent to the unit
    assert ("helse-bergen/TSB", "measure-provider") in units  # a measure for the unit
    redacted = await owner.fetch(
        "SELECT workflow_id FROM tasks WHERE idempotency_key LIKE '%/3-phv' AND redacted"
    )
    assert redacted  # the script reaches a redacted invitation, which names nobody
    assert not {(r["workflow_id"], "helse-bergen/PHV") for r in redacted} & {
        (row[0], row[2]) for row in written
    }

    # The fill from the records alone gives the same rows, step keys included.
    await owner.execute("DELETE FROM pathway_parties")
    await owner.execute(_fill_statements())
    assert await _rows(owner) == written

    # The same grounds as 0008's search, less free text and acting.
    differences = []
    async with owner.acquire() as connection:
        await connection.execute(_old_function())
        for script in scripts:
            for person in [*PEOPLE, OUTSIDER, NOTED, "4601"]:
                old = await connection.fetchval(
                    "SELECT pg_temp.old_need_of_service($1, '{}', $2, NULL)",
                    script.workflow_id,
                    person,
                )
                new = await connection.fetchval(
                    "SELECT rop_need_of_service($1, '{}', $2, NULL)", script.workflow_id, person
                )
                if old != new:
                    differences.append((script, person, old, new))
    for script, person, old, new in differences:
        assert (old, new) == ("participant", "none"), (script.workflow_id, person)
        named_in_typed_fields = {
            row[2] for row in written if row[0] == script.workflow_id and row[1] == "person"
        }
        assert person not in named_in_typed_fields
        assert person in script.actors | script.noted | {"4601"}, (script.workflow_id, person)
    # The script does reach each case the table refuses.
    refused = {person for _, person, _, _ in differences}
    assert {OUTSIDER, NOTED, "4601"} <= refused
    assert all(re.fullmatch(r"\d+", p) for p in refused)
