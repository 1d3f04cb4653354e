"""A step is recorded and applied, or refused: never half-applied, never twice.

On the time-skipping server with the real record service: a step the database refuses
leaves the state, search attributes and tasks as they were; an Update id is applied
once, also when it comes again after the pathway continued as new.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from rop_domain.deadlines import PathwaySettings
from rop_domain.followup import PlanRevision, Review, ReviewOutcome
from rop_domain.models import Phase
from rop_domain.steps import StepName
from starter.pathways import PathwayStepRejected
from tests import factories
from tests.pathway_harness import (
    close_and_end,
    running_pathways,
    save_history_if_recording,
    settled,
    start,
    to_follow_up,
)
from workflows import search_attributes as sa


async def _count(pool: asyncpg.Pool, workflow_id: str, kind: str) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM pathway_events WHERE workflow_id = $1 AND kind = $2",
        workflow_id,
        kind,
    )
    return count


async def _run_id(handle: WorkflowHandle[Any, Any]) -> str:
    described = await handle.describe()
    return described.run_id or ""


async def test_a_step_the_record_refuses_leaves_state_search_attributes_and_tasks_as_before(
    time_skipping_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    owner_pool: asyncpg.Pool,
    task_queue: str,
) -> None:
    env, client = time_skipping_env, time_skipping_env.client
    async with running_pathways(client, pool, task_queue) as api:
        now = await env.get_current_time()
        workflow_id, handle = await start(client, api, factories.referral_data(now))
        await settled(handle)  # the intake recorded: the status before the step is settled
        before = await api.status(workflow_id)
        # Provoke a refusal the edge cannot see: a constraint this pathway's assessment breaks.
        constraint = f"refuse_{uuid.uuid4().hex[:8]}"
        await owner_pool.execute(
            f"ALTER TABLE pathway_events ADD CONSTRAINT {constraint} "
            f"CHECK (workflow_id <> '{workflow_id}' OR kind <> 'assessed') NOT VALID"
        )
        try:
            with pytest.raises(PathwayStepRejected) as refused:
                await api.send(StepName.ASSESS, workflow_id, factories.assessment())
            assert str(refused.value) == (
                "the step could not be recorded and was not applied: the record database "
                "refused the step (CheckViolationError, SQLSTATE 23514)"
            )
            after = await api.status(workflow_id)
            assert after.phase is Phase.AWAITING_ASSESSMENT
            assert after.assessment is None
            assert after == before
            search = (await handle.describe()).typed_search_attributes
            assert search.get(sa.PHASE) == Phase.AWAITING_ASSESSMENT.value
            row = await pool.fetchrow(
                "SELECT phase, assessment_decision FROM pathways WHERE workflow_id = $1",
                workflow_id,
            )
            assert row is not None
            assert (row["phase"], row["assessment_decision"]) == ("awaiting-assessment", None)
            tasks = await pool.fetch(
                "SELECT kind, status FROM tasks WHERE workflow_id = $1", workflow_id
            )
            assert [tuple(t) for t in tasks] == [("assess-referral", "requested")]
        finally:
            await owner_pool.execute(f"ALTER TABLE pathway_events DROP CONSTRAINT {constraint}")

        # The pathway is not stuck: the same step goes through once the record takes it.
        assessed = await api.send(StepName.ASSESS, workflow_id, factories.assessment())
        assert assessed.phase is Phase.AWAITING_INVITE
        assert await _count(pool, workflow_id, "assessed") == 1
        assert (await handle.describe()).typed_search_attributes.get(sa.PHASE) == (
            Phase.AWAITING_INVITE.value
        )
        await close_and_end(api, handle)
        await save_history_if_recording(handle, "refused_step")


CONTINUE_AT_EVERY_REVIEW = PathwaySettings(continue_as_new_after_events=0)
"""A pathway that continues as new after its first review, however short its history."""


async def _continued_as_new(handle: WorkflowHandle[Any, Any], run_id: str) -> None:
    for _ in range(200):
        if await _run_id(handle) != run_id:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the pathway did not continue as new")


def _review(number: int | None = None) -> Review:
    return Review(
        reviewed_by=factories.KOORDINATOR, outcome=ReviewOutcome.CONTINUE, review_number=number
    )


async def test_the_same_update_id_after_continue_as_new_gets_the_first_answer(
    time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    env, client = time_skipping_env, time_skipping_env.client
    async with running_pathways(client, pool, task_queue, CONTINUE_AT_EVERY_REVIEW) as api:
        workflow_id, handle, _ = await to_follow_up(env, client, api)
        first_run = await _run_id(handle)
        first = await api.send(
            StepName.COMPLETE_REVIEW, workflow_id, _review(1), update_id="review-once"
        )
        assert first.reviews_completed == 1
        await _continued_as_new(handle, first_run)  # the review ends the run

        # The same Update id for another step is refused, not answered.
        with pytest.raises(PathwayStepRejected, match="used for complete_review already"):
            await api.send(
                StepName.CLOSE_PATHWAY, workflow_id, factories.closure(), update_id="review-once"
            )
        again = await api.send(
            StepName.COMPLETE_REVIEW, workflow_id, _review(1), update_id="review-once"
        )
        assert again == first
        assert await _count(pool, workflow_id, "review-completed") == 1
        # A late repeat under a new id names the review it completes: refused.
        with pytest.raises(PathwayStepRejected, match="review 1 is already completed"):
            await api.send(
                StepName.COMPLETE_REVIEW, workflow_id, _review(1), update_id="review-late"
            )
        with pytest.raises(PathwayStepRejected, match=r"review 3 is not due yet \(due: review 2\)"):
            await api.send(StepName.COMPLETE_REVIEW, workflow_id, _review(3))
        assert await _count(pool, workflow_id, "review-completed") == 1
        await close_and_end(api, handle)
        await save_history_if_recording(handle, "answered_after_continue_as_new")


async def test_a_retry_after_two_hundred_other_steps_gets_its_first_answer(
    time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    env, client = time_skipping_env, time_skipping_env.client
    async with running_pathways(client, pool, task_queue, CONTINUE_AT_EVERY_REVIEW) as api:
        workflow_id, handle, _held = await to_follow_up(env, client, api)
        first_run = await _run_id(handle)
        first = await api.send(
            StepName.COMPLETE_REVIEW, workflow_id, _review(1), update_id="review-once"
        )
        await _continued_as_new(handle, first_run)  # the answer travels in the state

        version = first.plan_version
        for number in range(200):  # each names the version it replaces
            revised = await api.send(
                StepName.REVISE_PLAN,
                workflow_id,
                PlanRevision(
                    revised_by=factories.KOORDINATOR,
                    reason=f"revisjon {number}",
                    measures=factories.measures(),
                    replaces_version=version,
                ),
            )
            version = revised.plan_version
        assert version == first.plan_version + 200

        again = await api.send(
            StepName.COMPLETE_REVIEW, workflow_id, _review(1), update_id="review-once"
        )
        assert again == first
        assert await _count(pool, workflow_id, "review-completed") == 1
        # A revision re-sent late, under a new id, names the version it replaced: refused.
        with pytest.raises(PathwayStepRejected, match=r"plan version 1 is already replaced"):
            await api.send(
                StepName.REVISE_PLAN,
                workflow_id,
                PlanRevision(
                    revised_by=factories.KOORDINATOR,
                    reason="revisjon 0",
                    measures=factories.measures(),
                    replaces_version=1,
                ),
            )
        with pytest.raises(PathwayStepRejected, match=r"there is no plan version 999"):
            await api.send(
                StepName.REVISE_PLAN,
                workflow_id,
                PlanRevision(
                    revised_by=factories.KOORDINATOR,
                    reason="x",
                    measures=factories.measures(),
                    replaces_version=999,
                ),
            )
        assert await _count(pool, workflow_id, "plan-revised") == 200
        await close_and_end(api, handle)


async def test_twenty_concurrent_sends_of_one_update_id_straddling_continue_as_new_apply_once(
    time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    env, client = time_skipping_env, time_skipping_env.client
    async with running_pathways(client, pool, task_queue, CONTINUE_AT_EVERY_REVIEW) as api:
        workflow_id, handle, _ = await to_follow_up(env, client, api)
        first_run = await _run_id(handle)

        async def send(after: float) -> int:
            await asyncio.sleep(after)
            status = await api.send(
                StepName.COMPLETE_REVIEW, workflow_id, _review(), update_id="review-x"
            )
            return status.reviews_completed

        answers = await asyncio.gather(*(send(i * 0.03) for i in range(20)))
        assert answers == [1] * 20
        assert await _run_id(handle) != first_run
        assert await _count(pool, workflow_id, "review-completed") == 1
        status = await api.status(workflow_id)
        assert status.reviews_completed == 1
        assert status.review is not None
        assert status.review.number == 2
        await close_and_end(api, handle)
