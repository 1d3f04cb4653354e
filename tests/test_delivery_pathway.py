"""Tasks of a real pathway reach their recipients by e-mail, exactly once, or are flagged."""

from __future__ import annotations

import json
from datetime import timedelta

import asyncpg
import httpx
import pytest
from pydantic import SecretStr
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.channels import WebhookChannel
from activities.delivery import DeliveryActivities
from rop_domain.commands import DELIVERY_WINDOW
from rop_domain.routing import Channel, Route, RoutingTable
from rop_domain.tasks import TaskKind
from starter.pathways import PathwayStepRejected
from starter.task_list import TaskFilter, list_tasks
from tests import factories
from tests.channel_servers import SECRET, Inbox, Receiver, SmtpServer, email_delivery
from tests.pathway_harness import close_and_end, eventually, pathways, running_pathways, start
from worker import build_worker
from workflows import search_attributes as sa


@pytest.fixture
def smtp() -> SmtpServer:
    return SmtpServer(Inbox())


async def test_smtp_down_during_delivery_then_up_delivers_one_message(
    time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str, smtp: SmtpServer
) -> None:
    env, client = time_skipping_env, time_skipping_env.client
    async with running_pathways(
        client, pool, task_queue, delivery=email_delivery(pool, smtp)
    ) as api:
        now = await env.get_current_time()
        workflow_id, handle = await start(client, api, factories.referral_data(now))
        await eventually(api, workflow_id, lambda s: bool(s.recommended_participants))
        await env.sleep(timedelta(seconds=15))  # the first attempts meet a closed port
        attempts = await pool.fetchval(
            "SELECT attempts FROM deliveries d JOIN tasks t ON t.id = d.task_id "
            "WHERE t.workflow_id = $1",
            workflow_id,
        )
        assert attempts >= 1
        assert smtp.inbox.messages == []
        smtp.start()
        try:
            await env.sleep(timedelta(minutes=5))
            status = await eventually(
                api,
                workflow_id,
                lambda s: len(smtp.inbox.messages) == 1,
            )
            assert status.failed_deliveries == 0
            [sent] = smtp.inbox.messages
            assert sent["Subject"].startswith("Vurder tilvising")  # nynorsk, as routed
            assert factories.national_id("150586951") not in sent.as_string()
            await close_and_end(api, handle)
            # The closure told the clinician too: one more message, still one per task.
            assert len(smtp.inbox.messages) == 2
        finally:
            smtp.stop()


async def test_a_delivery_that_gives_up_is_flagged_and_can_be_resent(
    time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str, smtp: SmtpServer
) -> None:
    env, client = time_skipping_env, time_skipping_env.client
    async with running_pathways(
        client, pool, task_queue, delivery=email_delivery(pool, smtp)
    ) as api:
        now = await env.get_current_time()
        workflow_id, handle = await start(client, api, factories.referral_data(now))
        await eventually(api, workflow_id, lambda s: bool(s.recommended_participants))
        started = await env.get_current_time()
        # Every attempt fails; the delivery keeps trying for DELIVERY_WINDOW, no less...
        await env.sleep(
            started + DELIVERY_WINDOW - timedelta(minutes=2) - await env.get_current_time()
        )
        delivery = await pool.fetchrow(
            "SELECT d.status, d.attempts FROM deliveries d JOIN tasks t ON t.id = d.task_id "
            "WHERE t.workflow_id = $1",
            workflow_id,
        )
        assert delivery is not None
        assert delivery["status"] == "sending"
        # 10 s doubling to an hour apart: 9 attempts in the first ~1.4 h, then hourly.
        assert 25 <= delivery["attempts"] <= 35
        assert (await handle.describe()).typed_search_attributes.get(sa.DELIVERY_FAILED) == 0
        assert (await api.status(workflow_id)).failed_deliveries == 0
        # ...and gives up when the window ends.
        await env.sleep(timedelta(minutes=3))
        failed = await eventually(api, workflow_id, lambda s: s.failed_deliveries == 1)
        assert failed.failed_deliveries == 1
        task_key = await pool.fetchval(
            "SELECT t.idempotency_key FROM deliveries d JOIN tasks t ON t.id = d.task_id "
            "WHERE t.workflow_id = $1",
            workflow_id,
        )
        search = (await handle.describe()).typed_search_attributes
        assert search.get(sa.DELIVERY_FAILED) == 1
        details = await _current_details(handle)
        assert "DELIVERY FAILED: 1 task(s) reached nobody" in details
        async with pool.acquire() as connection:
            [listed] = await list_tasks(
                connection, TaskFilter(workflow_id=workflow_id, delivery_failed=True)
            )
        assert listed.id == await pool.fetchval(
            "SELECT id FROM tasks WHERE idempotency_key = $1", task_key
        )
        assert (
            await pool.fetchval(
                "SELECT d.status FROM deliveries d JOIN tasks t ON t.id = d.task_id "
                "WHERE t.idempotency_key = $1",
                task_key,
            )
            == "failed"
        )

        with pytest.raises(PathwayStepRejected, match="no failed delivery"):
            await api.resend_notification(workflow_id, "nope")
        smtp.start()
        try:
            await api.resend_notification(workflow_id, task_key)
            await eventually(api, workflow_id, lambda s: len(smtp.inbox.messages) == 1)
            assert (await handle.describe()).typed_search_attributes.get(sa.DELIVERY_FAILED) == 0
            assert "DELIVERY FAILED" not in await _current_details(handle)
            async with pool.acquire() as connection:
                still_failed = TaskFilter(workflow_id=workflow_id, delivery_failed=True)
                assert await list_tasks(connection, still_failed) == []
                listed_now = await list_tasks(connection, TaskFilter(workflow_id=workflow_id))
                # The assessment, and the clinician's task to reach its recipient otherwise.
                assert [(t.id == listed.id, t.kind) for t in listed_now] == [
                    (True, TaskKind.ASSESS_REFERRAL),
                    (False, TaskKind.TASK_UNDELIVERED),
                ]
            await close_and_end(api, handle)
        finally:
            smtp.stop()


async def test_a_unit_with_a_webhook_gets_its_tasks_signed(
    time_skipping_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    receiver: tuple[str, Receiver],
) -> None:
    url, state = receiver
    env, client = time_skipping_env, time_skipping_env.client
    api = pathways(client, task_queue)
    routing = RoutingTable(
        routes=[Route(recipient=factories.CLINICIAN, channel=Channel.WEBHOOK, address=url)]
    )
    async with (
        httpx.AsyncClient() as http,
        build_worker(
            client,
            pool,
            task_queue,
            DeliveryActivities(pool, routing, webhook=WebhookChannel(SecretStr(SECRET), http)),
        ),
    ):
        now = await env.get_current_time()
        workflow_id, handle = await start(client, api, factories.referral_data(now))
        await eventually(api, workflow_id, lambda s: bool(s.recommended_participants))
        await close_and_end(api, handle)
    kinds = sorted(payload["kind"] for payload in state.accepted)
    assert kinds == ["assess-referral", "pathway-closed"]
    assert state.refused == []
    sent = json.dumps(state.accepted, ensure_ascii=False)
    assert factories.national_id("150586951") not in sent
    assert "pseudo-123" not in sent


async def _current_details(handle: WorkflowHandle[object, object]) -> str:
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return str(metadata.current_details)
