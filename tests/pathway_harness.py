"""Running the real pathway workflow with real activities against a test database."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from activities.delivery import DeliveryActivities
from activities.subscriptions import SubscriptionActivities
from rop_domain.deadlines import PathwaySettings
from rop_domain.models import ValidationPolicy, parse_referral
from rop_domain.state import PathwayOutcome
from rop_domain.steps import StepName
from rop_domain.tasks import TaskKind
from rop_domain.view import PathwayStatus
from rop_runtime.codec import binding_of
from starter.pathways import Pathways
from tests import factories, history_manifest
from worker import WorkerTuning, build_worker
from workflows.pathway import RopPathway

HISTORIES = Path(__file__).resolve().parent / "histories"
KEPT = HISTORIES / "kept.sha256"
"""Every kept history and its SHA-256: the replay test fails if one is changed or removed."""


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pathways(client: Client, task_queue: str, settings: PathwaySettings | None = None) -> Pathways:
    return Pathways(client, task_queue=task_queue, pathway_settings=settings)


@asynccontextmanager
async def running_pathways(
    client: Client,
    pool: asyncpg.Pool,
    task_queue: str,
    settings: PathwaySettings | None = None,
    *,
    delivery: DeliveryActivities | None = None,
    tuning: WorkerTuning | None = None,
    subscriptions: SubscriptionActivities | None = None,
) -> AsyncIterator[Pathways]:
    """A worker with the real activities on `task_queue`, and the Python API that starts
    pathways there (with `settings`); the worker stops when the block ends."""
    async with build_worker(
        client, pool, task_queue, delivery=delivery, tuning=tuning, subscriptions=subscriptions
    ):
        yield pathways(client, task_queue, settings)


async def close_and_end(api: Pathways, handle: WorkflowHandle[Any, Any]) -> PathwayOutcome:
    """Close the pathway and wait for its workflow to end; its outcome."""
    await api.send(StepName.CLOSE_PATHWAY, handle.id, factories.closure())
    outcome: PathwayOutcome = await handle.result()
    return outcome


async def tasks_of(
    pool: asyncpg.Pool, workflow_id: str, kind: TaskKind | None = None
) -> list[asyncpg.Record]:
    """The pathway's tasks as recorded (of one kind, or all), oldest first."""
    return await pool.fetch(
        "SELECT kind, recipient, status, subject, reference FROM tasks "
        "WHERE workflow_id = $1 AND ($2::text IS NULL OR kind = $2) ORDER BY id",
        workflow_id,
        kind,
    )


CHASE_TASKS = frozenset(
    kind for kind in TaskKind if kind.value.endswith(("-reminder", "-escalation"))
)
"""The reminders and escalations: each is due when what it chases is due."""


async def assert_chases_are_due(pool: asyncpg.Pool, workflow_id: str) -> int:
    """Every reminder and escalation of the pathway has a due date (so `rop tasks --overdue`
    lists it once past); return how many it has."""
    rows = await pool.fetch(
        "SELECT kind, due_at FROM tasks WHERE workflow_id = $1 AND kind = ANY ($2::text[])",
        workflow_id,
        sorted(CHASE_TASKS),
    )
    undated = [row["kind"] for row in rows if row["due_at"] is None]
    assert undated == [], f"reminders or escalations without a due date: {undated}"
    return len(rows)


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


async def run_count(client: Client, workflow_id: str) -> int:
    """How many Temporal runs the pathway has had (continue-as-new starts another)."""
    run_id: str | None = (await client.get_workflow_handle(workflow_id).describe()).run_id
    runs = 0
    while run_id:
        runs += 1
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        started = history.events[0].workflow_execution_started_event_attributes
        run_id = started.continued_execution_run_id or None
    return runs


async def settled(handle: WorkflowHandle[Any, Any], seconds: float = 15.0) -> None:
    """Wait until the pathway has nothing under way: no workflow task and no activity
    pending (its intake and first deliveries done), so its history stands still."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        described = (await handle.describe()).raw_description
        if not described.pending_activities and not described.HasField("pending_workflow_task"):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the pathway did not settle")
        await asyncio.sleep(0.05)


async def eventually_runs(
    client: Client, workflow_id: str, runs: int, seconds: float = 15.0
) -> None:
    """Wait until the pathway has had `runs` runs."""
    deadline = asyncio.get_running_loop().time() + seconds
    while (found := await run_count(client, workflow_id)) != runs:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the pathway has {found} runs, not {runs}")
        await asyncio.sleep(0.1)


def open_task(status: PathwayStatus, kind: TaskKind) -> bool:
    """Whether the pathway waits on a task of `kind`."""
    return any(task.kind is kind for task in status.open_tasks)


async def save_history_if_recording(handle: WorkflowHandle[Any, Any], name: str) -> None:
    """With ROP_RECORD_HISTORIES=1, keep this run's history for the replay test.

    Kept histories only accumulate: a new recording goes beside the earlier ones
    (`<name>.json`, then `<name>.2.json`, ...), never over one, so the replay test keeps
    proving that today's code runs every pathway that earlier code started.
    """
    if os.environ.get("ROP_RECORD_HISTORIES") != "1":
        return
    history = await handle.fetch_history()
    HISTORIES.mkdir(exist_ok=True)
    path = HISTORIES / new_history_name(name)
    path.write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n", encoding="utf-8")
    with KEPT.open("a", encoding="utf-8") as kept:
        kept.write(f"{digest(path)}  {path.name}\n")
    recorded_with = history_manifest.code_digest(history_manifest.current_sources())
    commit = history_manifest.head_commit()
    if commit != "unknown" and recorded_with != history_manifest.code_digest(
        history_manifest.sources_at(commit)
    ):
        commit += "+"  # recorded with changes to the workflow's code, committed next
    history_manifest.add_to_manifest(path.name, recorded_with, commit)


_WORKFLOW_TASK_EVENTS = frozenset({5, 6, 7, 8, 9})
"""Workflow task scheduled, started, completed, timed out, failed: bookkeeping, no step."""


async def applied_events(handle: WorkflowHandle[Any, Any]) -> int:
    """How many events of the pathway's history record something it did or was asked to do:
    all but workflow-task bookkeeping. A refused Update adds none (its validator runs before
    it enters history), though the server may keep the empty workflow task that ran it: it
    does for these pathways since they carry more than two patch markers (not for a toy
    workflow with four; left open)."""
    history = await handle.fetch_history()
    return sum(1 for event in history.events if event.event_type not in _WORKFLOW_TASK_EVENTS)


def new_history_name(name: str, folder: Path = HISTORIES) -> str:
    """The first free file name for a new recording of `name` in `folder`."""
    candidate, number = f"{name}.json", 1
    while (folder / candidate).exists():
        number += 1
        candidate = f"{name}.{number}.json"
    return candidate


async def hold_meeting(
    env: WorkflowEnvironment, api: Pathways, status: PathwayStatus, **outcome: Any
) -> PathwayStatus:
    """Skip to the invited meeting's time and record it as held then."""
    assert status.invite is not None
    meeting_at = status.invite.invite.meeting_at
    await env.sleep(meeting_at - await env.get_current_time() + timedelta(hours=1))
    return await api.send(
        StepName.RECORD_MEETING, status.workflow_id, factories.meeting_held(meeting_at, **outcome)
    )


async def to_follow_up(
    env: WorkflowEnvironment, client: Client, api: Pathways, **outcome: Any
) -> tuple[str, WorkflowHandle[Any, Any], PathwayStatus]:
    """A pathway through referral, assessment, invite and meeting, on time."""
    now = await env.get_current_time()
    workflow_id, handle = await start(client, api, factories.referral_data(now))
    await api.send(StepName.ASSESS, workflow_id, factories.assessment())
    invited = await api.send(StepName.INVITE_TO_MEETING, workflow_id, factories.invite(now))
    held = await hold_meeting(env, api, invited, **outcome)
    return workflow_id, handle, held


def kept_history(path: Path) -> WorkflowHistory:
    """A kept history with the workflow id it was recorded under, where its payloads name
    it (payloads bound to their pathway, `rop_runtime.codec`, open only there); older
    recordings, whose payloads name no pathway, replay under a name made from the file's."""
    text = path.read_text(encoding="utf-8")
    history = WorkflowHistory.from_json(f"rop-replay-{path.stem}", text)
    started = history.events[0].workflow_execution_started_event_attributes
    for payload in started.input.payloads:
        binding = binding_of(payload)
        if binding is not None:
            return WorkflowHistory(binding.workflow_id, history.events)
    return history
