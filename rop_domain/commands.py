"""What the workflow asks of the record and notification services.

These are the activities' arguments. Each carries an idempotency key that the
workflow derives deterministically (workflow id + step), so a retried activity
finds its own earlier write and does nothing twice.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import Field, JsonValue

from rop_domain.models import (
    AssessmentDecision,
    Identifier,
    Kommunenummer,
    Phase,
    ReceivingUnit,
    Referral,
    StrictModel,
)


class EventKind(StrEnum):
    """The steps written to the append-only event log."""

    REFERRAL_RECEIVED = "referral-received"
    ASSESSED = "assessed"
    MEETING_REMINDER_SENT = "meeting-reminder-sent"
    MEETING_OVERDUE = "meeting-overdue"
    MEETING_INVITED = "meeting-invited"
    MEETING_HELD = "meeting-held"


class NewPathway(StrictModel):
    """Open the pathway's record for a referral."""

    workflow_id: str
    referral: Referral
    meeting_deadline: date


class SummaryChange(StrictModel):
    """Columns of the pathway's summary row that a step sets; `None` leaves a column as it is."""

    phase: Phase | None = None
    assessment_decision: AssessmentDecision | None = None
    invited_at: datetime | None = None
    meeting_at: datetime | None = None
    invited_on_time: bool | None = None
    overdue: bool | None = None
    meeting_held_at: datetime | None = None


class PathwayEvent(StrictModel):
    """One step of a pathway: appended to the event log once, and applied to its summary."""

    idempotency_key: str
    workflow_id: str
    kind: EventKind
    actor: str
    occurred_at: datetime
    change: SummaryChange
    details: dict[str, JsonValue] = Field(default_factory=dict)


class ParticipantQuery(StrictModel):
    """Whom to invite to the clarification meeting of one referral."""

    health_trust: Identifier
    municipality: Kommunenummer
    general_practitioner: Identifier | None = None


class LeaderQuery(StrictModel):
    """Whose desk an escalation lands on: the receiving unit's leader contact."""

    health_trust: Identifier
    receiving_unit: ReceivingUnit


class TaskKind(StrEnum):
    """What a clinician or leader is asked to do."""

    ASSESS_REFERRAL = "assess-referral"
    INVITE_TO_MEETING_REMINDER = "invite-to-meeting-reminder"
    MEETING_DEADLINE_ESCALATION = "meeting-deadline-escalation"
    MEETING_INVITATION = "meeting-invitation"
    REFERRAL_NOT_ACCEPTED = "referral-not-accepted"


class TaskStatus(StrEnum):
    """FHIR Task's status vocabulary, the subset we use."""

    REQUESTED = "requested"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class Notification(StrictModel):
    """A task for a person or unit, queued in the outbox. Carries no patient data."""

    idempotency_key: str
    workflow_id: str
    kind: TaskKind
    recipient: str
    subject: str
    body: str
    due_at: datetime | None = None


class CloseTasks(StrictModel):
    """Close a pathway's open tasks of some kinds: their step is done or no longer needed."""

    workflow_id: str
    kinds: list[TaskKind]
    status: TaskStatus
