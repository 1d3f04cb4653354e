"""A pathway started by an older release continues on today's worker.

Replaying kept histories proves that today's code issues the same commands for what an old
release recorded; this goes one step further, as a deployment does: the old release's own
worker (a git worktree of its commit, run as a process) starts a pathway and takes a step,
stops, and today's worker takes the next step on the same Temporal server and record.

3ddfc4d is the release whose pathways carry the `deadline-day-at-noon-utc` patch marker,
which 39f5f56 removed without deprecating: every workflow task of such a pathway failed on
the code that followed (issue 26).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from rop_domain.models import Phase
from rop_domain.steps import StepName
from tests import factories
from tests.conftest import REPO, TEST_KEYS_ENV
from tests.pathway_harness import running_pathways

OLD_RELEASE = "3ddfc4d"

OLD_WORKER = """
import asyncio, os
from datetime import UTC, datetime
from activities.database import WORKER_ROLE, create_pool
from rop_domain.steps import StepName
from rop_runtime.client import connect
from rop_runtime.settings import RopSettings
from tests import factories
from tests.pathway_harness import pathways, start
from worker import build_worker

async def main() -> None:
    settings = RopSettings()
    client = await connect(settings)
    pool = await create_pool(os.environ["DATABASE_URL"], role=WORKER_ROLE)
    try:
        async with build_worker(client, pool, settings.task_queue):
            api = pathways(client, settings.task_queue)
            workflow_id, _ = await start(client, api, factories.referral_data(datetime.now(UTC)))
            await api.send(StepName.ASSESS, workflow_id, factories.assessment())
            print(workflow_id)
    finally:
        await pool.close()

asyncio.run(main())
"""


@pytest.fixture
def old_release(tmp_path: Path) -> Iterator[Path]:
    """The old release's tree, checked out beside this one (git worktree)."""
    present = subprocess.run(
        ["git", "-C", str(REPO), "cat-file", "-e", f"{OLD_RELEASE}^{{commit}}"],
        check=False,
        capture_output=True,
    )
    if present.returncode != 0:
        pytest.skip(f"{OLD_RELEASE} is not in this clone (a shallow one?): `git fetch --unshallow`")
    tree = tmp_path / OLD_RELEASE
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), OLD_RELEASE],
        check=True,
        capture_output=True,
    )
    try:
        yield tree
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
            check=False,
            capture_output=True,
        )


async def test_a_pathway_of_the_old_release_takes_its_next_step_on_todays_worker(
    dev_server: WorkflowEnvironment, pool: asyncpg.Pool, database_url: str, old_release: Path
) -> None:
    client = dev_server.client
    task_queue = f"rop-old-{uuid.uuid4().hex[:8]}"
    script = old_release / "old_worker.py"
    script.write_text(OLD_WORKER, encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        cwd=old_release,
        env={
            **os.environ,
            "PYTHONPATH": str(old_release),
            "ROP_TEMPORAL_ADDRESS": client.service_client.config.target_host,
            "ROP_TASK_QUEUE": task_queue,
            "ROP_PAYLOAD_KEYS": TEST_KEYS_ENV,
            "DATABASE_URL": database_url,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, err.decode()[-2000:]
    workflow_id = out.decode().split()[-1]
    handle = client.get_workflow_handle(workflow_id)
    history = await handle.fetch_history()
    patches = {
        json.loads(payload.data)["id"]
        for event in history.events
        if event.marker_recorded_event_attributes.marker_name == "core_patch"
        for payload in event.marker_recorded_event_attributes.details["patch-data"].payloads
    }
    assert "deadline-day-at-noon-utc" in patches  # the old release's marker

    async with running_pathways(client, pool, task_queue) as api:
        invited = await api.send(
            StepName.INVITE_TO_MEETING, workflow_id, factories.invite(datetime.now(UTC))
        )
        assert invited.phase is Phase.MEETING_INVITED
        kinds = await pool.fetch(
            "SELECT kind FROM pathway_events WHERE workflow_id = $1 ORDER BY id", workflow_id
        )
        assert [row["kind"] for row in kinds] == [
            "referral-received",
            "assessed",
            "meeting-invited",
        ]
        description = await handle.describe()
        assert description.status is not None
        assert description.status.name == "RUNNING"
        await api.send(StepName.CLOSE_PATHWAY, workflow_id, factories.closure())
