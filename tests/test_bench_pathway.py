"""The benchmark's pathway is a valid one: `make bench` is not a test, but the steps it
drives must keep passing the pathway's rules (issue 13's invite rule once broke it unseen)."""

from __future__ import annotations

import asyncpg
from temporalio.testing import WorkflowEnvironment

from bench.pathways import Timer, one_pathway
from rop_domain.models import Phase
from tests.pathway_harness import running_pathways


async def test_the_benchmark_pathway_runs_to_its_end(
    dev_server: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    timer = Timer()
    async with running_pathways(dev_server.client, pool, task_queue) as api:
        workflow_id = await one_pathway(api, timer)
        status = await api.status(workflow_id)
    assert status.phase is Phase.CLOSED
    assert len(timer.latencies) >= 6  # every step was sent and answered
