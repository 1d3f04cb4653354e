"""The worker and the API with logins that own nothing, as deploy/README tells an operator.

The schema owner migrates (`rop db migrate`); the worker's and the API's logins are only
members of `rop_worker` / `rop_api`. They do their work, and cannot switch the append-only
triggers off, become the owner, or read what their role may not, not even after
`RESET ROLE`. Each test has a database of its own on the session's PostgreSQL server.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import pytest_asyncio
from google.protobuf import json_format
from pydantic import BaseModel
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.contact_directory import load_directory
from activities.database import (
    API_ROLE,
    WORKER_ROLE,
    MigrationsPending,
    create_pool,
    migrate,
    migration_files,
    open_records,
)
from activities.delivery import DeliveryActivities
from activities.records import RecordActivities
from rop_domain.commands import (
    EventKind,
    LeaderQuery,
    NewPathway,
    Notification,
    PathwayEvent,
    PathwayStep,
    SummaryChange,
)
from rop_domain.models import ReceivingUnit
from rop_domain.routing import RoutingTable
from rop_domain.tasks import TaskKind
from rop_runtime.codec import Binding, EncryptionCodec
from rop_runtime.settings import RopSettings
from starter import access_log
from starter.access_log import Access, Outcome
from starter.api.auth import Role
from starter.api.server import authenticator_from_settings
from starter.codec_server import CodecDoor, start_codec_server
from starter.local_stack import ensure_database
from tests import factories
from tests.api_harness import Api, running_api
from tests.channel_servers import free_port
from tests.cli_harness import Cli
from tests.conftest import EXAMPLE_CONTACTS, TEST_KEY, TEST_KEY_ID

PASSWORD = "a-password-for-this-test"  # a throwaway login on a test server


def as_login(database_url: str, login: str) -> str:
    """`database_url` with another login and its password."""
    parts = urlsplit(database_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{login}:{PASSWORD}@{host}"))


@dataclass(frozen=True)
class Logins:
    owner: str
    worker: str
    api: str


@pytest_asyncio.fixture
async def logins(database_server_url: str) -> AsyncIterator[Logins]:
    """A database migrated by its owner, and a login for the worker and one for the API."""
    url = await ensure_database(database_server_url, f"rop_logins_{uuid.uuid4().hex[:10]}")
    suffix = uuid.uuid4().hex[:8]
    worker_login, api_login = f"worker_{suffix}", f"api_{suffix}"
    owner = await create_pool(url)
    try:
        await migrate(owner)
        await owner.execute(
            f"CREATE ROLE {worker_login} LOGIN PASSWORD '{PASSWORD}' IN ROLE {WORKER_ROLE}"
        )
        await owner.execute(
            f"CREATE ROLE {api_login} LOGIN PASSWORD '{PASSWORD}' IN ROLE {API_ROLE}"
        )
    finally:
        await owner.close()
    yield Logins(url, as_login(url, worker_login), as_login(url, api_login))


async def test_the_worker_does_its_work_with_a_login_that_owns_nothing(logins: Logins) -> None:
    pool = await open_records(logins.worker, WORKER_ROLE, migrate_first=False)
    try:
        records, env = RecordActivities(pool), ActivityEnvironment()
        referral = factories.parse_referral_for_test(factories.referral_data(datetime.now(UTC)))
        workflow_id = referral.workflow_id
        task = Notification(
            idempotency_key=f"{workflow_id}/1-assess",
            workflow_id=workflow_id,
            kind=TaskKind.ASSESS_REFERRAL,
            recipient=factories.CLINICIAN,
            params=factories.TASK_PARAMS,
        )
        await env.run(
            records.open_pathway,
            NewPathway(
                workflow_id=workflow_id,
                referral=referral,
                meeting_deadline=datetime.now(UTC).date(),
                notifications=[task],
            ),
        )
        step = PathwayStep(
            events=[
                PathwayEvent(
                    idempotency_key=f"{workflow_id}/2-overdue",
                    workflow_id=workflow_id,
                    kind=EventKind.MEETING_OVERDUE,
                    actor="rop-forlop",
                    occurred_at=datetime.now(UTC),
                    change=SummaryChange(overdue=True),
                )
            ]
        )
        assert await env.run(records.record_step, step) == []
        await env.run(
            records.find_unit_leader,
            LeaderQuery(health_trust="helse-bergen", receiving_unit=ReceivingUnit.TSB),
        )
        delivery = DeliveryActivities(pool, RoutingTable(email_unrouted_addresses=False))
        await env.run(delivery.give_up, task.idempotency_key)
        assert await pool.fetchval(
            "SELECT overdue FROM pathways WHERE workflow_id = $1", workflow_id
        )
    finally:
        await pool.close()


async def test_the_api_does_its_work_with_a_login_that_owns_nothing(logins: Logins) -> None:
    pool = await open_records(logins.api, API_ROLE, migrate_first=False)
    try:
        await access_log.record(
            pool,
            [Access(principal="key:test", roles="system", workflow_id="rop-T-1",
                    action="read status", outcome=Outcome.OK)],
        )  # fmt: skip
        assert await pool.fetchval("SELECT count(*) FROM access_log") == 1
        assert await pool.fetchval("SELECT count(*) FROM pathways") == 0
    finally:
        await pool.close()


@pytest.mark.parametrize(
    ("which", "statement"),
    [
        ("worker", "ALTER TABLE pathway_events DISABLE TRIGGER pathway_events_append_only"),
        ("api", "ALTER TABLE access_log DISABLE TRIGGER access_log_append_only"),
        ("worker", "DELETE FROM pathway_events"),
        ("api", "UPDATE access_log_head SET chain_seq = 0"),
        ("api", "SELECT patient_national_id FROM pathways"),
        ("api", "RESET ROLE; SELECT patient_national_id FROM pathways"),
        ("worker", "SET ROLE postgres"),
        ("api", "RESET ROLE; DROP TABLE access_log"),
    ],
)
async def test_the_service_logins_cannot_get_past_their_role(
    logins: Logins, which: str, statement: str
) -> None:
    role = WORKER_ROLE if which == "worker" else API_ROLE
    pool = await create_pool(getattr(logins, which), role=role)
    try:
        with pytest.raises((asyncpg.InsufficientPrivilegeError, asyncpg.RaiseError)):
            await pool.execute(statement)
    finally:
        await pool.close()


async def _rop(database_url: str, *arguments: str) -> tuple[int, str]:
    """`rop ARGUMENTS` on `database_url`: its exit code and what it printed."""
    code, out, err = await Cli.on_database(database_url)(*arguments)
    return code, (out + err).strip()


async def test_only_the_owner_migrates_and_services_wait_for_it(
    logins: Logins, database_server_url: str
) -> None:
    code, output = await _rop(logins.worker, "db", "migrate")
    assert code == 1
    assert output.splitlines()[-1].startswith("error: this login may not migrate")
    assert await _rop(logins.owner, "db", "migrate") == (0, "database is up to date")

    # A database one migration behind: the services stop with one line, before any work.
    behind = await ensure_database(database_server_url, f"rop_behind_{uuid.uuid4().hex[:10]}")
    *earlier, (last_version, last_name, _) = migration_files()
    owner = await create_pool(behind)
    try:
        await migrate(owner, earlier)
    finally:
        await owner.close()
    with pytest.raises(MigrationsPending, match=last_name):
        await open_records(behind, WORKER_ROLE, migrate_first=False)
    code, output = await _rop(behind, "worker")
    assert code == 1
    assert output.splitlines()[-1] == (
        f"error: the record database has migrations pending ({last_name}): run `rop db migrate` "
        "with the schema owner's login first"
    )
    assert last_version > 1


async def test_every_route_and_the_codec_server_work_with_logins_that_own_nothing(
    logins: Logins, dev_server: WorkflowEnvironment, tmp_path: Path
) -> None:
    """The whole API, a worker and the codec server on the service logins, through a
    pathway from referral to closure: every route reaches what its role grants."""
    owner = await create_pool(logins.owner)
    try:
        await load_directory(owner, EXAMPLE_CONTACTS)
    finally:
        await owner.close()
    worker_pool = await open_records(logins.worker, WORKER_ROLE, migrate_first=False)
    try:
        async with running_api(dev_server, worker_pool, logins.api, tmp_path) as api:
            workflow_id = await _drive_every_route(api)
            await _decode_through_the_codec_server(api, logins.api, workflow_id)
    finally:
        await worker_pool.close()


def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), f"{response.request.url}: {response.text}"
    body = response.json()
    return body if isinstance(body, dict) else {}


async def _drive_every_route(api: Api) -> str:
    now = datetime.now(UTC)
    async with (
        api.client(Role.SYSTEM) as system,
        api.client(Role.CLINICIAN) as clinician,
        api.client(Role.OPERATOR) as operator,
    ):
        workflow_id = str(
            _ok(await system.post("/referrals", json=factories.referral_data(now)))["workflow_id"]
        )
        for _ in range(100):  # the intake writes the record moments after
            if (await system.get(f"/pathways/{workflow_id}/fhir")).status_code == 200:
                break
            await asyncio.sleep(0.1)
        base = f"/pathways/{workflow_id}"
        _ok(await clinician.get(base))
        _ok(await clinician.get(f"{base}/fhir"))
        steps: list[tuple[httpx.AsyncClient, str, BaseModel | dict[str, Any]]] = [
            (clinician, "assessment", factories.assessment()),
            (clinician, "meeting-invite", factories.invite(now)),
            (clinician, "meeting", factories.meeting_held(datetime.now(UTC))),
            (system, "crisis-plan", factories.crisis_plan(now.date() + timedelta(days=90))),
            (clinician, "measures/start", {"measure_id": "poliklinikk", "by": factories.CLINICIAN}),
            (clinician, "measures/complete", {"measure_id": "poliklinikk", "by": factories.CLINICIAN}),
            (clinician, "measures/cancel",
             {"measure_id": "fact", "by": factories.CLINICIAN, "reason": "Ikke aktuelt nå"}),
            (clinician, "plan", {"revised_by": factories.CLINICIAN, "reason": "Ny plan",
                                 "measures": [m.model_dump(mode="json") for m in factories.measures()]}),
            (system, "review", {"reviewed_by": factories.KOORDINATOR, "outcome": "continue"}),
            (clinician, "objection", {"recorded_by": factories.CLINICIAN}),
        ]  # fmt: skip
        for client, path, body in steps:
            json_body = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
            _ok(await client.post(f"{base}/{path}", json=json_body))
            if path == "meeting-invite":  # an invitation is a task until the meeting
                tasks = (await clinician.get("/tasks", params={"workflow_id": workflow_id})).json()
                invitation = next(t for t in tasks if t["kind"] == "meeting-invitation")
                _ok(await clinician.post(f"/tasks/{invitation['id']}/complete", json={}))
        _ok(
            await clinician.post(
                f"{base}/closure", json={"closed_by": factories.CLINICIAN, "reason": "completed"}
            )
        )
        assert (await operator.get("/pathways")).status_code == 200
        assert (await operator.get("/indicators")).status_code == 200
        log = (await operator.get(f"{base}/access-log")).json()
    assert {row["grounds"] for row in log if row["principal"] == "key:test-clinician"} == {"unit"}
    return workflow_id


async def _decode_through_the_codec_server(api: Api, api_login: str, workflow_id: str) -> None:
    codec = EncryptionCodec({TEST_KEY_ID: TEST_KEY}, TEST_KEY_ID)
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"x": 1}')
    bound = codec.bound_to(Binding("default", workflow_id))  # as the worker seals them
    body = json_format.MessageToJson(Payloads(payloads=await bound.encode([plain])))
    pool = await open_records(api_login, API_ROLE, migrate_first=False)
    port = free_port()
    runner = await start_codec_server(
        codec,
        CodecDoor(pool=pool, authenticator=authenticator_from_settings(_api_settings(api))),
        ui_origin="http://localhost:8233",
        host="127.0.0.1",
        port=port,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            decoded = await http.post(
                "/decode",
                content=body,
                headers={"Authorization": f"Bearer {api.tokens[Role.CLINICIAN]}"},
            )
        assert decoded.status_code == 200, decoded.text
        assert json_format.Parse(decoded.content, Payloads()).payloads == [plain]
        assert (
            await pool.fetchval(
                "SELECT grounds FROM access_log WHERE workflow_id = $1 AND action LIKE 'decode%'",
                workflow_id,
            )
            == "unit"
        )
    finally:
        await runner.cleanup()
        await pool.close()


def _api_settings(api: Api) -> RopSettings:
    """The running API's key file: the codec server lets in whom the API lets in."""
    return RopSettings(api_tokens_file=api.tokens_file)


async def test_a_refused_login_and_an_unreachable_temporal_are_one_line(logins: Logins) -> None:
    """What an operator sees when a secret or an address is wrong: one line naming what was
    refused or unreachable (not a traceback), and never the password."""
    nobody = as_login(logins.owner, "nobody_has_this_login")
    for command in (["db", "migrate"], ["worker"], ["tasks"]):
        code, output = await _rop(nobody, *command)
        assert code == 1, command
        [line] = output.splitlines()[-1:]
        assert line.startswith("error: the record database refused login 'nobody_has_this_login'")
        assert "Traceback" not in output
        assert PASSWORD not in output

    cli = Cli(
        {
            **os.environ,
            "DATABASE_URL": logins.worker,
            "ROP_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        }
    )
    code, out, err = await cli("worker")
    assert code == 1
    assert "Traceback" not in out + err
    assert err.strip().splitlines()[-1].startswith("error: cannot reach Temporal at 127.0.0.1:")
