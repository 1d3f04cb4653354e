"""After the meeting: crisis plan, measures, reviews, objection and closure, on the time-skipping server."""

from __future__ import annotations

import asyncio
from datetime import datetime, time, timedelta
from typing import Any

import asyncpg
import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from rop_domain import calendar, deadlines
from rop_domain.deadlines import ObjectionMode, PathwaySettings
from rop_domain.followup import (
    Measure,
    MeasureCancellation,
    MeasureKind,
    MeasureStep,
    Objection,
    PlanRevision,
    Provider,
    Review,
    ReviewOutcome,
)
from rop_domain.models import Participant, ParticipantRole, Phase
from rop_domain.plan import MeasureStatus
from rop_domain.steps import StepName
from rop_domain.tasks import TaskKind
from rop_domain.view import PathwayStatus
from starter.pathways import Pathways, PathwayStepRejected
from tests import factories
from tests.pathway_harness import (
    assert_chases_are_due,
    close_and_end,
    eventually,
    eventually_runs,
    open_task,
    run_count,
    running_pathways,
    save_history_if_recording,
    start,
    tasks_of,
    to_follow_up,
)
from workflows import search_attributes as sa
from workflows.pathway import RopPathway


async def _row(pool: asyncpg.Pool, workflow_id: str) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM pathways WHERE workflow_id = $1", workflow_id)
    assert row is not None
    return row


def _statuses(status: PathwayStatus) -> dict[str, MeasureStatus]:
    return {measure.id: measure.status for measure in status.measures}


async def test_crisis_plan_reminder_then_escalation_then_registration(
    time_skipping_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    pathway_api: Pathways,
) -> None:
    env, client = time_skipping_env, time_skipping_env.client
    workflow_id, handle, held = await to_follow_up(env, client, pathway_api)
    deadline = held.crisis_plan_deadline
    assert deadline is not None
    assert deadline == calendar.add_working_days(
        calendar.local_date(held.meeting.held_at),  # type: ignore[union-attr]
        10,
    )
    [make] = await tasks_of(pool, workflow_id, TaskKind.MAKE_CRISIS_PLAN)
    assert make["recipient"] == factories.CRISIS_PLAN_RESPONSIBLE

    reminder_at = deadlines.reminder_at(deadline, PathwaySettings())
    await env.sleep(reminder_at - await env.get_current_time() + timedelta(minutes=1))
    reminded = await eventually(pathway_api, workflow_id, lambda s: s.crisis_plan.reminder_sent)
    assert not reminded.overdue
    [reminder] = await tasks_of(pool, workflow_id, TaskKind.CRISIS_PLAN_REMINDER)
    assert reminder["recipient"] == factories.CRISIS_PLAN_RESPONSIBLE

    await env.sleep(
        calendar.end_of_day(deadline) - await env.get_current_time() + timedelta(minutes=1)
    )
    overdue = await eventually(pathway_api, workflow_id, lambda s: s.overdue)
    assert overdue.overdue_items == ["crisis plan"]
    [escalation] = await tasks_of(pool, workflow_id, TaskKind.CRISIS_PLAN_ESCALATION)
    assert escalation["recipient"] == "tsb.leder@example.invalid"
    assert (await _row(pool, workflow_id))["crisis_plan_overdue"] is True
    assert (await handle.describe()).typed_search_attributes.get(sa.OVERDUE) is True

    today = calendar.local_date(await env.get_current_time())
    registered = await pathway_api.send(
        StepName.REGISTER_CRISIS_PLAN,
        workflow_id,
        factories.crisis_plan(today + timedelta(days=90)),
    )
    assert not registered.overdue
    row = await _row(pool, workflow_id)
    assert (row["crisis_plan_version"], row["crisis_plan_overdue"]) == (1, False)
    statuses = {
        r["status"] for r in await tasks_of(pool, workflow_id, TaskKind.CRISIS_PLAN_ESCALATION)
    }
    assert statuses == {"completed"}
    search = (await handle.describe()).typed_search_attributes
    assert search.get(sa.HAS_CRISIS_PLAN) is True
    assert search.get(sa.OVERDUE) is False
    await close_and_end(pathway_api, handle)
    assert await assert_chases_are_due(pool, handle.id) > 0
    await save_history_if_recording(handle, "crisis_plan_escalation")


async def test_crisis_plan_revision_raises_a_task_when_due(
    time_skipping_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    pathway_api: Pathways,
) -> None:
    env, client = time_skipping_env, time_skipping_env.client
    workflow_id, handle, _ = await to_follow_up(env, client, pathway_api, review_weeks=52)
    today = calendar.local_date(await env.get_current_time())
    revision_day = today + timedelta(days=30)
    await pathway_api.send(
        StepName.REGISTER_CRISIS_PLAN, workflow_id, factories.crisis_plan(revision_day)
    )

    await env.sleep(timedelta(days=29))
    assert await tasks_of(pool, workflow_id, TaskKind.REVISE_CRISIS_PLAN) == []
    await env.sleep(timedelta(days=2))
    raised = await eventually(
        pathway_api, workflow_id, lambda s: open_task(s, TaskKind.REVISE_CRISIS_PLAN)
    )
    [task] = await tasks_of(pool, workflow_id, TaskKind.REVISE_CRISIS_PLAN)
    assert task["status"] == "requested"
    assert revision_day.strftime("%d.%m.%Y") in task["subject"]

    with pytest.raises(PathwayStepRejected, match="version must be above"):
        await pathway_api.send(
            StepName.REGISTER_CRISIS_PLAN,
            workflow_id,
            factories.crisis_plan(revision_day, version=1),
        )
    later = calendar.local_date(await env.get_current_time()) + timedelta(days=60)
    alone = factories.crisis_plan(later, version=2).model_copy(update={"made_with_patient": False})
    with pytest.raises(PathwayStepRejected, match="needs without_patient_reason"):
        await pathway_api.send(StepName.REGISTER_CRISIS_PLAN, workflow_id, alone)
    revised = await pathway_api.send(
        StepName.REGISTER_CRISIS_PLAN,
        workflow_id,
        alone.model_copy(update={"without_patient_reason": "Pasienten innlagt, for dårlig"}),
    )
    assert revised.crisis_plan.current is not None
    assert revised.crisis_plan.current.version == 2
    assert [
        r["status"] for r in await tasks_of(pool, workflow_id, TaskKind.REVISE_CRISIS_PLAN)
    ] == ["completed"]
    versions = await pool.fetch(
        "SELECT details->>'version' AS v, details->>'without_patient_reason' AS why "
        "FROM pathway_events "
        "WHERE workflow_id = $1 AND kind = 'crisis-plan-registered' ORDER BY id",
        workflow_id,
    )
    assert [(r["v"], r["why"]) for r in versions] == [
        ("1", None),
        ("2", "Pasienten innlagt, for dårlig"),
    ]
    assert raised.phase is Phase.FOLLOW_UP
    await close_and_end(pathway_api, handle)


async def test_review_due_overdue_escalated_then_completed_and_the_next_one_watched(
    time_skipping_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    pathway_api: Pathways,
) -> None:
    env, client = time_skipping_env, time_skipping_env.client
    workflow_id, handle, held = await to_follow_up(env, client, pathway_api, review_weeks=6)
    today = calendar.local_date(await env.get_current_time())
    await pathway_api.send(
        StepName.REGISTER_CRISIS_PLAN,
        workflow_id,
        factories.crisis_plan(today + timedelta(days=300)),
    )
    cycle = held.review
    assert cycle is not None
    assert cycle.due == calendar.local_date(held.meeting.held_at) + timedelta(weeks=6)  # type: ignore[union-attr]
    first_run = (await handle.describe()).run_id

    due_at = calendar.at_local_time(cycle.due, time(8, 0))
    await env.sleep(due_at - await env.get_current_time() - timedelta(minutes=5))
    assert await tasks_of(pool, workflow_id, TaskKind.HOLD_REVIEW) == []
    await env.sleep(timedelta(minutes=10))
    await eventually(
        pathway_api, workflow_id, lambda s: s.review is not None and s.review.task_raised
    )
    [task] = await tasks_of(pool, workflow_id, TaskKind.HOLD_REVIEW)
    assert task["recipient"] == factories.KOORDINATOR
    assert not (await pathway_api.status(workflow_id)).overdue

    await env.sleep(
        calendar.end_of_day(cycle.due) - await env.get_current_time() + timedelta(minutes=1)
    )
    overdue = await eventually(pathway_api, workflow_id, lambda s: s.overdue)
    assert overdue.overdue_items == ["review"]
    assert len(await tasks_of(pool, workflow_id, TaskKind.REVIEW_REMINDER)) == 1
    assert (await _row(pool, workflow_id))["review_overdue"] is True

    escalation_day = calendar.add_working_days(cycle.due, 5)
    await env.sleep(
        calendar.end_of_day(escalation_day) - await env.get_current_time() + timedelta(minutes=1)
    )
    await eventually(
        pathway_api,
        workflow_id,
        lambda s: s.review is not None and s.review.escalated,
    )
    [escalation] = await tasks_of(pool, workflow_id, TaskKind.REVIEW_ESCALATION)
    assert escalation["recipient"] == "tsb.leder@example.invalid"

    reviewed = await pathway_api.send(
        StepName.COMPLETE_REVIEW,
        workflow_id,
        Review(
            reviewed_by=factories.KOORDINATOR,
            outcome=ReviewOutcome.CONTINUE,
            next_interval_weeks=8,
        ),
    )
    assert not reviewed.overdue
    assert reviewed.reviews_completed == 1
    assert reviewed.review is not None
    assert reviewed.review.number == 2
    assert reviewed.review.due == calendar.local_date(await env.get_current_time()) + timedelta(
        weeks=8
    )
    # A short history: the run goes on, and watches the next review itself.
    assert (await handle.describe()).run_id == first_run
    assert await run_count(client, workflow_id) == 1
    row = await _row(pool, workflow_id)
    assert (row["review_overdue"], row["reviews_completed"]) == (False, 1)
    assert {r["status"] for r in await tasks_of(pool, workflow_id, TaskKind.HOLD_REVIEW)} == {
        "completed"
    }
    search = (await handle.describe()).typed_search_attributes
    review_due = search.get(sa.NEXT_REVIEW_DUE)
    assert review_due is not None
    assert (review_due.date(), sa.day_of(review_due)) == (reviewed.review.due,) * 2
    second_due = calendar.at_local_time(reviewed.review.due, time(8, 0))
    await env.sleep(second_due - await env.get_current_time() + timedelta(minutes=5))
    second = await eventually(
        pathway_api, workflow_id, lambda s: s.review is not None and s.review.task_raised
    )
    assert second.review is not None
    assert second.review.number == 2
    assert [t["status"] for t in await tasks_of(pool, workflow_id, TaskKind.HOLD_REVIEW)] == [
        "completed",
        "requested",
    ]
    outcome = await close_and_end(pathway_api, handle)
    assert (outcome.reviews_completed, outcome.runs) == (1, 1)
    assert (await handle.describe()).run_id == first_run
    assert await assert_chases_are_due(pool, handle.id) > 0
    await save_history_if_recording(handle, "review_cycles")


async def test_measures_run_in_parallel_and_in_sequence(
    time_skipping_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    pathway_api: Pathways,
) -> None:
    env, client = time_skipping_env, time_skipping_env.client
    by = factories.CLINICIAN
    workflow_id, handle, held = await to_follow_up(env, client, pathway_api)
    assert _statuses(held) == {
        "poliklinikk": MeasureStatus.READY,
        "fact": MeasureStatus.READY,
        "innleggelse": MeasureStatus.PLANNED,
        "bolig": MeasureStatus.PLANNED,
    }
    ready = await tasks_of(pool, workflow_id, TaskKind.START_MEASURE)
    assert [(r["reference"], r["recipient"]) for r in ready] == [
        ("poliklinikk", factories.CLINICIAN),
        ("fact", "fact-bergen"),
    ]

    with pytest.raises(PathwayStepRejected, match="waits for: poliklinikk"):
        await pathway_api.send(
            StepName.START_MEASURE, workflow_id, MeasureStep(measure_id="innleggelse", by=by)
        )
    with pytest.raises(PathwayStepRejected, match=r"predecessors are open \(poliklinikk\)"):
        await pathway_api.send(
            StepName.COMPLETE_MEASURE, workflow_id, MeasureStep(measure_id="innleggelse", by=by)
        )

    started = await pathway_api.send(
        StepName.START_MEASURE, workflow_id, MeasureStep(measure_id="poliklinikk", by=by)
    )
    assert _statuses(started)["poliklinikk"] is MeasureStatus.ACTIVE
    with pytest.raises(PathwayStepRejected, match="already active"):
        await pathway_api.send(
            StepName.START_MEASURE, workflow_id, MeasureStep(measure_id="poliklinikk", by=by)
        )
    done = await pathway_api.send(
        StepName.COMPLETE_MEASURE, workflow_id, MeasureStep(measure_id="poliklinikk", by=by)
    )
    assert _statuses(done)["innleggelse"] is MeasureStatus.READY
    assert _statuses(done)["bolig"] is MeasureStatus.PLANNED

    cancelled = await pathway_api.send(
        StepName.CANCEL_MEASURE,
        workflow_id,
        MeasureCancellation(measure_id="innleggelse", by=by, reason="Ikke lenger indisert"),
    )
    assert _statuses(cancelled)["bolig"] is MeasureStatus.READY
    tasks = {
        r["reference"]: r["status"]
        for r in await tasks_of(pool, workflow_id, TaskKind.START_MEASURE)
    }
    assert tasks == {
        "poliklinikk": "completed",
        "fact": "requested",
        "innleggelse": "cancelled",
        "bolig": "requested",
    }
    await close_and_end(pathway_api, handle)
    await save_history_if_recording(handle, "measures")


async def test_plan_revision_keeps_statuses_and_the_old_plan(
    time_skipping_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    pathway_api: Pathways,
) -> None:
    env, client = time_skipping_env, time_skipping_env.client
    by = factories.CLINICIAN
    workflow_id, handle, _ = await to_follow_up(env, client, pathway_api)
    await pathway_api.send(
        StepName.START_MEASURE, workflow_id, MeasureStep(measure_id="fact", by=by)
    )
    plan = [m for m in factories.measures() if m.id == "fact"] + [
        Measure(
            id="nav",
            kind=MeasureKind.NAV,
            provider=Provider.NAV,
            responsible="nav-bergen",
            depends_on=["fact"],
        ),
    ]
    revised = await pathway_api.send(
        StepName.REVISE_PLAN,
        workflow_id,
        PlanRevision(revised_by=by, reason="ny vurdering", measures=plan),
    )
    assert _statuses(revised) == {"fact": MeasureStatus.ACTIVE, "nav": MeasureStatus.PLANNED}
    assert revised.plan_version == 2
    old = await pool.fetchval(
        "SELECT details->'previous_plan' FROM pathway_events WHERE workflow_id = $1 AND kind = 'plan-revised'",
        workflow_id,
    )
    assert "innleggelse" in old
    await close_and_end(pathway_api, handle)


async def test_invalid_follow_up_updates_are_rejected(
    time_skipping_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    pathway_api: Pathways,
) -> None:
    env, client = time_skipping_env, time_skipping_env.client
    by = factories.CLINICIAN
    now = await env.get_current_time()
    early_id, early_handle = await start(client, pathway_api, factories.referral_data(now))
    today = calendar.local_date(now)
    with pytest.raises(PathwayStepRejected, match="has not been held yet"):
        await pathway_api.send(
            StepName.REGISTER_CRISIS_PLAN,
            early_id,
            factories.crisis_plan(today + timedelta(days=9)),
        )
    with pytest.raises(PathwayStepRejected, match="has not been held yet"):
        await pathway_api.send(
            StepName.COMPLETE_REVIEW,
            early_id,
            Review(reviewed_by=by, outcome=ReviewOutcome.CONTINUE),
        )
    await close_and_end(pathway_api, early_handle)

    workflow_id, handle, _ = await to_follow_up(env, client, pathway_api)
    today = calendar.local_date(await env.get_current_time())
    with pytest.raises(PathwayStepRejected, match="next_revision must lie in the future"):
        await pathway_api.send(
            StepName.REGISTER_CRISIS_PLAN, workflow_id, factories.crisis_plan(today)
        )
    with pytest.raises(PathwayStepRejected, match="unknown measure nope"):
        await pathway_api.send(
            StepName.START_MEASURE, workflow_id, MeasureStep(measure_id="nope", by=by)
        )
    cyclic = [
        Measure(
            id="a",
            kind=MeasureKind.OTHER,
            provider=Provider.TSB,
            responsible=by,
            depends_on=["b"],
        ),
        Measure(
            id="b",
            kind=MeasureKind.OTHER,
            provider=Provider.TSB,
            responsible=by,
            depends_on=["a"],
        ),
    ]
    with pytest.raises(PathwayStepRejected, match="cycle: a -> b -> a"):
        await pathway_api.send(
            StepName.REVISE_PLAN,
            workflow_id,
            PlanRevision(revised_by=by, reason="x", measures=cyclic),
        )
    dangling = [
        Measure(
            id="a",
            kind=MeasureKind.OTHER,
            provider=Provider.TSB,
            responsible=by,
            depends_on=["zz"],
        )
    ]
    with pytest.raises(PathwayStepRejected, match="unknown measure"):
        await pathway_api.send(
            StepName.REVISE_PLAN,
            workflow_id,
            PlanRevision(revised_by=by, reason="x", measures=dangling),
        )
    await pathway_api.send(
        StepName.START_MEASURE, workflow_id, MeasureStep(measure_id="fact", by=by)
    )
    without_fact = [m for m in factories.measures() if m.id != "fact"]
    with pytest.raises(PathwayStepRejected, match="active measure"):
        await pathway_api.send(
            StepName.REVISE_PLAN,
            workflow_id,
            PlanRevision(revised_by=by, reason="x", measures=without_fact),
        )
    # Inpatient treatment without an indication, sent past our models: refused by the payload's
    # own validation in the worker, before the Update is accepted.
    raw: dict[str, Any] = {
        "revised_by": by,
        "reason": "x",
        "measures": [{"id": "inn", "kind": "inpatient", "provider": "TSB", "responsible": by}],
    }
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(RopPathway.revise_plan, raw)  # type: ignore[arg-type]
    assert "Failed decoding arguments" in str(refused.value.cause)
    status = await pathway_api.status(workflow_id)
    assert status.plan_version == 1
    assert _statuses(status)["fact"] is MeasureStatus.ACTIVE
    await pathway_api.send(StepName.CLOSE_PATHWAY, workflow_id, factories.closure())
    with pytest.raises(PathwayStepRejected):
        await pathway_api.send(StepName.RECORD_OBJECTION, workflow_id, Objection(recorded_by=by))
    await handle.result()


async def _at_phase(
    env: WorkflowEnvironment, api: Any, client: Any, phase: Phase
) -> tuple[str, WorkflowHandle[Any, Any]]:
    if phase is Phase.FOLLOW_UP:
        workflow_id, handle, _ = await to_follow_up(env, client, api)
        return workflow_id, handle
    now = await env.get_current_time()
    workflow_id, handle = await start(client, api, factories.referral_data(now))
    if phase is Phase.AWAITING_ASSESSMENT:
        await eventually(api, workflow_id, lambda s: bool(s.recommended_participants))
        return workflow_id, handle
    await api.send(StepName.ASSESS, workflow_id, factories.assessment())
    if phase is Phase.MEETING_INVITED:
        await api.send(StepName.INVITE_TO_MEETING, workflow_id, factories.invite(now))
    return workflow_id, handle


@pytest.mark.parametrize(
    "phase",
    [Phase.AWAITING_ASSESSMENT, Phase.AWAITING_INVITE, Phase.MEETING_INVITED, Phase.FOLLOW_UP],
)
async def test_closure_from_every_phase(
    time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str, phase: Phase
) -> None:
    env, client = time_skipping_env, time_skipping_env.client
    async with running_pathways(client, pool, task_queue) as api:
        workflow_id, handle = await _at_phase(env, api, client, phase)
        assert (await api.status(workflow_id)).phase is phase
        closed = await api.send(StepName.CLOSE_PATHWAY, workflow_id, factories.closure())
        assert closed.phase is Phase.CLOSED
        outcome = await handle.result()
        assert outcome.phase is Phase.CLOSED
        with pytest.raises(PathwayStepRejected, match="has ended"):
            await api.send(StepName.CLOSE_PATHWAY, workflow_id, factories.closure())

    row = await _row(pool, workflow_id)
    assert (row["phase"], row["closure_reason"]) == ("closed", "completed")
    open_tasks = await pool.fetch(
        "SELECT kind FROM tasks WHERE workflow_id = $1 AND status = 'requested'", workflow_id
    )
    assert open_tasks == []  # every task ended with the pathway; the notices ask nothing
    notices = await tasks_of(pool, workflow_id, TaskKind.PATHWAY_CLOSED)
    assert {r["status"] for r in notices} == {"completed"}
    told = {r["recipient"] for r in notices}
    assert factories.CLINICIAN in told
    if phase in (Phase.MEETING_INVITED, Phase.FOLLOW_UP):
        assert "tsb@example.invalid" in told
    if phase is Phase.FOLLOW_UP:
        assert {"fact-bergen", "bergen-bolig"} <= told


@pytest.mark.parametrize("mode", [ObjectionMode.REDACT, ObjectionMode.SUPPRESS])
async def test_objection_keeps_patient_content_from_other_organisations(
    time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str, mode: ObjectionMode
) -> None:
    env, client = time_skipping_env, time_skipping_env.client
    by = factories.CLINICIAN
    async with running_pathways(
        client, pool, task_queue, PathwaySettings(objection_mode=mode)
    ) as api:
        plan = [
            Measure(
                id="poliklinikk", kind=MeasureKind.OUTPATIENT, provider=Provider.TSB, responsible=by
            ),
            Measure(
                id="bolig",
                kind=MeasureKind.MUNICIPAL_HOUSING,
                provider=Provider.KOMMUNE,
                responsible="bergen-bolig",
                depends_on=["poliklinikk"],
            ),
            Measure(
                id="behandling",
                kind=MeasureKind.OUTPATIENT,
                provider=Provider.TSB,
                responsible="9000999",
                depends_on=["poliklinikk"],
            ),
        ]
        workflow_id, handle, _ = await to_follow_up(env, client, api, plan=plan)
        objected = await api.send(
            StepName.RECORD_OBJECTION, workflow_id, Objection(recorded_by=by, note="muntlig")
        )
        assert objected.objection is not None
        assert "objection to sharing recorded" in objected.done[-1]
        await api.send(
            StepName.COMPLETE_MEASURE, workflow_id, MeasureStep(measure_id="poliklinikk", by=by)
        )

        tasks = {
            r["reference"]: r for r in await tasks_of(pool, workflow_id, TaskKind.START_MEASURE)
        }
        internal = tasks["behandling"]
        assert internal["subject"] == f"Start tiltak behandling i ROP-forløp {objected.referral_id}"
        # Whatever the mode, a task leaving the unit is withheld, not sent redacted: a redacted
        # task still told the party that a pathway exists (patch objection-asks-consent; runs
        # from before redact as `objection_mode` says).
        assert "bolig" not in tasks
        withheld = await pool.fetchval(
            "SELECT count(*) FROM pathway_events WHERE workflow_id = $1 AND kind = 'notification-withheld'",
            workflow_id,
        )
        assert withheld == 1
        assert (await _row(pool, workflow_id))["objection"] is True
        await close_and_end(api, handle)


async def test_after_an_objection_only_consented_parties_outside_the_unit_are_invited(
    time_skipping_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    pathway_api: Pathways,
) -> None:
    env, client = time_skipping_env, time_skipping_env.client
    now = await env.get_current_time()
    workflow_id, handle = await start(client, pathway_api, factories.referral_data(now))
    await pathway_api.send(
        StepName.RECORD_OBJECTION, workflow_id, Objection(recorded_by=factories.CLINICIAN)
    )
    await pathway_api.send(StepName.ASSESS, workflow_id, factories.assessment())
    parties = [
        Participant(role=ParticipantRole.TSB, name="TSB", address="tsb@example.invalid"),
        Participant(role=ParticipantRole.KOMMUNE, name="Bergen", address="bergen@example.invalid"),
        Participant(role=ParticipantRole.FASTLEGE, name="GP", address="gp@example.invalid"),
    ]
    invite = factories.invite(now, parties).model_copy(
        update={"consented_after_objection": [ParticipantRole.KOMMUNE]}
    )
    await pathway_api.send(StepName.INVITE_TO_MEETING, workflow_id, invite)

    invitations = {
        r["recipient"]: r["subject"]
        for r in await tasks_of(pool, workflow_id, TaskKind.MEETING_INVITATION)
    }
    # The receiving unit's own, and the party the patient consented to: the full invitation.
    assert set(invitations) == {"tsb@example.invalid", "bergen@example.invalid"}
    assert all(
        subject.startswith("Innkalling til avklaringsmøte") for subject in invitations.values()
    )
    # The GP, without consent: nothing, and the inviter is asked to reach them otherwise.
    reach = await tasks_of(pool, workflow_id, TaskKind.REACH_PARTY)
    assert [(r["recipient"], r["subject"]) for r in reach] == [
        (
            factories.CLINICIAN,
            "Nå fastlege på annen måte: pasienten har reservert seg mot deling",
        )
    ]
    withheld = await pool.fetchval(
        "SELECT count(*) FROM pathway_events WHERE workflow_id = $1 AND kind = 'notification-withheld'",
        workflow_id,
    )
    assert withheld == 1
    await close_and_end(pathway_api, handle)


async def test_search_attributes_describe_the_pathway_without_personal_data(
    time_skipping_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    pathway_api: Pathways,
) -> None:
    env, client = time_skipping_env, time_skipping_env.client
    _, handle, held = await to_follow_up(env, client, pathway_api)
    described = await handle.describe()
    search = described.typed_search_attributes
    assert search.get(sa.PHASE) == "follow-up"
    assert search.get(sa.HEALTH_TRUST) == "helse-bergen"
    assert search.get(sa.MUNICIPALITY) == "4601"
    assert search.get(sa.RECEIVING_UNIT) == "TSB"
    assert search.get(sa.MEETING_INVITED_ON_TIME) is True
    assert search.get(sa.HAS_CRISIS_PLAN) is False
    # The deadline's day reads the same in UTC and in Oslo.
    deadline = search.get(sa.MEETING_DEADLINE)
    assert deadline is not None
    assert deadline.date() == held.meeting_deadline
    assert deadline.astimezone(calendar.OSLO).date() == held.meeting_deadline
    values = " ".join(str(pair.value) for pair in search)
    assert factories.national_id("150586951") not in values
    assert "pseudo-123" not in values

    summary = await described.static_summary()
    assert summary is not None
    assert summary.startswith(f"ROP pathway for referral {held.referral_id}: TSB, helse-bergen")
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert metadata.current_details.startswith(summary)
    assert "Phase: follow-up. Next: register kriseplan by " in metadata.current_details
    await close_and_end(pathway_api, handle)


async def test_updates_sent_while_a_review_rolls_over_are_not_lost(
    time_skipping_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
) -> None:
    env, client = time_skipping_env, time_skipping_env.client
    by = factories.CLINICIAN
    async with running_pathways(
        client, pool, task_queue, PathwaySettings(continue_as_new_after_events=0)
    ) as api:
        workflow_id, handle, _ = await to_follow_up(env, client, api)
        review = Review(reviewed_by=factories.KOORDINATOR, outcome=ReviewOutcome.CONTINUE)
        reviewed, started, completed = await asyncio.gather(
            api.send(StepName.COMPLETE_REVIEW, workflow_id, review),
            api.send(StepName.START_MEASURE, workflow_id, MeasureStep(measure_id="fact", by=by)),
            api.send(
                StepName.START_MEASURE, workflow_id, MeasureStep(measure_id="poliklinikk", by=by)
            ),
        )
        await eventually_runs(client, workflow_id, 2)
        after = await api.status(workflow_id)
        assert after.reviews_completed == 1
        assert _statuses(after)["fact"] is MeasureStatus.ACTIVE
        assert _statuses(after)["poliklinikk"] is MeasureStatus.ACTIVE
        kinds = await pool.fetch(
            "SELECT kind FROM pathway_events WHERE workflow_id = $1 AND kind IN "
            "('review-completed', 'measure-started')",
            workflow_id,
        )
        assert sorted(r["kind"] for r in kinds) == [
            "measure-started",
            "measure-started",
            "review-completed",
        ]
        assert reviewed.phase is started.phase is completed.phase is Phase.FOLLOW_UP
        # The run continued as new has no static summary; its current details say what it is.
        latest = client.get_workflow_handle(workflow_id)
        metadata = await latest.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
        assert metadata.current_details.startswith(
            f"ROP pathway for referral {after.referral_id}: TSB, helse-bergen, kommune 4601\n"
            "Phase: follow-up."
        )
        await close_and_end(api, handle)


async def test_every_crisis_plan_version_is_chased_past_its_revision_date(
    time_skipping_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    pathway_api: Pathways,
) -> None:
    env, client = time_skipping_env, time_skipping_env.client
    workflow_id, handle, _ = await to_follow_up(env, client, pathway_api, review_weeks=52)
    # The meeting is held: its invitations have done their work.
    invitations = await tasks_of(pool, workflow_id, TaskKind.MEETING_INVITATION)
    assert [r["status"] for r in invitations] == ["completed"]
    today = calendar.local_date(await env.get_current_time())
    first_revision = today + timedelta(days=20)
    await pathway_api.send(
        StepName.REGISTER_CRISIS_PLAN, workflow_id, factories.crisis_plan(first_revision)
    )

    # On its revision day the task is raised, due at the end of that day.
    await _sleep_until(env, calendar.at_local_time(first_revision, time(9, 0)))
    due = await eventually(
        pathway_api, workflow_id, lambda s: open_task(s, TaskKind.REVISE_CRISIS_PLAN)
    )
    [revise] = [t for t in due.open_tasks if t.kind is TaskKind.REVISE_CRISIS_PLAN]
    assert revise.due_at == calendar.end_of_day(first_revision)
    assert not due.overdue

    # The day after, the plan is overdue and its responsible reminded.
    await _sleep_until(env, calendar.end_of_day(first_revision) + timedelta(hours=1))
    late = await eventually(pathway_api, workflow_id, lambda s: s.crisis_plan.revision_overdue)
    assert late.overdue_items == ["crisis plan revision"]
    [reminder] = await tasks_of(pool, workflow_id, TaskKind.CRISIS_PLAN_REVISION_REMINDER)
    assert reminder["recipient"] == factories.CRISIS_PLAN_RESPONSIBLE
    assert "versjon 1" in reminder["subject"]
    described = await handle.describe()
    assert described.typed_search_attributes.get(sa.OVERDUE) is True
    assert await pool.fetchval(
        "SELECT crisis_plan_overdue FROM pathways WHERE workflow_id = $1", workflow_id
    )

    # Five working days on (Christmas does not count), it escalates to the unit's leader.
    escalation_day = calendar.add_working_days(
        first_revision, 5, calendar.WorkingDayRule.MONDAY_TO_FRIDAY
    )
    await _sleep_until(env, calendar.end_of_day(escalation_day) - timedelta(hours=1))
    assert not (await pathway_api.status(workflow_id)).crisis_plan.revision_escalated
    await _sleep_until(env, calendar.end_of_day(escalation_day) + timedelta(hours=1))
    await eventually(pathway_api, workflow_id, lambda s: s.crisis_plan.revision_escalated)
    [escalation] = await tasks_of(pool, workflow_id, TaskKind.CRISIS_PLAN_REVISION_ESCALATION)
    assert escalation["recipient"] != factories.CRISIS_PLAN_RESPONSIBLE

    # Version 2 settles it: the chase's tasks are done, nothing is overdue...
    now = calendar.local_date(await env.get_current_time())
    second_revision = now + timedelta(days=30)
    revised = await pathway_api.send(
        StepName.REGISTER_CRISIS_PLAN,
        workflow_id,
        factories.crisis_plan(second_revision, version=2),
    )
    assert (revised.overdue, revised.crisis_plan.revision_overdue) == (False, False)
    assert [
        (r["kind"], r["status"])
        for r in await tasks_of(pool, workflow_id)
        if "crisis-plan" in r["kind"] and r["kind"] != "make-crisis-plan"
    ] == [
        ("revise-crisis-plan", "completed"),
        ("crisis-plan-revision-reminder", "completed"),
        ("crisis-plan-revision-escalation", "completed"),
    ]
    assert not await pool.fetchval(
        "SELECT crisis_plan_overdue FROM pathways WHERE workflow_id = $1", workflow_id
    )

    # ...and version 2 is chased in its turn.
    await _sleep_until(env, calendar.end_of_day(second_revision) + timedelta(hours=1))
    await eventually(pathway_api, workflow_id, lambda s: s.crisis_plan.revision_overdue)
    reminders = await tasks_of(pool, workflow_id, TaskKind.CRISIS_PLAN_REVISION_REMINDER)
    assert ["versjon 2" in r["subject"] for r in reminders] == [False, True]
    await close_and_end(pathway_api, handle)
    assert await assert_chases_are_due(pool, handle.id) > 0
    await save_history_if_recording(handle, "crisis_plan_revision_chase")


async def _sleep_until(env: WorkflowEnvironment, instant: datetime) -> None:
    await env.sleep(instant - await env.get_current_time())
