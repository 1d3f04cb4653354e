"""The pathway as its clients see it: the answer to the `status` query and to every step.

This is the public contract of a pathway: what the Python API, the CLI and the HTTP API
(and its OpenAPI schema) return. It is built from the workflow's internal state
(`rop_domain.state.PathwayState`, which never leaves the workflow) by
`workflows/status_view.py`, so the state can change its shape without breaking a client.
Nothing in it identifies the patient: the referral's patient data stays in the referral.
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import Field

from rop_domain.followup import Closure, CrisisPlan, Measure, MeetingOutcome, Objection
from rop_domain.models import (
    DueItem,
    Participant,
    Phase,
    RecordedAssessment,
    RecordedInvite,
    StrictModel,
)
from rop_domain.plan import MeasureStatus
from rop_domain.tasks import TaskKind


class OpenTask(StrictModel):
    """A task the pathway waits on someone to do (tasks that only inform are not listed)."""

    kind: TaskKind
    recipient: str
    due_at: datetime | None = None
    reference: str | None = Field(default=None, description="e.g. the measure a task is about")


class CrisisPlanStatus(StrictModel):
    """The crisis plan: its first deadline, the current version, and how each is chased."""

    deadline: date | None = Field(description="The last day for the first version")
    current: CrisisPlan | None
    registered_at: datetime | None
    reminder_sent: bool = Field(description="The first version's deadline was reminded of")
    escalated: bool = Field(description="The first version's deadline escalated")
    revision_overdue: bool = Field(
        default=False, description="The current version is past its revision date"
    )
    revision_escalated: bool = False


class MeasureStatusView(Measure):
    """A measure of the current plan, and where it stands."""

    status: MeasureStatus


class ReviewStatus(StrictModel):
    """The periodic review (evaluering) now pending."""

    number: int = Field(description="1 for the first review")
    due: date
    interval_weeks: int
    task_raised: bool
    reminder_sent: bool
    escalated: bool


class RecordedObjection(StrictModel):
    objection: Objection
    recorded_at: datetime


class RecordedClosure(StrictModel):
    closure: Closure
    closed_at: datetime


class PathwayStatus(StrictModel):
    """The pathway now: phase, deadlines, each part as recorded, what is done, due and late."""

    workflow_id: str
    referral_id: str
    phase: Phase
    received_at: datetime
    meeting_deadline: date = Field(description="The last day to invite to the avklaringsmøte")
    reminder_at: datetime = Field(description="When the invite is reminded of if not sent")
    escalation_at: datetime = Field(description="When a missing invite escalates")
    reminder_sent: bool
    meeting_escalated: bool
    crisis_plan_deadline: date | None
    assessment_deadline: date | None = Field(
        default=None,
        description="The last day to assess the referral (pathways started before this rule: none)",
    )
    overdue: bool
    overdue_items: list[str]
    recommended_participants: list[Participant]
    assessment: RecordedAssessment | None
    invite: RecordedInvite | None
    meeting: MeetingOutcome | None
    crisis_plan: CrisisPlanStatus
    measures: list[MeasureStatusView]
    plan_version: int = Field(description="0 before the meeting; each revision adds one")
    review: ReviewStatus | None
    reviews_completed: int
    objection: RecordedObjection | None
    closure: RecordedClosure | None
    open_tasks: list[OpenTask]
    done: list[str]
    due: list[DueItem]
    failed_deliveries: int = Field(
        default=0, description="Tasks no channel could deliver (operators can re-send them)"
    )
    recording_stalled: bool = Field(
        default=False, description="The record service has kept failing; steps wait for it"
    )
    escalated_to_unit: int = Field(
        default=0,
        description="Escalations sent to the receiving unit itself, as the contact directory "
        "names no leader for it (add one: `rop contacts load`)",
    )
    record_behind: bool = Field(
        default=False,
        description="The last reconciliation found steps the workflow applied missing from "
        "the record (as after a restore from a backup): `rop reconcile --repair` writes them",
    )
