"""FHIR Task search and claims for an EPJ's worklist, through the HTTP API running for real on
PostgreSQL: 200 tasks seeded through the record service's own statements (as the workflow
writes them), searched by owner, status, kind, pathway and due date, paged to the end; the
answers compared with the test's own sets, the resources with fhir.resources' R4 models."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import asyncpg
import pytest
import pytest_asyncio
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.searchparameter import SearchParameter
from fhir.resources.R4B.task import Task
from temporalio.testing import ActivityEnvironment

from activities.records import RecordActivities
from rop_domain.calendar import OSLO
from rop_domain.commands import CloseTasks, EventKind, NewPathway, PathwayStep
from rop_domain.models import ValidationPolicy, parse_referral
from rop_domain.tasks import TaskKind, TaskStatus
from starter.api.auth import Principal, Role
from starter.api.context import ApiContext, change_task_owner
from starter.api.problems import ProblemError
from starter.fhir.systems import HPR
from tests import factories
from tests.api_harness import Api

PATHWAYS = 50
CLINICIANS = ("9100001", "9100002", "9100003")
NOW = datetime.now(UTC)


@dataclass(frozen=True)
class Seeded:
    """The seeded tasks as the test knows them: by task key, owner, status and due date."""

    trust: str
    municipality: str
    owner: dict[str, str]
    status: dict[str, TaskStatus]
    due: dict[str, datetime]
    workflow_ids: list[str]

    def keys(self, **where: Any) -> set[str]:
        return {
            key
            for key in self.owner
            if all(getattr(self, name)[key] == value for name, value in where.items())
        }


@pytest_asyncio.fixture(scope="module")
async def seeded(api: Api, pool: asyncpg.Pool) -> Seeded:
    """50 pathways of a health trust of this test's own, 4 tasks each: the receiving
    clinician's assessment (half of them completed), invitations to the unit's TSB and PHV
    contact points and to the municipality; due dates from 10 days ago to 10 days ahead."""
    trust = f"helse-{uuid.uuid4().hex[:8]}"
    records = RecordActivities(pool)
    environment = ActivityEnvironment()
    owner: dict[str, str] = {}
    status: dict[str, TaskStatus] = {}
    due: dict[str, datetime] = {}
    workflow_ids = []
    for number in range(PATHWAYS):
        clinician = CLINICIANS[number % len(CLINICIANS)]
        data = factories.referral_data(
            NOW - timedelta(days=20),
            health_trust=trust,
            receiving_unit="TSB",
            municipality="4601",
            responsible_clinician=clinician,
        )
        referral = parse_referral(data, ValidationPolicy(allow_synthetic_ids=True))
        wid = referral.workflow_id
        workflow_ids.append(wid)
        when = NOW + timedelta(hours=(number - PATHWAYS // 2) * 9.5)
        assess = factories.task(wid, "1-assess", TaskKind.ASSESS_REFERRAL, clinician, due=when)
        await environment.run(
            records.open_pathway,
            NewPathway(
                workflow_id=wid,
                referral=referral,
                meeting_deadline=when.date(),
                notifications=[assess],
            ),
        )
        owner[assess.idempotency_key] = f"Practitioner/{clinician}"
        status[assess.idempotency_key] = TaskStatus.REQUESTED
        due[assess.idempotency_key] = when
        invitations = [
            factories.task(
                wid, f"2-{role}", TaskKind.MEETING_INVITATION, f"{role}@example.invalid",
                party=role, due=when + timedelta(hours=1),
            )
            for role in ("tsb", "phv", "kommune")
        ]  # fmt: skip
        closes = []
        if number % 2 == 0:
            closes = [CloseTasks(workflow_id=wid, kinds=[TaskKind.ASSESS_REFERRAL], status=TaskStatus.COMPLETED)]  # fmt: skip
            status[assess.idempotency_key] = TaskStatus.COMPLETED
        step = PathwayStep(
            events=[factories.event(wid, "2-invited", EventKind.MEETING_INVITED, clinician, {})],
            notifications=invitations,
            close_tasks=closes,
        )
        await environment.run(records.record_step, step)
        for invitation, team in zip(
            invitations,
            (f"CareTeam/{trust}.TSB", f"CareTeam/{trust}.PHV", "Organization/municipality-4601"),
            strict=True,
        ):
            owner[invitation.idempotency_key] = team
            status[invitation.idempotency_key] = TaskStatus.REQUESTED
            assert invitation.due_at is not None
            due[invitation.idempotency_key] = invitation.due_at
    return Seeded(trust, "4601", owner, status, due, workflow_ids)


def _unit_clinician(api: Api, seeded: Seeded, unit: str = "TSB") -> str:
    return api.idp.token(
        "unit-member", ["clinician"], hpr="9100999", units=[f"{seeded.trust}/{unit}"]
    )


async def _search(api: Api, token: str, params: dict[str, str]) -> list[dict[str, Any]]:
    """Every page of a search, following `next`; the Tasks, each valid R4."""
    found: list[dict[str, Any]] = []
    async with api.client(token=token) as client:
        url: str | None = "/fhir/Task"
        query: dict[str, str] | None = params
        while url is not None:
            answer = await client.get(url, params=query)
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"].startswith("application/fhir+json")
            bundle = answer.json()
            Bundle.model_validate(bundle)
            found += [entry["resource"] for entry in bundle.get("entry", [])]
            nexts = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
            url, query = (nexts[0], None) if nexts else (None, None)
    for resource in found:
        Task.model_validate(resource)
    return found


async def _keys(pool: asyncpg.Pool, tasks: list[dict[str, Any]]) -> list[str]:
    """The seeded keys of the Tasks found, in the order found."""
    rows = await pool.fetch(
        "SELECT id, idempotency_key FROM tasks WHERE id = ANY ($1::bigint[])",
        [int(task["id"]) for task in tasks],
    )
    by_id = {str(row["id"]): row["idempotency_key"] for row in rows}
    return [by_id[task["id"]] for task in tasks]


async def test_overdue_owner_and_status_searches_find_the_hand_counted_tasks(
    api: Api, pool: asyncpg.Pool, seeded: Seeded
) -> None:
    assert len(seeded.owner) == 200
    member = _unit_clinician(api, seeded)
    instant = datetime.now(UTC).isoformat()
    overdue = await _search(api, member, {"due": f"lt{instant}", "status": "requested"})
    expected = {key for key in seeded.keys(status=TaskStatus.REQUESTED) if seeded.due[key] < datetime.fromisoformat(instant)}  # fmt: skip
    assert set(await _keys(pool, overdue)) == expected
    assert 40 < len(expected) < 160
    team = f"CareTeam/{seeded.trust}.PHV"
    by_team = await _search(api, member, {"owner": team})
    assert set(await _keys(pool, by_team)) == seeded.keys(owner=team)
    assert {t["owner"]["reference"] for t in by_team} == {team}
    person = CLINICIANS[1]
    by_hpr = await _search(api, member, {"owner:identifier": f"{HPR}|{person}"})
    assert set(await _keys(pool, by_hpr)) == seeded.keys(owner=f"Practitioner/{person}")
    completed = await _search(api, member, {"status": "completed", "code": "assess-referral"})
    assert set(await _keys(pool, completed)) == seeded.keys(status=TaskStatus.COMPLETED)
    one = seeded.workflow_ids[7]
    of_one = await _search(api, member, {"focus": f"CarePlan/{one}"})
    assert {t["focus"]["reference"] for t in of_one} == {f"CarePlan/{one}"}
    assert len(of_one) == 4
    # A day, with a prefix: everything due from that day on (Oslo).
    day = (NOW + timedelta(days=3)).date().isoformat()
    later = await _search(api, member, {"due": f"ge{day}", "owner": team})
    # The day is Oslo's: a task due at 23:30 UTC the day before is due on it (00:30 in Oslo).
    oslo_days = {
        datetime.fromisoformat(t["restriction"]["period"]["end"]).astimezone(OSLO).date()
        for t in later
    }
    assert min(oslo_days).isoformat() >= day
    assert 0 < len(later) < len(by_team)


async def test_paging_by_due_date_is_complete_and_stable(
    api: Api, pool: asyncpg.Pool, seeded: Seeded
) -> None:
    member = _unit_clinician(api, seeded)
    found = await _search(api, member, {"_sort": "due", "_count": "7"})
    keys = await _keys(pool, found)
    assert len(keys) == len(set(keys)) == 200
    assert set(keys) == set(seeded.owner)
    dues = [t["restriction"]["period"]["end"] for t in found]
    assert [datetime.fromisoformat(d) for d in dues] == sorted(
        datetime.fromisoformat(d) for d in dues
    )
    # A task written between two pages: the pages after it neither repeat nor skip a row.
    async with api.client(token=member) as client:
        first = (await client.get("/fhir/Task", params={"_sort": "-due", "_count": "50"})).json()
        records = RecordActivities(pool)
        wid = seeded.workflow_ids[0]
        extra = factories.task(wid, "9-extra", TaskKind.MAKE_CRISIS_PLAN, CLINICIANS[0], due=NOW)
        step = PathwayStep(
            events=[factories.event(wid, "9-extra", EventKind.MEETING_INVITED, CLINICIANS[0], {})],
            notifications=[extra],
        )
        await ActivityEnvironment().run(records.record_step, step)
        rest: list[dict[str, Any]] = []
        nexts = [link["url"] for link in first["link"] if link["relation"] == "next"]
        while nexts:
            page = (await client.get(nexts[0])).json()
            rest += [entry["resource"] for entry in page.get("entry", [])]
            nexts = [link["url"] for link in page["link"] if link["relation"] == "next"]
    seen = await _keys(pool, [entry["resource"] for entry in first["entry"]] + rest)
    assert len(seen) == len(set(seen))
    assert set(seed for seed in seeded.owner) <= set(seen)


async def test_another_units_clinician_finds_none_and_reads_none(
    api: Api, pool: asyncpg.Pool, seeded: Seeded
) -> None:
    stranger = api.idp.token("stranger", ["clinician"], hpr="9100998", units=["helse-annen/TSB"])
    assert await _search(api, stranger, {"owner": f"CareTeam/{seeded.trust}.TSB"}) == []
    assert await _search(api, stranger, {"focus": f"CarePlan/{seeded.workflow_ids[0]}"}) == []
    task_id = await pool.fetchval(
        "SELECT id FROM tasks WHERE workflow_id = $1 ORDER BY id LIMIT 1", seeded.workflow_ids[0]
    )
    async with api.client(token=stranger) as client:
        assert (await client.get(f"/fhir/Task/{task_id}")).status_code == 404
    async with api.client(token=_unit_clinician(api, seeded)) as client:
        read = await client.get(f"/fhir/Task/{task_id}")
    assert read.status_code == 200, read.text
    task = Task.model_validate(read.json())
    assert read.headers["etag"] == f'W/"{task.meta.versionId}"'  # type: ignore[union-attr]


async def test_bad_search_values_are_422_naming_the_parameter(api: Api, seeded: Seeded) -> None:
    async with api.client(Role.SYSTEM) as system:
        for params, field in (
            ({"owner": "Patient/1"}, "owner"),
            ({"owner:identifier": "urn:oid:1.2|9000123"}, "owner:identifier"),
            ({"status": "done"}, "status"),
            ({"code": "no-such-kind"}, "code"),
            ({"due": "soon"}, "due"),
            ({"focus": "Patient/rop-X-1"}, "focus"),
            ({"_page": "not-a-token"}, "_page"),
            # A token of the right shape whose sort value is no instant: refused, not a 500.
            ({"_sort": "due", "_page": _token(["due", "soon", 1])}, "_page"),
        ):
            answer = await system.get("/fhir/Task", params=params)
            assert answer.status_code == 422, params
            assert answer.json()["errors"][0]["field"] == field, answer.text


async def test_metadata_lists_the_searches_and_the_due_parameter(api: Api) -> None:
    async with api.client() as anyone:
        statement = (await anyone.get("/fhir/metadata")).json()
        parameter = (await anyone.get("/fhir/SearchParameter/task-due")).json()
    CapabilityStatement.model_validate(statement)
    SearchParameter.model_validate(parameter)
    (task,) = [r for r in statement["rest"][0]["resource"] if r["type"] == "Task"]
    searches = {p["name"]: p for p in task["searchParam"]}
    assert {"owner", "status", "code", "focus", "based-on", "authored-on", "due"} <= set(searches)
    assert searches["due"]["definition"] == parameter["url"]
    assert parameter["expression"] == "Task.restriction.period.end"


async def test_two_concurrent_claims_give_one_200_and_one_412_and_unclaim_gives_it_back(
    api: Api, pool: asyncpg.Pool, seeded: Seeded
) -> None:
    team = f"CareTeam/{seeded.trust}.TSB"
    unit = [f"{seeded.trust}/TSB"]
    first = api.idp.token("first", ["clinician"], hpr="9100981", units=unit)
    second = api.idp.token("second", ["clinician"], hpr="9100982", units=unit)
    (task, *_) = await _search(api, first, {"owner": team, "_count": "1"})
    path = f"/fhir/Task/{task['id']}"
    async with api.client(token=first) as one, api.client(token=second) as other:
        etag = (await one.get(path)).headers["etag"]
        assert (await one.post(f"{path}/$claim")).status_code == 428  # no If-Match
        answers = await asyncio.gather(
            one.post(f"{path}/$claim", headers={"If-Match": etag}),
            other.post(f"{path}/$claim", headers={"If-Match": etag}),
        )
        assert sorted(a.status_code for a in answers) == [200, 412], [a.text for a in answers]
        (won,) = [a for a in answers if a.status_code == 200]
        claimed = Task.model_validate(won.json())
        winner = "9100981" if won is answers[0] else "9100982"
        assert won.json()["owner"]["identifier"] == {"system": HPR, "value": winner}
        assert won.json()["extension"][0]["valueReference"]["reference"] == team
        assert won.headers["etag"] == f'W/"{claimed.meta.versionId}"'  # type: ignore[union-attr]
        # Found as the claimer's, no longer as the unit's.
        mine = await _search(api, first, {"owner:identifier": f"{HPR}|{winner}"})
        assert task["id"] in {t["id"] for t in mine}
        assert task["id"] not in {t["id"] for t in await _search(api, first, {"owner": team})}
        # A stale version is refused; the unit's other member gives it back at the new one.
        stale = await other.post(f"{path}/$unclaim", headers={"If-Match": etag})
        assert stale.status_code == 412
        back = await other.post(f"{path}/$unclaim", headers={"If-Match": won.headers["etag"]})
        assert back.status_code == 200, back.text
        assert back.json()["owner"]["reference"] == team
        assert "extension" not in back.json()
    changes = await pool.fetch(
        "SELECT version, change, by_person FROM task_changes WHERE task_id = $1 ORDER BY version",
        int(task["id"]),
    )
    assert [tuple(row) for row in changes] == [(2, "claimed", winner), (3, "unclaimed", "9100982")]
    owner_pool = await asyncpg.connect(api.database_url)
    try:
        logged = await owner_pool.fetch(
            "SELECT action, outcome FROM access_log WHERE action LIKE $1 ORDER BY id",
            f"%claim task {task['id']}%",
        )
    finally:
        await owner_pool.close()
    claim_, unclaim_ = f"claim task {task['id']}", f"unclaim task {task['id']}"
    shown = [(row["action"].split(":")[0], row["outcome"]) for row in logged]
    # The two claims in either order (they ran at once), then the stale and the good unclaim.
    assert sorted(shown[:2]) == [(claim_, "ok"), (claim_, "rejected")]
    assert shown[2:] == [(unclaim_, "rejected"), (unclaim_, "ok")]


async def test_only_a_unit_task_of_ones_own_unit_is_claimed(
    api: Api, pool: asyncpg.Pool, seeded: Seeded
) -> None:
    member = api.idp.token("member", ["clinician"], hpr="9100983", units=[f"{seeded.trust}/TSB"])
    person = CLINICIANS[0]
    (own, *_) = await _search(api, member, {"owner:identifier": f"{HPR}|{person}", "status": "requested"})  # fmt: skip
    (other_team, *_) = await _search(api, member, {"owner": f"CareTeam/{seeded.trust}.PHV"})
    stranger = api.idp.token("stranger", ["clinician"], hpr="9100984", units=["helse-annen/TSB"])
    async with api.client(token=member) as client, api.client(token=stranger) as outsider:
        for task, status in ((own, 409), (other_team, 403)):
            path = f"/fhir/Task/{task['id']}"
            etag = (await client.get(path)).headers["etag"]
            refused = await client.post(f"{path}/$claim", headers={"If-Match": etag})
            assert refused.status_code == status, refused.text
        path = f"/fhir/Task/{other_team['id']}/$claim"
        assert (await outsider.post(path, headers={"If-Match": 'W/"1"'})).status_code == 404
    async with api.client(Role.SYSTEM) as system:  # a service has no HPR number to own it
        path = f"/fhir/Task/{other_team['id']}/$claim"
        assert (await system.post(path, headers={"If-Match": 'W/"1"'})).status_code == 403


def _token(parts: list[object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode().rstrip("=")


async def test_a_sign_in_that_may_not_write_claims_nothing(
    api: Api, api_pool: asyncpg.Pool, seeded: Seeded
) -> None:
    """The API and the worklist claim through one function; a HelseID sign-in below the
    assurance level writes need is refused there, logged as denied, the task unchanged."""
    (task, *_) = await _search(
        api, _unit_clinician(api, seeded), {"owner": f"CareTeam/{seeded.trust}.TSB", "_count": "1"}
    )
    ctx = ApiContext(
        pathways=cast(Any, None), pool=api_pool, authenticator=cast(Any, None),
        policy=ValidationPolicy(),
    )  # fmt: skip
    reader = Principal(
        "reader", frozenset({Role.CLINICIAN}), actor="9100985",
        units=frozenset({f"{seeded.trust}/TSB"}), may_write=False,
    )  # fmt: skip
    version = int(task["meta"]["versionId"])
    with pytest.raises(ProblemError) as refused:
        await change_task_owner(
            ctx, reader, int(task["id"]), "rop-X-1", version, claiming=True, action="claim test"
        )
    assert refused.value.problem.status == 403
    row = await api_pool.fetchrow("SELECT claimed_by, version FROM tasks WHERE id = $1", int(task["id"]))  # fmt: skip
    assert row is not None
    assert (row["claimed_by"], row["version"]) == (None, version)
