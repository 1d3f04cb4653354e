"""A pathway that lives for ten years, reviewed every six weeks, in runs of bounded history.

A run continues as new after a review once its history has passed the pathway's
`continue_as_new_after_events`, so ten years take a few runs, none of them long.
"""

from __future__ import annotations

from datetime import time, timedelta

import asyncpg
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from rop_domain import calendar
from rop_domain.deadlines import PathwaySettings
from rop_domain.followup import Review, ReviewOutcome
from rop_domain.models import Phase
from rop_domain.steps import StepName
from rop_domain.tasks import TaskKind
from tests import factories
from tests.pathway_harness import eventually, open_task, running_pathways, to_follow_up

YEARS = 10
MAX_EVENTS_PER_RUN = 2000


async def test_ten_years_of_six_weekly_reviews_keep_every_run_small(
    time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    env, client = time_skipping_env, time_skipping_env.client
    async with running_pathways(client, pool, task_queue) as api:
        workflow_id, _, _ = await to_follow_up(env, client, api, review_weeks=6)
        began = await env.get_current_time()
        today = calendar.local_date(began)
        await api.send(
            StepName.REGISTER_CRISIS_PLAN,
            workflow_id,
            factories.crisis_plan(today + timedelta(days=365)),
        )
        reviews = 0

        while await env.get_current_time() - began < timedelta(days=365 * YEARS):
            cycle = (await api.status(workflow_id)).review
            assert cycle is not None
            review_time = calendar.at_local_time(cycle.due, time(9, 0))
            await env.sleep(review_time - await env.get_current_time())
            status = await eventually(
                api,
                workflow_id,
                lambda s: s.review is not None and s.review.task_raised,
            )
            plan = status.crisis_plan.current
            assert plan is not None
            if open_task(status, TaskKind.REVISE_CRISIS_PLAN):
                # Revised at the review (the revision day passed since the last one).
                await api.send(
                    StepName.REGISTER_CRISIS_PLAN,
                    workflow_id,
                    factories.crisis_plan(
                        plan.next_revision + timedelta(days=365), plan.version + 1
                    ),
                )
            after = await api.send(
                StepName.COMPLETE_REVIEW,
                workflow_id,
                Review(reviewed_by=factories.KOORDINATOR, outcome=ReviewOutcome.CONTINUE),
            )
            reviews += 1
            assert after.reviews_completed == reviews
            assert not after.overdue

        final = await api.send(
            StepName.COMPLETE_REVIEW,
            workflow_id,
            Review(reviewed_by=factories.KOORDINATOR, outcome=ReviewOutcome.END_PATHWAY),
        )
        assert final.phase is Phase.CLOSED

    reviews += 1  # the last review ended the pathway
    assert reviews >= YEARS * 52 // 6
    sizes = await _run_sizes(client, workflow_id)
    assert len(sizes) >= 2
    assert max(sizes) < MAX_EVENTS_PER_RUN, sizes
    # No run but the last ended before its history was long.
    threshold = PathwaySettings().continue_as_new_after_events
    assert min(sizes[:-1]) >= threshold, sizes
    row = await pool.fetchrow(
        "SELECT phase, reviews_completed, crisis_plan_version FROM pathways WHERE workflow_id = $1",
        workflow_id,
    )
    assert row is not None
    assert (row["phase"], row["reviews_completed"]) == ("closed", reviews)
    assert row["crisis_plan_version"] >= YEARS
    print(f"\n{reviews} reviews over {YEARS} years in {len(sizes)} runs; events per run {sizes}")


async def _run_sizes(client: Client, workflow_id: str) -> list[int]:
    """Events of each run of a pathway, first run first."""
    sizes: list[int] = []
    run_id: str | None = None
    while True:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        sizes.insert(0, len(history.events))
        started = history.events[0].workflow_execution_started_event_attributes
        if not started.continued_execution_run_id:
            return sizes
        run_id = started.continued_execution_run_id
