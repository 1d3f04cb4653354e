"""What the workflow asks of the record and notification services.

These are the activities' names and arguments. Each argument carries an idempotency key
that the workflow derives deterministically (workflow id + step), so a retried activity
finds its own earlier write and does nothing twice.

The activities themselves (`activities/`) talk to PostgreSQL, SMTP and webhooks; the
workflow never imports them (it runs unsandboxed, `workflows.sandbox`), it calls them by
these names, under which the worker registers them. A name is written into every history
that calls it, so it never changes under running pathways.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import StrEnum

from pydantic import Field, JsonValue

from rop_domain.models import (
    AssessmentDecision,
    Identifier,
    Participant,
    Phase,
    ReceivingUnit,
    Referral,
    StrictModel,
)
from rop_domain.tasks import TaskKind, TaskStatus

OPEN_PATHWAY = "open_pathway"
RECORD_STEP = "record_step"
FIND_UNIT_LEADER = "find_unit_leader"
DELIVER = "deliver"
GIVE_UP = "give_up"
RECONCILE_RECORDS = "reconcile_records"
"""Activity names: the record service's local activities, then the notification service's."""
SUBSCRIPTION_HANDSHAKE = "subscription_handshake"
SUBSCRIPTION_NOTIFY = "subscription_notify"
SUBSCRIPTION_FAILED = "subscription_failed"
"""The activities of a FHIR Subscription's deliveries (`workflows.subscription`)."""

RECORD_REFUSED = "RecordRefused"
"""ApplicationError type of a step the record database refused for its content: a data or
constraint error, which no retry can mend (connection errors are retried instead)."""


class EventKind(StrEnum):
    """The steps written to the append-only event log."""

    REFERRAL_RECEIVED = "referral-received"
    ASSESSED = "assessed"
    ASSESSMENT_REMINDER_SENT = "assessment-reminder-sent"
    ASSESSMENT_OVERDUE = "assessment-overdue"
    MEETING_REMINDER_SENT = "meeting-reminder-sent"
    MEETING_OVERDUE = "meeting-overdue"
    MEETING_INVITED = "meeting-invited"
    MEETING_MOVED = "meeting-moved"
    MEETING_HELD = "meeting-held"
    CRISIS_PLAN_REGISTERED = "crisis-plan-registered"
    CRISIS_PLAN_REMINDER_SENT = "crisis-plan-reminder-sent"
    CRISIS_PLAN_OVERDUE = "crisis-plan-overdue"
    CRISIS_PLAN_REVISION_DUE = "crisis-plan-revision-due"
    CRISIS_PLAN_REVISION_OVERDUE = "crisis-plan-revision-overdue"
    CRISIS_PLAN_REVISION_ESCALATED = "crisis-plan-revision-escalated"
    MEASURE_READY = "measure-ready"
    MEASURE_STARTED = "measure-started"
    MEASURE_COMPLETED = "measure-completed"
    MEASURE_CANCELLED = "measure-cancelled"
    PLAN_REVISED = "plan-revised"
    REVIEW_DUE = "review-due"
    REVIEW_OVERDUE = "review-overdue"
    REVIEW_ESCALATED = "review-escalated"
    REVIEW_COMPLETED = "review-completed"
    OBJECTION_RECORDED = "objection-recorded"
    NOTIFICATION_WITHHELD = "notification-withheld"
    DELIVERY_FAILED = "delivery-failed"
    PATHWAY_CLOSED = "pathway-closed"


class SummaryChange(StrictModel):
    """Columns of the pathway's summary row that a step sets; `None` leaves a column as it is.

    Field names are the column names of `pathways`.
    """

    phase: Phase | None = None
    assessment_decision: AssessmentDecision | None = None
    invited_at: datetime | None = None
    meeting_at: datetime | None = None
    invited_on_time: bool | None = None
    invite_working_days: int | None = None
    overdue: bool | None = None
    meeting_held_at: datetime | None = None
    koordinator: str | None = None
    individual_plan: str | None = None
    crisis_plan_version: int | None = None
    crisis_plan_at: datetime | None = None
    crisis_plan_overdue: bool | None = None
    next_review_due: date | None = None
    review_overdue: bool | None = None
    reviews_completed: int | None = None
    objection: bool | None = None
    closed_at: datetime | None = None
    closure_reason: str | None = None


class PathwayEvent(StrictModel):
    """One step of a pathway: appended to the event log once, and applied to its summary."""

    idempotency_key: str
    workflow_id: str
    kind: EventKind
    actor: str
    occurred_at: datetime
    change: SummaryChange
    details: dict[str, JsonValue] = Field(default_factory=dict)


class LeaderQuery(StrictModel):
    """Whose desk an escalation lands on: the receiving unit's leader contact."""

    health_trust: Identifier
    receiving_unit: ReceivingUnit


class DeliveryStatus(StrEnum):
    """Where a task's delivery through its channel stands (table `deliveries`)."""

    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    TASK_LIST = "task-list"
    """No channel: the task waits in the task list."""


class Notification(StrictModel):
    """A task for a person or unit, queued in the outbox. Carries no patient data.

    `params` fill the task kind's template; `redacted` tasks use the generic template
    (the patient objected to sharing with the recipient's organisation).
    """

    idempotency_key: str
    workflow_id: str
    kind: TaskKind
    recipient: str
    params: dict[str, str] = Field(default_factory=dict)
    redacted: bool = False
    due_at: datetime | None = None
    reference: str | None = Field(
        default=None, description="What the task is about, e.g. a measure id"
    )
    status: TaskStatus = Field(
        default=TaskStatus.REQUESTED,
        description="completed for a notice that asks nothing of anyone (the task table says)",
    )
    party: str | None = Field(
        default=None,
        description="The recipient's role or unit as the step named it (e.g. an invited "
        "party's role): what `rop_domain.parties` reads, with `person`",
    )
    person: str | None = Field(
        default=None, description="The HPR number of the person the task names, where known"
    )


class Snapshot(StrictModel):
    """The pathway as a step leaves it (`rop_domain.state.PathwaySnapshot`, packed).

    Kept in the record with the step (table `pathway_snapshots`, the newest by `sequence`):
    what a pathway is restarted from when Temporal has lost its workflow (`rop reconcile
    --restart`). Packed, as it travels in the step's activity input and in the workflow's
    kept steps.
    """

    sequence: int = Field(ge=0, description="The state's key counter: newer snapshots count higher")
    packed: str


class PathwayStep(StrictModel):
    """One step of a pathway and everything it does to the records, in one transaction.

    The first event's idempotency key guards the whole step: a retried step whose
    first event is already recorded changes nothing. Tasks are closed before new
    ones are queued, so a step may close a kind and raise it afresh.
    """

    events: list[PathwayEvent] = Field(min_length=1)
    close_tasks: list[CloseTasks] = Field(default_factory=list)
    notifications: list[Notification] = Field(default_factory=list)
    snapshot: Snapshot | None = Field(
        default=None, description="The pathway as the step leaves it (steps from before: none)"
    )


class CloseTasks(StrictModel):
    """Close a pathway's open tasks: their step is done or no longer needed.

    `kinds=None` closes every open task of the pathway; `reference` narrows to one measure.
    """

    workflow_id: str
    kinds: list[TaskKind] | None
    status: TaskStatus
    reference: str | None = None


class NewPathway(StrictModel):
    """Open the pathway's record for a referral, and queue its first tasks."""

    workflow_id: str
    referral: Referral
    meeting_deadline: date
    notifications: list[Notification] = Field(default_factory=list)
    snapshot: Snapshot | None = Field(
        default=None,
        description="The pathway as the intake leaves it, before its participants are found",
    )


PathwayStep.model_rebuild()


class Intake(StrictModel):
    """What opening a pathway's record answers."""

    participants: list[Participant]
    deliveries: list[str] = Field(
        default_factory=list, description="Keys of the first tasks a channel must deliver"
    )


DELIVERY_FAILED = "DeliveryFailed"
"""ApplicationError type of a delivery that gave up."""

DELIVERY_WINDOW = timedelta(hours=24)
"""How long the pathway lets a delivery try: a channel down overnight is still reached the
next morning, and no task hangs for days."""
FIRST_DELIVERY_RETRY = timedelta(seconds=10)
DELIVERY_MAX_INTERVAL = timedelta(hours=1)


class Delivery(StrictModel):
    """Deliver the task queued under `task_key`.

    `max_attempts`: give up after that attempt (deliveries of runs from before the
    delivery window); without it the pathway's window decides, and `give_up` records it.
    """

    task_key: str
    max_attempts: int | None = Field(default=None, ge=1)


class SubscriptionRun(StrictModel):
    """A run of a subscription's deliveries: which, whether its handshake is done, and when a
    notification last went (workflow time: a heartbeat is due a period after it)."""

    subscription_id: str
    shaken: bool = False
    last_sent: datetime | None = None


class SubscriptionRoundRequest(StrictModel):
    """One round: send the pending events; with none, a heartbeat if `heartbeat_due`."""

    subscription_id: str
    heartbeat_due: bool = False


class SubscriptionRound(StrictModel):
    """What one round of a subscription's deliveries did."""

    events_sent: int = 0
    heartbeat: bool = False
    off: bool = False
    """The subscription was turned off: its deliveries end."""
    heartbeat_seconds: int | None = None
    """The subscription's heartbeat period, as it is now."""
