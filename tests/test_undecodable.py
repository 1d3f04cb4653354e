"""A payload the worker cannot open never stops a pathway, and a workflow id held by
something else is a clear 409.

Anyone who reaches the Temporal frontend can send a Signal, an Update or a start with a
payload encrypted under a key the worker lacks (or not at all). Each is refused as plain
payloads are: nothing applied, nothing recorded, no failed workflow task; the pathway keeps
answering and a later legitimate step is applied. Real dev server, worker and API.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from rop_domain.deadlines import PathwaySettings
from rop_domain.state import PathwayInput
from rop_runtime.client import data_converter
from rop_runtime.codec import EncryptionCodec
from starter.api.auth import Role
from tests import factories
from tests.api_harness import Api, problem_of

FOREIGN = EncryptionCodec({"nokey": bytes(range(1, 33))}, "nokey")
"""A key the worker does not have."""


async def _foreign_client(dev_server: WorkflowEnvironment) -> Client:
    return await Client.connect(
        dev_server.client.service_client.config.target_host,
        data_converter=data_converter(FOREIGN),
    )


async def _failed_tasks(dev_server: WorkflowEnvironment, workflow_id: str) -> int:
    history = await dev_server.client.get_workflow_handle(workflow_id).fetch_history()
    return sum(1 for e in history.events if e.HasField("workflow_task_failed_event_attributes"))


async def test_a_signal_and_an_update_the_worker_cannot_open_change_nothing(
    api: Api, dev_server: WorkflowEnvironment, owner_pool: asyncpg.Pool
) -> None:
    async with api.client(Role.SYSTEM) as system:
        created = await system.post("/referrals", json=factories.referral_data(datetime.now(UTC)))
        workflow_id = created.json()["workflow_id"]
        foreign = (await _foreign_client(dev_server)).get_workflow_handle(workflow_id)
        await foreign.signal("assess", factories.assessment())
        await foreign.signal("anything-at-all", "x")
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await foreign.execute_update("assess", factories.assessment())
        assert "key this process does not have" in str(refused.value.cause)
        # The pathway keeps answering, and a legitimate step is applied once.
        status = await system.get(f"/pathways/{workflow_id}")
        assert (status.status_code, status.json()["phase"]) == (200, "awaiting-assessment")
        assessed = await system.post(
            f"/pathways/{workflow_id}/assessment",
            json=factories.assessment().model_dump(mode="json"),
        )
        assert assessed.status_code == 200, assessed.text
    assert await _failed_tasks(dev_server, workflow_id) == 0
    assessed_events = await owner_pool.fetchval(
        "SELECT count(*) FROM pathway_events WHERE workflow_id = $1 AND kind = 'assessed'",
        workflow_id,
    )
    assert assessed_events == 1


async def test_a_start_the_worker_cannot_open_does_not_hold_the_referrals_id(
    api: Api, dev_server: WorkflowEnvironment, owner_pool: asyncpg.Pool
) -> None:
    data = factories.referral_data(datetime.now(UTC))
    referral = factories.parse_referral_for_test(data)
    foreign = await _foreign_client(dev_server)
    squat = await foreign.start_workflow(
        "RopPathway",
        PathwayInput(referral=referral, settings=PathwaySettings()),
        id=referral.workflow_id,
        task_queue=api.task_queue,
    )
    for _ in range(100):  # the worker refuses its input: the run fails at once
        if (await squat.describe()).status.name == "FAILED":  # type: ignore[union-attr]
            break
        await asyncio.sleep(0.1)
    assert (await squat.describe()).status.name == "FAILED"  # type: ignore[union-attr]
    assert (
        await owner_pool.fetchval(
            "SELECT count(*) FROM pathways WHERE workflow_id = $1", referral.workflow_id
        )
        == 0
    )
    async with api.client(Role.SYSTEM) as system:
        created = await system.post("/referrals", json=data)
        assert created.status_code == 201, created.text
        status = await system.get(f"/pathways/{referral.workflow_id}")
    assert status.status_code == 200


async def test_a_workflow_id_taken_by_something_else_is_a_409(
    api: Api, dev_server: WorkflowEnvironment
) -> None:
    data = factories.referral_data(datetime.now(UTC), referral_id=f"SQ-{uuid.uuid4().hex[:8]}")
    workflow_id = f"rop-{data['referral_id']}"
    await dev_server.client.start_workflow(
        "Squatter", "plain", id=workflow_id, task_queue=f"elsewhere-{uuid.uuid4().hex[:6]}"
    )
    async with api.client(Role.SYSTEM) as system:
        answer = await system.post("/referrals", json=data)
    assert answer.status_code == 409, answer.text
    assert "taken by a workflow of type Squatter" in problem_of(answer)["detail"]
    await dev_server.client.get_workflow_handle(workflow_id).terminate("test done")
