"""The pathway workflow on Temporal's time-skipping test server, with real activities and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import asyncpg
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment

from rop_domain import calendar
from rop_domain.deadlines import PathwaySettings
from rop_domain.models import NO_ADDRESS, AssessmentDecision, MeetingMove, Phase
from rop_domain.state import PathwayInput
from rop_domain.steps import StepName
from rop_domain.tasks import TaskKind
from starter.pathways import Pathways, PathwayStepRejected
from tests import factories
from tests.pathway_harness import (
    assert_chases_are_due,
    close_and_end,
    eventually,
    hold_meeting,
    pathways,
    running_pathways,
    save_history_if_recording,
    start,
    tasks_of,
)
from workflows import search_attributes
from workflows.pathway import RopPathway


async def _pathway_row(pool: asyncpg.Pool, workflow_id: str) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM pathways WHERE workflow_id = $1", workflow_id)
    assert row is not None
    return row


async def _event_types(handle: WorkflowHandle[Any, Any]) -> list[EventType.ValueType]:
    return [event.event_type for event in (await handle.fetch_history()).events]


_WORKFLOW_TASK_EVENTS = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
}


async def _step_events(handle: WorkflowHandle[Any, Any]) -> list[EventType.ValueType]:
    """History without workflow-task bookkeeping, which the time-skipping server writes even
    for the task that ran a rejected validator (a real server drops that speculative task)."""
    return [kind for kind in await _event_types(handle) if kind not in _WORKFLOW_TASK_EVENTS]


async def test_invite_on_time_cancels_timers_and_records_everything(
    time_skipping_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
) -> None:
    client = time_skipping_env.client
    async with running_pathways(client, pool, task_queue) as api:
        now = await time_skipping_env.get_current_time()
        context = {
            "pathway_reason": "cooperation-not-working",
            "birth_year": 2001,
            "residence": "institution",
        }
        workflow_id, handle = await start(client, api, factories.referral_data(now, **context))

        intake = await eventually(api, workflow_id, lambda s: len(s.recommended_participants) > 0)
        recorded = await _pathway_row(pool, workflow_id)
        assert {key: recorded[key] for key in context} == context
        assert {p.role.value for p in intake.recommended_participants} == {
            "phv",
            "tsb",
            "fastlege",
            "kommune",
        }
        assert intake.meeting_deadline == calendar.deadline_after(
            now, 10, calendar.WorkingDayRule.MONDAY_TO_FRIDAY
        )

        assessed = await api.send(StepName.ASSESS, workflow_id, factories.assessment())
        assert assessed.phase is Phase.AWAITING_INVITE

        invited = await api.send(
            StepName.INVITE_TO_MEETING,
            workflow_id,
            factories.invite(now, list(intake.recommended_participants)),
        )
        assert invited.phase is Phase.MEETING_INVITED
        assert invited.invite is not None
        assert invited.invite.on_time
        assert not invited.reminder_sent
        events = await _event_types(handle)
        # The pending reminders: the assessment's (at the assessment) and the meeting's.
        assert events.count(EventType.EVENT_TYPE_TIMER_CANCELED) == 2
        assert EventType.EVENT_TYPE_TIMER_FIRED not in events

        held = await hold_meeting(time_skipping_env, api, invited)
        assert held.phase is Phase.FOLLOW_UP
        row = await _pathway_row(pool, workflow_id)
        assert row["phase"] == "follow-up"
        assert row["invited_on_time"] is True
        assert row["invite_working_days"] == 0
        assert row["overdue"] is False
        assert row["meeting_held_at"] is not None
        assert row["koordinator"] == factories.KOORDINATOR
        kinds = [(t["kind"], t["status"]) for t in await tasks_of(pool, workflow_id)]
        assert kinds[0] == ("assess-referral", "completed")
        # The invitations did their work: the meeting completed them.
        assert kinds.count(("meeting-invitation", "completed")) == 4
        assert not any(kind.startswith("invite-to-meeting-reminder") for kind, _ in kinds)
        logged = await pool.fetch(
            "SELECT kind FROM pathway_events WHERE workflow_id = $1 ORDER BY id", workflow_id
        )
        assert [r["kind"] for r in logged][:4] == [
            "referral-received",
            "assessed",
            "meeting-invited",
            "meeting-held",
        ]

        outcome = await close_and_end(api, handle)
        assert outcome.phase is Phase.CLOSED
        assert outcome.invited_on_time is True
    await save_history_if_recording(handle, "invite_on_time")


async def test_reminder_fires_two_working_days_before_the_deadline(
    time_skipping_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    pathway_api: Pathways,
) -> None:
    client = time_skipping_env.client
    now = await time_skipping_env.get_current_time()
    workflow_id, handle = await start(client, pathway_api, factories.referral_data(now))
    status = await pathway_api.send(StepName.ASSESS, workflow_id, factories.assessment())
    assert status.reminder_at.astimezone(calendar.OSLO).hour == 8

    await time_skipping_env.sleep(status.reminder_at - now - timedelta(minutes=5))
    before = await pathway_api.status(workflow_id)
    assert not before.reminder_sent

    await time_skipping_env.sleep(timedelta(minutes=10))
    reminded = await eventually(pathway_api, workflow_id, lambda s: s.reminder_sent)
    assert not reminded.overdue
    tasks = await tasks_of(pool, workflow_id)
    reminder = [t for t in tasks if t["kind"] == "invite-to-meeting-reminder"]
    assert len(reminder) == 1
    assert reminder[0]["recipient"] == factories.CLINICIAN
    assert reminder[0]["subject"].endswith(status.meeting_deadline.strftime("%d.%m.%Y"))

    invited_at = await time_skipping_env.get_current_time()
    invited = await pathway_api.send(
        StepName.INVITE_TO_MEETING, workflow_id, factories.invite(invited_at)
    )
    assert invited.invite is not None
    assert invited.invite.on_time
    statuses = {t["kind"]: t["status"] for t in await tasks_of(pool, workflow_id)}
    assert statuses["invite-to-meeting-reminder"] == "cancelled"
    await hold_meeting(time_skipping_env, pathway_api, invited)
    await close_and_end(pathway_api, handle)
    await save_history_if_recording(handle, "reminder")


async def test_escalation_after_the_deadline_day_marks_the_pathway_overdue(
    time_skipping_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    pathway_api: Pathways,
) -> None:
    client = time_skipping_env.client
    now = await time_skipping_env.get_current_time()
    workflow_id, handle = await start(client, pathway_api, factories.referral_data(now))
    status = await pathway_api.send(StepName.ASSESS, workflow_id, factories.assessment())
    # The deadline day itself is still on time; the escalation comes at its midnight.
    assert status.escalation_at == calendar.end_of_day(status.meeting_deadline)

    await time_skipping_env.sleep(status.escalation_at - now - timedelta(minutes=1))
    assert not (await pathway_api.status(workflow_id)).overdue
    await time_skipping_env.sleep(timedelta(minutes=2))
    overdue = await eventually(pathway_api, workflow_id, lambda s: s.overdue)
    assert overdue.reminder_sent

    described = await handle.describe()
    assert described.typed_search_attributes.get(search_attributes.OVERDUE) is True
    assert described.typed_search_attributes.get(search_attributes.PHASE) == "awaiting-invite"
    assert (await _pathway_row(pool, workflow_id))["overdue"] is True
    escalation = [
        t for t in await tasks_of(pool, workflow_id) if t["kind"] == "meeting-deadline-escalation"
    ]
    assert [t["recipient"] for t in escalation] == ["tsb.leder@example.invalid"]

    # Invited on the first working day after the deadline (whatever weekday today is).
    first_late_day = calendar.add_working_days(status.meeting_deadline, 1)
    await time_skipping_env.sleep(
        calendar.at_local_time(first_late_day, time(9)) - await time_skipping_env.get_current_time()
    )
    late = await time_skipping_env.get_current_time()
    invited = await pathway_api.send(
        StepName.INVITE_TO_MEETING, workflow_id, factories.invite(late)
    )
    assert invited.invite is not None
    assert invited.invite.on_time is False
    assert invited.invite.working_days_used == 11
    assert not invited.overdue  # the invite, though late, settles the meeting deadline
    assert invited.meeting_escalated
    await hold_meeting(time_skipping_env, pathway_api, invited)
    outcome = await close_and_end(pathway_api, handle)
    assert outcome.invited_on_time is False
    assert (await _pathway_row(pool, workflow_id))["invited_on_time"] is False
    assert await assert_chases_are_due(pool, handle.id) > 0
    await save_history_if_recording(handle, "escalation")


async def test_not_in_target_group_tells_the_referrer_and_ends(
    time_skipping_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
) -> None:
    client = time_skipping_env.client
    async with running_pathways(client, pool, task_queue) as api:
        now = await time_skipping_env.get_current_time()
        workflow_id, handle = await start(client, api, factories.referral_data(now))
        status = await api.send(
            StepName.ASSESS,
            workflow_id,
            factories.assessment(AssessmentDecision.NOT_IN_TARGET_GROUP),
        )
        assert status.phase is Phase.NOT_IN_TARGET_GROUP
        outcome = await handle.result()
        assert outcome.phase is Phase.NOT_IN_TARGET_GROUP
        assert EventType.EVENT_TYPE_TIMER_FIRED not in await _event_types(handle)

        with pytest.raises(PathwayStepRejected, match="has ended"):
            await api.send(StepName.INVITE_TO_MEETING, workflow_id, factories.invite(now))
        await save_history_if_recording(handle, "not_in_target_group")

    row = await _pathway_row(pool, workflow_id)
    assert (row["phase"], row["assessment_decision"]) == (
        "not-in-target-group",
        "not-in-target-group",
    )
    tasks = [(t["kind"], t["recipient"], t["status"]) for t in await tasks_of(pool, workflow_id)]
    assert tasks == [
        ("assess-referral", factories.CLINICIAN, "completed"),
        ("referral-not-accepted", factories.GP, "completed"),
    ]


async def test_submitting_the_same_referral_twice_returns_the_existing_pathway(
    time_skipping_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
) -> None:
    client = time_skipping_env.client
    async with running_pathways(client, pool, task_queue) as api:
        now = await time_skipping_env.get_current_time()
        data = factories.referral_data(now)
        workflow_id, handle = await start(client, api, data)
        first_run = (await handle.describe()).run_id
        again = await api.submit(
            factories.parse_referral_for_test(
                data | {"received_at": (now + timedelta(hours=1)).isoformat()}
            )
        )
        assert (again.workflow_id, again.created) == (workflow_id, False)

        await api.send(
            StepName.ASSESS,
            workflow_id,
            factories.assessment(AssessmentDecision.NOT_IN_TARGET_GROUP),
        )
        await handle.result()
        after_end = await api.submit(factories.parse_referral_for_test(data))
        assert (after_end.workflow_id, after_end.created) == (workflow_id, False)

    # One run only: the first execution of the id is still the latest one.
    assert (await handle.describe()).run_id == first_run
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM pathways WHERE referral_id = $1", data["referral_id"]
        )
        == 1
    )


async def test_invalid_updates_are_rejected_before_they_enter_history(
    time_skipping_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    pathway_api: Pathways,
) -> None:
    client = time_skipping_env.client
    now = await time_skipping_env.get_current_time()
    workflow_id, handle = await start(client, pathway_api, factories.referral_data(now))
    await eventually(pathway_api, workflow_id, lambda s: len(s.recommended_participants) > 0)
    history_before = await _step_events(handle)

    rejections = [
        (
            pathway_api.send(StepName.INVITE_TO_MEETING, workflow_id, factories.invite(now)),
            "must be assessed",
        ),
        (
            pathway_api.send(StepName.RECORD_MEETING, workflow_id, factories.meeting_held(now)),
            "no meeting",
        ),
    ]
    for call, message in rejections:
        with pytest.raises(PathwayStepRejected, match=message):
            await call

    await pathway_api.send(StepName.ASSESS, workflow_id, factories.assessment())
    after_assessment = await _step_events(handle)
    with pytest.raises(PathwayStepRejected, match="already assessed"):
        await pathway_api.send(StepName.ASSESS, workflow_id, factories.assessment())
    past = factories.invite(now).model_copy(update={"meeting_at": now - timedelta(hours=1)})
    with pytest.raises(PathwayStepRejected, match="meeting_at lies in the past"):
        await pathway_api.send(StepName.INVITE_TO_MEETING, workflow_id, past)
    # A client that bypasses our models: the payload itself fails validation in the worker.
    raw = factories.invite(now).model_dump(mode="json") | {"participants": []}
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(RopPathway.invite_to_meeting, raw)  # type: ignore[arg-type]

    assert await _step_events(handle) == after_assessment
    accepted = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    assert history_before.count(accepted) == 0
    assert after_assessment.count(accepted) == 1
    status = await pathway_api.status(workflow_id)
    assert status.phase is Phase.AWAITING_INVITE
    assert status.invite is None

    later = await time_skipping_env.get_current_time()
    await pathway_api.send(StepName.INVITE_TO_MEETING, workflow_id, factories.invite(later))
    early = factories.meeting_held(later - timedelta(hours=1))
    with pytest.raises(PathwayStepRejected, match="before the invitation"):
        await pathway_api.send(StepName.RECORD_MEETING, workflow_id, early)
    future = factories.meeting_held(later + timedelta(days=1))
    with pytest.raises(PathwayStepRejected, match="in the future"):
        await pathway_api.send(StepName.RECORD_MEETING, workflow_id, future)
    await handle.terminate("test done")


async def test_a_new_pathway_is_filterable_before_its_first_task_runs(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    client = time_skipping_env.client
    api = pathways(client, task_queue)
    now = await time_skipping_env.get_current_time()
    # No worker: only what the starter set at start can be there.
    _, handle = await start(client, api, factories.referral_data(now))
    search = (await handle.describe()).typed_search_attributes
    assert search.get(search_attributes.PHASE) == "awaiting-assessment"
    assert search.get(search_attributes.HEALTH_TRUST) == "helse-bergen"
    deadline = search.get(search_attributes.MEETING_DEADLINE)
    assert deadline is not None
    assert deadline == datetime.combine(
        calendar.deadline_after(now, 10, calendar.WorkingDayRule.MONDAY_TO_FRIDAY),
        time(12, 0, tzinfo=UTC),
    )
    assert search.get(search_attributes.OVERDUE) is False
    await handle.terminate("no worker in this test")


async def test_a_database_outage_delays_a_step_and_records_it_once(
    time_skipping_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    owner_pool: asyncpg.Pool,
    task_queue: str,
    pathway_api: Pathways,
) -> None:
    client = time_skipping_env.client
    now = await time_skipping_env.get_current_time()
    workflow_id, handle = await start(client, pathway_api, factories.referral_data(now))
    await eventually(pathway_api, workflow_id, lambda s: bool(s.recommended_participants))
    # The event log disappears for a while: the step's writes fail and are retried.
    await owner_pool.execute("ALTER TABLE pathway_events RENAME TO pathway_events_away")
    try:
        assessing = asyncio.create_task(
            pathway_api.send(StepName.ASSESS, workflow_id, factories.assessment())
        )
        await asyncio.sleep(2.5)
        assert not assessing.done()
    finally:
        await owner_pool.execute("ALTER TABLE pathway_events_away RENAME TO pathway_events")
    assessed = await asyncio.wait_for(assessing, timeout=30)
    assert assessed.phase is Phase.AWAITING_INVITE
    logged = await pool.fetch(
        "SELECT kind FROM pathway_events WHERE workflow_id = $1 ORDER BY id", workflow_id
    )
    assert [r["kind"] for r in logged] == ["referral-received", "assessed"]
    assert (await _pathway_row(pool, workflow_id))["assessment_decision"] == "in-target-group"
    await close_and_end(pathway_api, handle)


async def test_a_meeting_moves_its_invitations_with_it_and_far_dates_need_a_reason(
    time_skipping_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    pathway_api: Pathways,
) -> None:
    env, client = time_skipping_env, time_skipping_env.client
    now = await env.get_current_time()
    workflow_id, handle = await start(client, pathway_api, factories.referral_data(now))
    await pathway_api.send(StepName.ASSESS, workflow_id, factories.assessment())
    with pytest.raises(PathwayStepRejected, match="more than 180 days ahead"):
        await pathway_api.send(
            StepName.INVITE_TO_MEETING,
            workflow_id,
            factories.invite(now).model_copy(update={"meeting_at": now + timedelta(days=400)}),
        )
    only_tsb = factories.invite(now).model_copy(update={"absent_reasons": {}})
    with pytest.raises(PathwayStepRejected) as unexplained:
        await pathway_api.send(StepName.INVITE_TO_MEETING, workflow_id, only_tsb)
    assert str(unexplained.value) == (
        "recommended parties not invited: phv, fastlege, kommune; invite them, or say why "
        "not in absent_reasons"
    )
    invited = await pathway_api.send(StepName.INVITE_TO_MEETING, workflow_id, factories.invite(now))
    assert invited.invite is not None
    first_time = invited.invite.invite.meeting_at
    reasons = await pool.fetchval(
        "SELECT details->'absent_reasons' FROM pathway_events "
        "WHERE workflow_id = $1 AND kind = 'meeting-invited'",
        workflow_id,
    )
    assert set(json.loads(reasons)) == {"phv", "fastlege", "kommune"}

    later = first_time + timedelta(days=3)
    move = MeetingMove(moved_by=factories.CLINICIAN, meeting_at=later, reason="Sykdom")
    moved = await pathway_api.send(StepName.MOVE_MEETING, workflow_id, move)
    assert moved.invite is not None
    assert moved.invite.invite.meeting_at == later
    assert (moved.invite.sent_at, moved.invite.on_time) == (
        invited.invite.sent_at,
        invited.invite.on_time,
    )
    invitations = await tasks_of(pool, workflow_id, TaskKind.MEETING_INVITATION)
    assert [r["status"] for r in invitations] == ["cancelled", "requested"]
    assert later.astimezone(calendar.OSLO).strftime("%d.%m.%Y") in invitations[1]["subject"]
    event = await pool.fetchrow(
        "SELECT details FROM pathway_events WHERE workflow_id = $1 AND kind = 'meeting-moved'",
        workflow_id,
    )
    assert event is not None
    assert json.loads(event["details"])["previous_meeting_at"] == first_time.isoformat()
    assert (
        await pool.fetchval("SELECT meeting_at FROM pathways WHERE workflow_id = $1", workflow_id)
        == later
    )

    with pytest.raises(PathwayStepRejected, match="at that time already"):
        await pathway_api.send(StepName.MOVE_MEETING, workflow_id, move)
    held = await hold_meeting(env, pathway_api, moved)
    with pytest.raises(PathwayStepRejected, match="no meeting is waiting to be held"):
        await pathway_api.send(
            StepName.MOVE_MEETING,
            workflow_id,
            move.model_copy(update={"meeting_at": later + timedelta(days=1)}),
        )
    assert held.meeting is not None
    await close_and_end(pathway_api, handle)
    await save_history_if_recording(handle, "meeting_moved")


async def test_a_pathway_started_before_noon_days_keeps_its_days_as_they_were(
    time_skipping_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    pathway_api: Pathways,
) -> None:
    """Its history must replay unchanged: it upserts what it upserted before the rule."""
    client = time_skipping_env.client
    now = await time_skipping_env.get_current_time()
    referral = factories.parse_referral_for_test(factories.referral_data(now))
    deadline = calendar.deadline_after(now, 10, calendar.WorkingDayRule.MONDAY_TO_FRIDAY)
    as_before = search_attributes.pathway_values(
        phase="awaiting-assessment",
        referral=referral,
        meeting_deadline=deadline,
        has_crisis_plan=False,
        overdue=False,
        days_at_noon=False,
    )
    handle = await client.start_workflow(
        RopPathway.run,
        PathwayInput(referral=referral, settings=PathwaySettings()),
        id=f"rop-{referral.referral_id}",
        task_queue=task_queue,
        search_attributes=TypedSearchAttributes(
            [SearchAttributePair(key, value) for key, value in as_before]
        ),
    )
    await pathway_api.send(StepName.ASSESS, handle.id, factories.assessment())
    search = (await handle.describe()).typed_search_attributes
    assert search.get(search_attributes.PHASE) == "awaiting-invite"  # upserted...
    stored = search.get(search_attributes.MEETING_DEADLINE)
    assert stored == calendar.at_local_time(deadline, time(0, 0))  # ...the day as before
    assert stored is not None
    assert search_attributes.day_of(stored) == deadline
    await close_and_end(pathway_api, handle)


async def test_the_seeds_parties_are_recommended_though_the_directory_lacks_them(
    time_skipping_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    pathway_api: Pathways,
) -> None:
    env, client = time_skipping_env, time_skipping_env.client
    now = await env.get_current_time()
    data = factories.referral_data(now, municipality="5001", general_practitioner="9099999")
    workflow_id, handle = await start(client, pathway_api, data)
    await pathway_api.send(StepName.ASSESS, workflow_id, factories.assessment())
    status = await pathway_api.status(workflow_id)
    recommended = {p.role.value: p for p in status.recommended_participants}
    assert set(recommended) == {"phv", "tsb", "fastlege", "kommune"}
    assert recommended["fastlege"].address == NO_ADDRESS  # reached otherwise
    assert recommended["kommune"].name == "Kommune 5001"
    only_tsb = factories.invite(now).model_copy(update={"absent_reasons": {}})
    with pytest.raises(PathwayStepRejected, match="recommended parties not invited"):
        await pathway_api.send(StepName.INVITE_TO_MEETING, workflow_id, only_tsb)
    # Every recommended party invited as recommended: the two without an address must say
    # how they were reached; then nothing is sent to them, and the invite records how.
    everyone = factories.invite(now, list(status.recommended_participants))
    with pytest.raises(PathwayStepRejected, match="no address for fastlege, kommune"):
        await pathway_api.send(StepName.INVITE_TO_MEETING, workflow_id, everyone)
    by_phone = everyone.model_copy(
        update={
            "participants": [
                p.model_copy(update={"reached_by": "telefon"}) if p.address == NO_ADDRESS else p
                for p in everyone.participants
            ]
        }
    )
    await pathway_api.send(StepName.INVITE_TO_MEETING, workflow_id, by_phone)
    sent = await tasks_of(pool, workflow_id, TaskKind.MEETING_INVITATION)
    assert NO_ADDRESS not in {t["recipient"] for t in sent}
    assert len(sent) == 2  # PHV and TSB, whatever the directory gives for them
    reached = await pool.fetchval(
        "SELECT details->'reached_by' FROM pathway_events WHERE workflow_id = $1 "
        "AND kind = 'meeting-invited'",
        workflow_id,
    )
    assert json.loads(reached) == {"fastlege": "telefon", "kommune": "telefon"}
    await close_and_end(pathway_api, handle)


async def test_an_escalation_without_a_leader_goes_to_the_unit_and_flags_the_pathway(
    time_skipping_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    pathway_api: Pathways,
) -> None:
    env, client = time_skipping_env, time_skipping_env.client
    now = await env.get_current_time()
    # A trust the directory does not know: no leader, and no contact point for its TSB.
    data = factories.referral_data(now, health_trust="helse-nowhere")
    workflow_id, handle = await start(client, pathway_api, data)
    await pathway_api.send(StepName.ASSESS, workflow_id, factories.assessment())
    status = await pathway_api.status(workflow_id)
    await env.sleep(status.escalation_at - now + timedelta(minutes=1))
    flagged = await eventually(pathway_api, workflow_id, lambda s: s.escalated_to_unit == 1)
    assert flagged.overdue
    escalation = await tasks_of(pool, workflow_id, TaskKind.MEETING_DEADLINE_ESCALATION)
    assert [t["recipient"] for t in escalation] == ["helse-nowhere/TSB"]
    described = await handle.describe()
    assert described.typed_search_attributes.get(search_attributes.ESCALATED_TO_UNIT) == 1
    await close_and_end(pathway_api, handle)


async def test_after_the_assessment_the_clinician_holds_the_invite_task_until_the_invite(
    time_skipping_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    pathway_api: Pathways,
) -> None:
    env, client = time_skipping_env, time_skipping_env.client
    now = await env.get_current_time()
    workflow_id, handle = await start(client, pathway_api, factories.referral_data(now))
    assessed = await pathway_api.send(StepName.ASSESS, workflow_id, factories.assessment())
    rows = await pool.fetch(
        "SELECT recipient, status, due_at FROM tasks WHERE workflow_id = $1 AND kind = $2",
        workflow_id,
        TaskKind.INVITE_TO_MEETING.value,
    )
    assert [(r["recipient"], r["status"]) for r in rows] == [(factories.CLINICIAN, "requested")]
    assert rows[0]["due_at"] == assessed.escalation_at  # the end of the deadline day
    assert [t.kind for t in assessed.open_tasks] == [TaskKind.INVITE_TO_MEETING]
    invited = await pathway_api.send(StepName.INVITE_TO_MEETING, workflow_id, factories.invite(now))
    status = await pool.fetchval(
        "SELECT status FROM tasks WHERE workflow_id = $1 AND kind = $2",
        workflow_id,
        TaskKind.INVITE_TO_MEETING.value,
    )
    assert status == "completed"
    assert TaskKind.INVITE_TO_MEETING not in [t.kind for t in invited.open_tasks]
    await close_and_end(pathway_api, handle)


async def test_the_assessment_deadline_is_reminded_and_escalated_across_christmas(
    time_skipping_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    pathway_api: Pathways,
) -> None:
    env, client = time_skipping_env, time_skipping_env.client
    # Received on the Monday ten days before Christmas Eve, the next such one ahead.
    now = await env.get_current_time()
    year = (
        now.year if now.astimezone(calendar.OSLO).date() < date(now.year, 12, 14) else now.year + 1
    )
    monday = date(year, 12, 14) - timedelta(days=date(year, 12, 14).weekday())
    await env.sleep(calendar.at_local_time(monday, time(10)) - now)
    received = await env.get_current_time()
    workflow_id, handle = await start(client, pathway_api, factories.referral_data(received))
    status = await pathway_api.status(workflow_id)
    deadline = calendar.add_working_days(calendar.local_date(received), 10)
    assert status.assessment_deadline == deadline
    assert (deadline - monday).days > 14  # Christmas Day and Boxing Day do not count

    await env.sleep(calendar.end_of_day(deadline) - received + timedelta(minutes=5))
    late = await eventually(pathway_api, workflow_id, lambda s: "assessment" in s.overdue_items)
    assert late.overdue
    reminder = await tasks_of(pool, workflow_id, TaskKind.ASSESSMENT_REMINDER)
    escalation = await tasks_of(pool, workflow_id, TaskKind.ASSESSMENT_ESCALATION)
    assert [t["recipient"] for t in reminder] == [factories.CLINICIAN]
    assert [t["recipient"] for t in escalation] == ["tsb.leder@example.invalid"]
    described = await handle.describe()
    assert described.typed_search_attributes.get(search_attributes.OVERDUE) is True

    assessed = await pathway_api.send(StepName.ASSESS, workflow_id, factories.assessment())
    assert "assessment" not in assessed.overdue_items
    closed = await pool.fetch(
        "SELECT status FROM tasks WHERE workflow_id = $1 AND kind = ANY ($2::text[])",
        workflow_id,
        [TaskKind.ASSESSMENT_REMINDER.value, TaskKind.ASSESSMENT_ESCALATION.value],
    )
    assert {row["status"] for row in closed} == {"cancelled"}
    assert await assert_chases_are_due(pool, workflow_id) >= 2
    await close_and_end(pathway_api, handle)


async def test_a_trust_with_its_own_deadline_rule_starts_its_pathways_with_it(
    time_skipping_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    task_queue: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rop_runtime.settings import RopSettings
    from starter.pathways import pathways_from_settings

    env, client = time_skipping_env, time_skipping_env.client
    monkeypatch.setenv("ROP_TRUST_POLICIES", '{"helse-fonna": {"meeting_working_days": 7}}')
    api = pathways_from_settings(client, RopSettings(task_queue=task_queue))
    async with running_pathways(client, pool, task_queue):
        now = await env.get_current_time()
        fonna_id, fonna = await start(
            client,
            api,
            factories.referral_data(now, health_trust="helse-fonna", municipality="4627"),
        )
        bergen_id, bergen = await start(client, api, factories.referral_data(now))
        received = calendar.local_date(now)
        assert (await api.status(fonna_id)).meeting_deadline == calendar.add_working_days(
            received, 7
        )
        assert (await api.status(bergen_id)).meeting_deadline == calendar.add_working_days(
            received, 10
        )
        await close_and_end(api, fonna)
        await close_and_end(api, bergen)
