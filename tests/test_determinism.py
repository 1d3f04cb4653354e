"""The guards that stand in for the sandbox: the worker runs workflow code unsandboxed.

`workflows/sandbox.py` says why. What the sandbox would refuse at run time is refused
here instead: the workflow imports no I/O library, ruff bans clocks, randomness, threads
and I/O in workflow code, and a whole pathway, every timer of it, runs in the sandbox.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import asyncpg
from temporalio.testing import WorkflowEnvironment

from rop_domain import calendar
from rop_domain.deadlines import PathwaySettings
from rop_domain.followup import Review, ReviewOutcome
from rop_domain.models import Phase
from rop_domain.steps import StepName
from rop_domain.tasks import TaskKind
from tests import factories
from tests.pathway_harness import (
    eventually,
    eventually_runs,
    hold_meeting,
    open_task,
    running_pathways,
    start,
)
from worker import WorkerTuning

REPO = Path(__file__).resolve().parent.parent
IO_LIBRARIES = {"asyncpg", "httpx", "aiosmtplib", "smtplib", "jinja2", "structlog", "psutil"}
OUR_IO_PACKAGES = {"activities", "starter", "rop_runtime", "bench", "worker"}


def test_importing_the_workflow_loads_no_io_library() -> None:
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys, workflows.pathway; print(json.dumps(sorted(sys.modules)))",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    roots = {name.split(".")[0] for name in json.loads(loaded.stdout)}
    assert "workflows" in roots
    assert roots & (IO_LIBRARIES | OUR_IO_PACKAGES) == set()


def _ruff(code: str, filename: str) -> list[str]:
    """The rule codes ruff reports for `code` as if it were the file `filename`."""
    checked = subprocess.run(
        [
            str(Path(sys.executable).parent / "ruff"),
            "check",
            "--output-format",
            "json",
            "--stdin-filename",
            filename,
            "-",
        ],
        cwd=REPO,
        input=code,
        capture_output=True,
        text=True,
        check=False,
    )
    return sorted({finding["code"] for finding in json.loads(checked.stdout)})


NON_DETERMINISTIC = """\
import uuid
from datetime import UTC, datetime


def when() -> object:
    return datetime.now(UTC), uuid.uuid4()
"""


def test_ruff_refuses_clocks_and_randomness_in_workflow_and_domain_code() -> None:
    assert _ruff(NON_DETERMINISTIC, "workflows/probe.py") == ["TID251"]
    assert _ruff(NON_DETERMINISTIC, "rop_domain/probe.py") == ["TID251"]
    assert _ruff("import asyncpg\n\nPOOL = asyncpg\n", "workflows/probe.py") == ["TID251"]
    # The ways in may read the clock: the rule is for code that runs in a workflow.
    assert _ruff(NON_DETERMINISTIC, "starter/probe.py") == []


async def test_a_whole_pathway_runs_every_timer_in_the_sandbox(
    time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    """Meeting reminder and escalation, the crisis plan's reminder, escalation and revision,
    a review due, overdue and escalated, a review that continues the run as new, closure."""
    env, client = time_skipping_env, time_skipping_env.client
    sandboxed = WorkerTuning(
        workflow_task_slots=5, local_activity_slots=5, cached_workflows=10, sandboxed=True
    )
    async with running_pathways(
        client, pool, task_queue, PathwaySettings(continue_as_new_after_events=0), tuning=sandboxed
    ) as api:
        now = await env.get_current_time()
        workflow_id, handle = await start(client, api, factories.referral_data(now))
        assessed = await api.send(StepName.ASSESS, workflow_id, factories.assessment())
        await env.sleep(assessed.escalation_at - now + timedelta(minutes=1))
        overdue = await eventually(api, workflow_id, lambda s: s.meeting_escalated)
        assert overdue.reminder_sent

        late = await env.get_current_time()
        held = await hold_meeting(
            env,
            api,
            await api.send(StepName.INVITE_TO_MEETING, workflow_id, factories.invite(late)),
        )
        crisis_deadline = held.crisis_plan_deadline
        assert crisis_deadline is not None
        await env.sleep(
            calendar.end_of_day(crisis_deadline) - await env.get_current_time() + timedelta(hours=1)
        )
        await eventually(api, workflow_id, lambda s: s.crisis_plan.escalated)

        today = calendar.local_date(await env.get_current_time())
        await api.send(
            StepName.REGISTER_CRISIS_PLAN,
            workflow_id,
            factories.crisis_plan(today + timedelta(days=3)),
        )
        await env.sleep(timedelta(days=4))
        await eventually(api, workflow_id, lambda s: open_task(s, TaskKind.REVISE_CRISIS_PLAN))

        cycle = held.review
        assert cycle is not None
        escalation_day = calendar.add_working_days(cycle.due, 5)
        await env.sleep(
            calendar.end_of_day(escalation_day) - await env.get_current_time() + timedelta(hours=1)
        )
        chased = await eventually(
            api,
            workflow_id,
            lambda s: s.review is not None and s.review.escalated,
        )
        # The crisis plan's revision, due weeks ago, is chased as well.
        assert chased.overdue_items == ["crisis plan revision", "review"]

        reviewed = await api.send(
            StepName.COMPLETE_REVIEW,
            workflow_id,
            Review(reviewed_by=factories.KOORDINATOR, outcome=ReviewOutcome.CONTINUE),
        )
        assert reviewed.reviews_completed == 1
        await eventually_runs(client, workflow_id, 2)
        closed = await api.send(StepName.CLOSE_PATHWAY, workflow_id, factories.closure())
        assert closed.phase is Phase.CLOSED
        outcome = await handle.result()
        assert (outcome.reviews_completed, outcome.runs) == (1, 2)


def test_the_worker_and_the_runtime_import_none_of_the_ways_in() -> None:
    """`worker.py` and `rop_runtime/` serve the ways in (`starter/`), never the reverse."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import json, sys, worker; print(json.dumps(sorted(sys.modules)))"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    modules = json.loads(loaded.stdout)
    assert [m for m in modules if m.split(".")[0] in {"starter", "bench"}] == []
