"""Running the real pathway workflow with real activities against a test database."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from rop_domain.models import PathwaySettings, ValidationPolicy, parse_referral
from rop_domain.state import PathwayStatus
from starter.pathways import Pathways
from tests import factories
from workflows.pathway import RopPathway

HISTORIES = Path(__file__).resolve().parent / "histories"


def pathways(client: Client, task_queue: str, settings: PathwaySettings | None = None) -> Pathways:
    return Pathways(client, task_queue=task_queue, pathway_settings=settings)


async def start(
    client: Client, api: Pathways, data: dict[str, Any]
) -> tuple[str, WorkflowHandle[Any, Any]]:
    """Submit a referral through the same API the CLI uses; return its workflow id and handle."""
    # The edge's clock is the time-skipping server's, which runs ahead of the wall clock.
    policy = ValidationPolicy(
        allow_synthetic_ids=True, now=datetime.fromisoformat(data["received_at"])
    )
    referral = parse_referral(data, policy)
    submitted = await api.submit(referral)
    assert submitted.created
    return submitted.workflow_id, client.get_workflow_handle_for(
        RopPathway.run, submitted.workflow_id
    )


async def eventually(
    api: Pathways,
    workflow_id: str,
    condition: Callable[[PathwayStatus], bool],
    seconds: float = 15.0,
) -> PathwayStatus:
    """Poll `status` until `condition` holds: timers fire asynchronously after a skip."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        status = await api.status(workflow_id)
        if condition(status):
            return status
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition never held; last status: {status}")
        await asyncio.sleep(0.1)


async def save_history_if_recording(handle: WorkflowHandle[Any, Any], name: str) -> None:
    """With ROP_RECORD_HISTORIES=1, keep this run's history for the replay test."""
    if os.environ.get("ROP_RECORD_HISTORIES") != "1":
        return
    history = await handle.fetch_history()
    HISTORIES.mkdir(exist_ok=True)
    (HISTORIES / f"{name}.json").write_text(
        json.dumps(json.loads(history.to_json()), indent=1) + "\n", encoding="utf-8"
    )


async def hold_meeting(
    env: WorkflowEnvironment, api: Pathways, status: PathwayStatus, **outcome: Any
) -> PathwayStatus:
    """Skip to the invited meeting's time and record it as held then."""
    assert status.invite is not None
    meeting_at = status.invite.invite.meeting_at
    await env.sleep(meeting_at - await env.get_current_time() + timedelta(hours=1))
    return await api.record_meeting(
        status.workflow_id, factories.meeting_held(meeting_at, **outcome)
    )


async def to_follow_up(
    env: WorkflowEnvironment, client: Client, api: Pathways, **outcome: Any
) -> tuple[str, WorkflowHandle[Any, Any], PathwayStatus]:
    """A pathway through referral, assessment, invite and meeting, on time."""
    now = await env.get_current_time()
    workflow_id, handle = await start(client, api, factories.referral_data(now))
    await api.assess(workflow_id, factories.assessment())
    invited = await api.invite_to_meeting(workflow_id, factories.invite(now))
    held = await hold_meeting(env, api, invited, **outcome)
    return workflow_id, handle, held
