"""The benchmark's pathway is a valid one: `make bench` is not a test, but the steps it
drives must keep passing the pathway's rules (issue 13's invite rule once broke it unseen)."""

from __future__ import annotations

import asyncpg
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench import costs
from bench.baseline import (
    ANSWER_BYTES,
    UPDATES_PER_PATHWAY,
    BaselinePathway,
    CostVariant,
    Feature,
    FloorPathway,
    RecordingFloorPathway,
    baseline_noop,
)
from bench.floor_record import TABLE as FLOOR_TABLE
from bench.floor_record import FloorRecord
from bench.pathways import Timer, events_by_type, events_table, one_baseline, one_pathway
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


async def test_both_baselines_run_and_only_the_regular_one_schedules_activity_tasks(
    dev_server: WorkflowEnvironment, task_queue: str
) -> None:
    client = dev_server.client
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[BaselinePathway, FloorPathway],
        activities=[baseline_noop],
    ):
        regular = await one_baseline(client, task_queue, Timer())
        floor = await one_baseline(client, task_queue, Timer(), FloorPathway)
    by_type = {
        name: await events_by_type(client, [workflow_id])
        for name, workflow_id in (("regular", regular), ("floor", floor))
    }
    scheduled = "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"
    assert by_type["regular"][scheduled] == UPDATES_PER_PATHWAY
    assert by_type["floor"][scheduled] == 0
    assert by_type["floor"]["EVENT_TYPE_MARKER_RECORDED"] == UPDATES_PER_PATHWAY
    rows = {line.split()[0]: line.split()[1:] for line in events_table(by_type, 1).splitlines()[1:]}
    assert rows["MARKER_RECORDED"] == ["0.0", "6.0"]  # regular, floor: the table's columns


async def test_each_cost_variant_adds_what_it_names_to_the_floor(
    dev_server: WorkflowEnvironment, task_queue: str
) -> None:
    client = dev_server.client
    async with Worker(
        client, task_queue=costs.QUEUE, workflows=[CostVariant], activities=[baseline_noop]
    ):
        ids = {
            feature: await costs.one_variant(client, feature, Timer())
            for feature in (Feature.NONE, Feature.ALL)
        }
    floor = await events_by_type(client, [ids[Feature.NONE]])
    everything = await events_by_type(client, [ids[Feature.ALL]])
    added = everything - floor
    assert added["EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES"] == UPDATES_PER_PATHWAY + 1
    assert added["EVENT_TYPE_TIMER_STARTED"] == UPDATES_PER_PATHWAY - 1
    assert added["EVENT_TYPE_TIMER_CANCELED"] == UPDATES_PER_PATHWAY - 1
    assert added["EVENT_TYPE_MARKER_RECORDED"] == 1  # the patch's
    answers = await client.get_workflow_handle(ids[Feature.ALL]).fetch_history()
    completed = [
        e
        for e in answers.events
        if e.HasField("workflow_execution_update_completed_event_attributes")
    ]
    sizes = {
        len(e.workflow_execution_update_completed_event_attributes.outcome.success.payloads[0].data)
        for e in completed
    }
    assert min(sizes) > ANSWER_BYTES


async def test_the_recording_floor_writes_a_row_at_its_start_and_one_per_update(
    dev_server: WorkflowEnvironment, database_url: str, pool: asyncpg.Pool, task_queue: str
) -> None:
    owner = await asyncpg.connect(database_url)
    try:
        await owner.execute(FLOOR_TABLE)
    finally:
        await owner.close()
    client = dev_server.client
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[RecordingFloorPathway],
        activities=[FloorRecord(pool).write],
    ):
        workflow_id = await one_baseline(client, task_queue, Timer(), RecordingFloorPathway)
    steps = await pool.fetch(
        "SELECT step FROM bench_floor_steps WHERE workflow_id = $1 ORDER BY step", workflow_id
    )
    assert [row["step"] for row in steps] == list(range(UPDATES_PER_PATHWAY + 1))
    by_type = await events_by_type(client, [workflow_id])
    assert by_type["EVENT_TYPE_MARKER_RECORDED"] == UPDATES_PER_PATHWAY + 1  # local activities
    assert by_type["EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"] == 0
