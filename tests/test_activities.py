"""Activities against a real PostgreSQL: each one run twice writes once."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg
import pytest
from pydantic import ValidationError
from temporalio.testing import ActivityEnvironment

from activities.contact_directory import read_contact_points, upsert_contact_points
from activities.database import create_pool, migrate
from activities.records import RecordActivities
from rop_domain.commands import (
    CloseTasks,
    EventKind,
    LeaderQuery,
    NewPathway,
    Notification,
    PathwayEvent,
    PathwayStep,
    SummaryChange,
)
from rop_domain.models import NO_ADDRESS, AssessmentDecision, Phase, ReceivingUnit
from rop_domain.tasks import TaskKind, TaskStatus
from tests import factories
from tests.conftest import EXAMPLE_CONTACTS

RECEIVED = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)


async def _open(pool: asyncpg.Pool) -> str:
    referral = factories.parse_referral_for_test(factories.referral_data(RECEIVED))
    await ActivityEnvironment().run(
        RecordActivities(pool).open_pathway,
        NewPathway(
            workflow_id=referral.workflow_id,
            referral=referral,
            meeting_deadline=date(2026, 4, 20),
            notifications=[_task(referral.workflow_id, "0-assess", TaskKind.ASSESS_REFERRAL)],
        ),
    )
    return referral.workflow_id


async def test_open_pathway_twice_writes_one_row_and_one_event(pool: asyncpg.Pool) -> None:
    referral = factories.parse_referral_for_test(factories.referral_data(RECEIVED))
    new = NewPathway(
        workflow_id=referral.workflow_id,
        referral=referral,
        meeting_deadline=date(2026, 4, 20),
        notifications=[_task(referral.workflow_id, "0-assess", TaskKind.ASSESS_REFERRAL)],
    )
    env = ActivityEnvironment()
    records = RecordActivities(pool)
    first = await env.run(records.open_pathway, new)
    again = await env.run(records.open_pathway, new)
    assert [p.role.value for p in first.participants] == ["phv", "tsb", "fastlege", "kommune"]
    assert first.deliveries == []  # no channel routed: the task list only
    assert again == first
    row = await pool.fetchrow(
        "SELECT phase, meeting_deadline, patient_reference FROM pathways WHERE workflow_id = $1",
        referral.workflow_id,
    )
    assert row is not None
    assert (row["phase"], row["meeting_deadline"]) == ("awaiting-assessment", date(2026, 4, 20))
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM pathway_events WHERE workflow_id = $1", referral.workflow_id
        )
        == 1
    )
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM tasks WHERE workflow_id = $1", referral.workflow_id
        )
        == 1
    )


def _event(workflow_id: str, label: str, kind: EventKind, change: SummaryChange) -> PathwayEvent:
    return PathwayEvent(
        idempotency_key=f"{workflow_id}/{label}",
        workflow_id=workflow_id,
        kind=kind,
        actor=factories.CLINICIAN,
        occurred_at=RECEIVED,
        change=change,
        details={"reason": "test"},
    )


def _task(
    workflow_id: str, label: str, kind: TaskKind, reference: str | None = None
) -> Notification:
    return Notification(
        idempotency_key=f"{workflow_id}/{label}",
        workflow_id=workflow_id,
        kind=kind,
        recipient=factories.CLINICIAN,
        params=factories.TASK_PARAMS,
        reference=reference,
    )


async def test_record_step_twice_writes_its_events_and_tasks_once(pool: asyncpg.Pool) -> None:
    workflow_id = await _open(pool)
    assessed = PathwayStep(
        events=[
            _event(
                workflow_id,
                "1-assessed",
                EventKind.ASSESSED,
                SummaryChange(
                    phase=Phase.AWAITING_INVITE,
                    assessment_decision=AssessmentDecision.IN_TARGET_GROUP,
                ),
            )
        ],
        close_tasks=[
            CloseTasks(
                workflow_id=workflow_id,
                kinds=[TaskKind.ASSESS_REFERRAL],
                status=TaskStatus.COMPLETED,
            )
        ],
        notifications=[_task(workflow_id, "2-reminder", TaskKind.INVITE_TO_MEETING_REMINDER)],
    )
    env = ActivityEnvironment()
    records = RecordActivities(pool)
    assert await env.run(records.record_step, assessed) == []
    assert await env.run(records.record_step, assessed) == []
    kinds = await pool.fetch(
        "SELECT kind FROM pathway_events WHERE workflow_id = $1 ORDER BY id", workflow_id
    )
    assert [k["kind"] for k in kinds] == ["referral-received", "assessed"]
    row = await pool.fetchrow("SELECT * FROM pathways WHERE workflow_id = $1", workflow_id)
    assert row is not None
    assert (row["phase"], row["assessment_decision"]) == ("awaiting-invite", "in-target-group")
    tasks = await pool.fetch(
        "SELECT kind, status FROM tasks WHERE workflow_id = $1 ORDER BY id", workflow_id
    )
    assert [(t["kind"], t["status"]) for t in tasks] == [
        ("assess-referral", "completed"),
        ("invite-to-meeting-reminder", "requested"),
    ]

    # A later step that changes no phase leaves the phase as it is.
    overdue = PathwayStep(
        events=[
            _event(workflow_id, "3-overdue", EventKind.MEETING_OVERDUE, SummaryChange(overdue=True))
        ]
    )
    assert await env.run(records.record_step, overdue) == []
    row = await pool.fetchrow("SELECT * FROM pathways WHERE workflow_id = $1", workflow_id)
    assert row is not None
    assert (row["phase"], row["overdue"]) == ("awaiting-invite", True)


async def test_a_retried_closing_step_does_not_cancel_its_own_new_tasks(
    pool: asyncpg.Pool,
) -> None:
    workflow_id = await _open(pool)
    closing = PathwayStep(
        events=[
            _event(
                workflow_id, "1-closed", EventKind.PATHWAY_CLOSED, SummaryChange(phase=Phase.CLOSED)
            )
        ],
        close_tasks=[CloseTasks(workflow_id=workflow_id, kinds=None, status=TaskStatus.CANCELLED)],
        notifications=[_task(workflow_id, "2-closed", TaskKind.PATHWAY_CLOSED)],
    )
    env = ActivityEnvironment()
    records = RecordActivities(pool)
    await env.run(records.record_step, closing)
    await env.run(records.record_step, closing)
    statuses = await pool.fetch(
        "SELECT kind, status FROM tasks WHERE workflow_id = $1 ORDER BY id", workflow_id
    )
    assert [(t["kind"], t["status"]) for t in statuses] == [
        ("assess-referral", "cancelled"),
        ("pathway-closed", "requested"),
    ]


async def test_a_step_of_several_events_and_closes_is_written_in_order(
    pool: asyncpg.Pool,
) -> None:
    """Later events' summary changes win; of two close requests for one task the first wins,
    as when each was its own statement."""
    workflow_id = await _open(pool)
    records = RecordActivities(pool)
    env = ActivityEnvironment()
    await env.run(
        records.record_step,
        PathwayStep(
            events=[
                _event(workflow_id, "1-reminded", EventKind.MEETING_REMINDER_SENT, SummaryChange())
            ],
            notifications=[_task(workflow_id, "2-reminder", TaskKind.INVITE_TO_MEETING_REMINDER)],
        ),
    )
    closing = PathwayStep(
        events=[
            _event(
                workflow_id, "3-overdue", EventKind.MEETING_OVERDUE, SummaryChange(overdue=True)
            ),
            _event(
                workflow_id,
                "4-assessed",
                EventKind.ASSESSED,
                SummaryChange(phase=Phase.AWAITING_INVITE, overdue=False),
            ),
            _event(
                workflow_id, "5-closed", EventKind.PATHWAY_CLOSED, SummaryChange(phase=Phase.CLOSED)
            ),
        ],
        close_tasks=[
            CloseTasks(
                workflow_id=workflow_id,
                kinds=[TaskKind.ASSESS_REFERRAL],
                status=TaskStatus.COMPLETED,
            ),
            CloseTasks(workflow_id=workflow_id, kinds=None, status=TaskStatus.CANCELLED),
        ],
        notifications=[
            _task(workflow_id, "6-closed", TaskKind.PATHWAY_CLOSED),
            _task(workflow_id, "7-closed", TaskKind.PATHWAY_CLOSED, reference="copy"),
        ],
    )
    await env.run(records.record_step, closing)
    await env.run(records.record_step, closing)
    events = await pool.fetch(
        "SELECT kind FROM pathway_events WHERE workflow_id = $1 ORDER BY id", workflow_id
    )
    assert [e["kind"] for e in events] == [
        "referral-received",
        "meeting-reminder-sent",
        "meeting-overdue",
        "assessed",
        "pathway-closed",
    ]
    row = await pool.fetchrow(
        "SELECT phase, overdue FROM pathways WHERE workflow_id = $1", workflow_id
    )
    assert row is not None
    assert (row["phase"], row["overdue"]) == ("closed", False)
    tasks = await pool.fetch(
        "SELECT kind, status, reference FROM tasks WHERE workflow_id = $1 ORDER BY id", workflow_id
    )
    assert [(t["kind"], t["status"], t["reference"]) for t in tasks] == [
        ("assess-referral", "completed", None),
        ("invite-to-meeting-reminder", "cancelled", None),
        ("pathway-closed", "requested", None),
        ("pathway-closed", "requested", "copy"),
    ]


async def test_a_pool_without_session_reset_still_rolls_back_a_broken_off_transaction(
    database_url: str,
) -> None:
    """`create_pool` skips asyncpg's session reset; the rollback it relies on still happens."""
    pool = await create_pool(database_url)
    try:
        async with pool.acquire() as connection:
            await connection.execute("BEGIN")
            await connection.execute("CREATE TEMPORARY TABLE left_behind (n int)")
            assert connection.is_in_transaction()
        async with pool.acquire() as connection:
            assert not connection.is_in_transaction()
            # The broken-off transaction was rolled back, not committed by a later one.
            assert await connection.fetchval("SELECT to_regclass('pg_temp.left_behind')") is None
    finally:
        await pool.close()


async def test_closing_tasks_by_measure_reference(pool: asyncpg.Pool) -> None:
    workflow_id = await _open(pool)
    records = RecordActivities(pool)
    env = ActivityEnvironment()
    raised = PathwayStep(
        events=[_event(workflow_id, "1-ready", EventKind.MEASURE_READY, SummaryChange())],
        notifications=[
            _task(workflow_id, "2-a", TaskKind.START_MEASURE, reference="a"),
            _task(workflow_id, "3-b", TaskKind.START_MEASURE, reference="b"),
        ],
    )
    started = PathwayStep(
        events=[_event(workflow_id, "4-started", EventKind.MEASURE_STARTED, SummaryChange())],
        close_tasks=[
            CloseTasks(
                workflow_id=workflow_id,
                kinds=[TaskKind.START_MEASURE],
                status=TaskStatus.COMPLETED,
                reference="a",
            )
        ],
    )
    await env.run(records.record_step, raised)
    await env.run(records.record_step, started)
    rows = await pool.fetch(
        "SELECT reference, status FROM tasks WHERE workflow_id = $1 AND kind = 'start-measure' "
        "ORDER BY reference",
        workflow_id,
    )
    assert [(r["reference"], r["status"]) for r in rows] == [("a", "completed"), ("b", "requested")]


async def test_the_seed_recommends_its_parties_whether_the_directory_has_them_or_not(
    pool: asyncpg.Pool,
) -> None:
    records = RecordActivities(pool)
    found = await records.resolve_participants("helse-nowhere", "5001", "9099999")
    assert [(p.role.value, p.name, p.address) for p in found] == [
        ("phv", "PHV, helse-nowhere", NO_ADDRESS),
        ("tsb", "TSB, helse-nowhere", NO_ADDRESS),
        ("fastlege", "Fastlege (HPR 9099999)", NO_ADDRESS),
        ("kommune", "Kommune 5001", NO_ADDRESS),
    ]
    # The directory says how to reach a party it has; the others are still recommended.
    mixed = await records.resolve_participants("helse-bergen", "5001", "9099999")
    assert [(p.role.value, p.address) for p in mixed] == [
        ("phv", "phv.kontakt@example.invalid"),
        ("tsb", "tsb.kontakt@example.invalid"),
        ("fastlege", NO_ADDRESS),
        ("kommune", NO_ADDRESS),
    ]


async def test_participants_come_from_the_contact_directory(pool: asyncpg.Pool) -> None:
    records = RecordActivities(pool)
    env = ActivityEnvironment()
    found = await records.resolve_participants("helse-bergen", "4601", factories.GP)
    assert [(p.role.value, p.address) for p in found] == [
        ("phv", "phv.kontakt@example.invalid"),
        ("tsb", "tsb.kontakt@example.invalid"),
        ("fastlege", "fastlege.9000001@example.invalid"),
        ("kommune", "rop.bergen@example.invalid"),
    ]
    without_gp = await records.resolve_participants("helse-fonna", "4627", None)
    assert [p.address for p in without_gp] == [
        "phv.fonna@example.invalid",
        "tsb.fonna@example.invalid",
        "rop.askoy@example.invalid",
    ]
    leader = await env.run(
        records.find_unit_leader,
        LeaderQuery(health_trust="helse-bergen", receiving_unit=ReceivingUnit.PHV),
    )
    assert leader == "phv.leder@example.invalid"
    nobody = await env.run(
        records.find_unit_leader,
        LeaderQuery(health_trust="helse-nowhere", receiving_unit=ReceivingUnit.PHV),
    )
    assert nobody is None  # a trust the directory does not know


async def test_loading_contacts_and_migrating_again_change_nothing(
    owner_pool: asyncpg.Pool,
) -> None:
    before = await owner_pool.fetchval("SELECT count(*) FROM contact_points")
    await upsert_contact_points(owner_pool, read_contact_points(EXAMPLE_CONTACTS))
    assert await owner_pool.fetchval("SELECT count(*) FROM contact_points") == before
    assert await owner_pool.fetchval("SELECT bool_and(example_data) FROM contact_points")
    assert await migrate(owner_pool) == []


def test_contact_file_is_validated(tmp_path: Path) -> None:
    bad = tmp_path / "contacts.json"
    bad.write_text('{"contact_points": [{"id": "x", "role": "lege", "name": "n", "address": "a"}]}')
    with pytest.raises(ValidationError, match="role"):
        read_contact_points(bad)


def test_a_directory_naming_a_unit_without_a_leader_is_refused_naming_it(
    tmp_path: Path,
) -> None:
    unit = {"role": "tsb", "health_trust": "helse-x", "name": "TSB X", "address": "tsb@x.invalid"}
    leader = {
        "id": "x-leder",
        "role": "leder",
        "health_trust": "helse-x",
        "receiving_unit": "TSB",
        "name": "Leder",
        "address": "leder@x.invalid",
    }
    path = tmp_path / "contacts.json"
    path.write_text(json.dumps({"contact_points": [{"id": "x-tsb", **unit}]}))
    with pytest.raises(ValidationError, match=r"units without a leader .*: helse-x/TSB"):
        read_contact_points(path)
    path.write_text(json.dumps({"contact_points": [{"id": "x-tsb", **unit}, leader]}))
    assert len(read_contact_points(path)) == 2


async def test_the_event_log_is_append_only_and_the_worker_role_least_privileged(
    pool: asyncpg.Pool,
) -> None:
    workflow_id = await _open(pool)
    async with pool.acquire() as connection:
        for statement in (
            "UPDATE pathway_events SET actor = 'x' WHERE workflow_id = $1",
            "DELETE FROM pathway_events WHERE workflow_id = $1",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await connection.execute(statement, workflow_id)
        async with connection.transaction():
            await connection.execute("SET LOCAL ROLE rop_worker")
            await connection.execute(
                "INSERT INTO pathway_events (idempotency_key, workflow_id, kind, actor, occurred_at)"
                " VALUES ($1, $2, 'assessed', 'x', now())",
                f"{workflow_id}/role-test",
                workflow_id,
            )
            assert await connection.fetchval("SELECT count(*) FROM contact_points") > 0
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with connection.transaction():  # a savepoint: the insert stays
                    await connection.execute("DELETE FROM contact_points")
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM pathway_events WHERE workflow_id = $1", workflow_id
        )
        == 2
    )


async def test_a_reminder_or_escalation_past_its_due_date_lists_as_overdue(
    pool: asyncpg.Pool,
) -> None:
    from datetime import timedelta

    from activities.step_statement import write_step
    from starter.task_list import TaskFilter, list_tasks

    workflow_id = await _open(pool)
    past, ahead = datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(days=1)
    await write_step(
        pool,
        PathwayStep(
            events=[
                factories.event(
                    workflow_id, "9-overdue", EventKind.MEETING_OVERDUE, "rop-forlop", {}
                )
            ],
            notifications=[
                factories.task(
                    workflow_id,
                    "9-escalation",
                    TaskKind.MEETING_DEADLINE_ESCALATION,
                    "leder@x.invalid",
                    due=past,
                ),
                factories.task(
                    workflow_id, "9-reminder", TaskKind.ASSESSMENT_REMINDER, "9000123", due=ahead
                ),
            ],
        ),
    )
    async with pool.acquire() as connection:
        overdue = await list_tasks(connection, TaskFilter(workflow_id=workflow_id, overdue=True))
    assert [t.kind for t in overdue] == [TaskKind.MEETING_DEADLINE_ESCALATION]
