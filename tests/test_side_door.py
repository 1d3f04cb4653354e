"""Temporal is not a side door: payloads sent around the API, unencrypted, are refused.

Anyone who reaches the Temporal frontend could otherwise start or drive a pathway with
the `temporal` CLI, past the API's checks and its access log. These tests do exactly
that, with the real CLI against the real dev server, and find nothing applied.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import asyncpg
import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from rop_domain.steps import StepName
from rop_runtime.client import PLAIN_PAYLOAD_REFUSED
from starter.local_stack import packaged_binary
from tests import factories
from tests.pathway_harness import applied_events, close_and_end, running_pathways, start
from worker import build_worker


async def _temporal(address: str, *arguments: str) -> tuple[int, str]:
    """Run the real Temporal CLI against the dev server; its exit code and output."""
    process = await asyncio.create_subprocess_exec(
        packaged_binary("temporal"),
        *arguments,
        "--address",
        address,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_a_plain_update_sent_with_the_temporal_cli_is_not_applied(
    dev_server: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    client = dev_server.client
    address = client.service_client.config.target_host
    async with running_pathways(client, pool, task_queue) as api:
        workflow_id, handle = await start(client, api, factories.referral_data(datetime.now(UTC)))
        await api.send(StepName.ASSESS, workflow_id, factories.assessment())
        events_before = await applied_events(handle)

        code, output = await _temporal(
            address,
            "workflow",
            "update",
            "execute",
            "--workflow-id",
            workflow_id,
            "--name",
            "record_objection",
            "--input",
            json.dumps({"recorded_by": "forged"}),
        )
        assert code != 0
        assert "not encrypted with a known key" in output

        assert await applied_events(handle) == events_before
        assert (await api.status(workflow_id)).objection is None
        forged = await pool.fetchval(
            "SELECT count(*) FROM pathway_events WHERE workflow_id = $1 AND kind = "
            "'objection-recorded'",
            workflow_id,
        )
        assert forged == 0
        # The door still opens for those who hold the key.
        await close_and_end(api, handle)


async def test_a_plain_start_sent_with_the_temporal_cli_fails_and_records_nothing(
    dev_server: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    client = dev_server.client
    referral = factories.referral_data(datetime.now(UTC))
    workflow_id = f"rop-forged-{referral['referral_id']}"
    async with build_worker(client, pool, task_queue):
        code, output = await _temporal(
            client.service_client.config.target_host,
            "workflow",
            "start",
            "--type",
            "RopPathway",
            "--task-queue",
            task_queue,
            "--workflow-id",
            workflow_id,
            "--input",
            json.dumps({"referral": referral, "settings": {}}),
        )
        assert code == 0, output  # Temporal takes the start; the worker refuses its input
        with pytest.raises(WorkflowFailureError) as failed:
            await client.get_workflow_handle(workflow_id).result()
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == PLAIN_PAYLOAD_REFUSED
    assert (
        await pool.fetchval("SELECT count(*) FROM pathways WHERE workflow_id = $1", workflow_id)
        == 0
    )
