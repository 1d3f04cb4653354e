"""Activities against a real PostgreSQL: each one run twice writes once."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg
import pytest
from pydantic import ValidationError
from temporalio.testing import ActivityEnvironment

from activities.contact_directory import read_contact_points, upsert_contact_points
from activities.database import migrate
from activities.notifications import NotificationActivities
from activities.records import RecordActivities
from rop_domain.commands import (
    CloseTasks,
    EventKind,
    LeaderQuery,
    NewPathway,
    Notification,
    ParticipantQuery,
    PathwayEvent,
    SummaryChange,
    TaskKind,
    TaskStatus,
)
from rop_domain.models import AssessmentDecision, Phase, ReceivingUnit
from tests import factories
from tests.conftest import EXAMPLE_CONTACTS

RECEIVED = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)


async def _open(pool: asyncpg.Pool) -> str:
    referral = factories.parse_referral_for_test(factories.referral_data(RECEIVED))
    opened = await ActivityEnvironment().run(
        RecordActivities(pool).open_pathway,
        NewPathway(
            workflow_id=referral.workflow_id, referral=referral, meeting_deadline=date(2026, 4, 20)
        ),
    )
    assert opened
    return referral.workflow_id


async def test_open_pathway_twice_writes_one_row_and_one_event(pool: asyncpg.Pool) -> None:
    referral = factories.parse_referral_for_test(factories.referral_data(RECEIVED))
    new = NewPathway(
        workflow_id=referral.workflow_id, referral=referral, meeting_deadline=date(2026, 4, 20)
    )
    env = ActivityEnvironment()
    records = RecordActivities(pool)
    assert await env.run(records.open_pathway, new) is True
    assert await env.run(records.open_pathway, new) is False
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


async def test_record_event_twice_appends_once_and_applies_once(pool: asyncpg.Pool) -> None:
    workflow_id = await _open(pool)
    event = PathwayEvent(
        idempotency_key=f"{workflow_id}/assessed",
        workflow_id=workflow_id,
        kind=EventKind.ASSESSED,
        actor=factories.CLINICIAN,
        occurred_at=RECEIVED,
        change=SummaryChange(
            phase=Phase.AWAITING_INVITE, assessment_decision=AssessmentDecision.IN_TARGET_GROUP
        ),
        details={"reason": "test"},
    )
    env = ActivityEnvironment()
    records = RecordActivities(pool)
    assert await env.run(records.record_event, event) is True
    assert await env.run(records.record_event, event) is False
    kinds = await pool.fetch(
        "SELECT kind FROM pathway_events WHERE workflow_id = $1 ORDER BY id", workflow_id
    )
    assert [k["kind"] for k in kinds] == ["referral-received", "assessed"]
    row = await pool.fetchrow("SELECT * FROM pathways WHERE workflow_id = $1", workflow_id)
    assert row is not None
    assert (row["phase"], row["assessment_decision"]) == ("awaiting-invite", "in-target-group")

    # A later step that changes no phase leaves the phase as it is.
    overdue = event.model_copy(
        update={
            "idempotency_key": f"{workflow_id}/meeting-overdue",
            "kind": EventKind.MEETING_OVERDUE,
            "change": SummaryChange(overdue=True),
        }
    )
    assert await env.run(records.record_event, overdue) is True
    row = await pool.fetchrow("SELECT * FROM pathways WHERE workflow_id = $1", workflow_id)
    assert row is not None
    assert (row["phase"], row["overdue"]) == ("awaiting-invite", True)


async def test_notify_twice_queues_one_task(pool: asyncpg.Pool) -> None:
    workflow_id = await _open(pool)
    notification = Notification(
        idempotency_key=f"{workflow_id}/assess-referral",
        workflow_id=workflow_id,
        kind=TaskKind.ASSESS_REFERRAL,
        recipient=factories.CLINICIAN,
        subject="Vurder henvisning",
        body="...",
    )
    env = ActivityEnvironment()
    notifications = NotificationActivities(pool)
    assert await env.run(notifications.notify, notification) is True
    assert await env.run(notifications.notify, notification) is False
    assert (
        await pool.fetchval("SELECT count(*) FROM tasks WHERE workflow_id = $1", workflow_id) == 1
    )

    close = CloseTasks(
        workflow_id=workflow_id, kinds=[TaskKind.ASSESS_REFERRAL], status=TaskStatus.COMPLETED
    )
    assert await env.run(notifications.close_tasks, close) == 1
    assert await env.run(notifications.close_tasks, close) == 0
    assert (
        await pool.fetchval("SELECT status FROM tasks WHERE workflow_id = $1", workflow_id)
        == "completed"
    )


async def test_participants_come_from_the_contact_directory(pool: asyncpg.Pool) -> None:
    records = RecordActivities(pool)
    env = ActivityEnvironment()
    found = await env.run(
        records.resolve_participants,
        ParticipantQuery(
            health_trust="helse-bergen", municipality="4601", general_practitioner=factories.GP
        ),
    )
    assert [(p.role.value, p.address) for p in found] == [
        ("phv", "phv.kontakt@example.invalid"),
        ("tsb", "tsb.kontakt@example.invalid"),
        ("fastlege", "fastlege.9000001@example.invalid"),
        ("kommune", "rop.bergen@example.invalid"),
    ]
    without_gp = await env.run(
        records.resolve_participants,
        ParticipantQuery(health_trust="helse-fonna", municipality="4627"),
    )
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
        LeaderQuery(health_trust="helse-fonna", receiving_unit=ReceivingUnit.PHV),
    )
    assert nobody is None


async def test_loading_contacts_and_migrating_again_change_nothing(pool: asyncpg.Pool) -> None:
    before = await pool.fetchval("SELECT count(*) FROM contact_points")
    await upsert_contact_points(pool, read_contact_points(EXAMPLE_CONTACTS))
    assert await pool.fetchval("SELECT count(*) FROM contact_points") == before
    assert await pool.fetchval("SELECT bool_and(example_data) FROM contact_points")
    assert await migrate(pool) == []


def test_contact_file_is_validated(tmp_path: Path) -> None:
    bad = tmp_path / "contacts.json"
    bad.write_text('{"contact_points": [{"id": "x", "role": "lege", "name": "n", "address": "a"}]}')
    with pytest.raises(ValidationError, match="role"):
        read_contact_points(bad)
