"""The pathway workflow's state, its input and what it reports.

The state is what the workflow carries across continue-as-new. It is kept compact
(no history of past steps: those are in the record service's event log) so that a
pathway can run for years in short Temporal runs.
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

from rop_domain.followup import Closure, CrisisPlan, Measure, MeetingOutcome, Objection
from rop_domain.models import (
    DueItem,
    Participant,
    PathwaySettings,
    Phase,
    RecordedAssessment,
    RecordedInvite,
    Referral,
    StrictModel,
)
from rop_domain.plan import MeasureStatus


class MutableModel(BaseModel):
    """State the workflow changes in place; closed to unknown fields like the rest."""

    model_config = ConfigDict(extra="forbid")


class Chase(MutableModel):
    """Whether the reminder and the escalation for one deadline have gone out."""

    reminded: bool = False
    escalated: bool = False


class MeasureEntry(MutableModel):
    """A measure of the current plan and where it stands."""

    measure: Measure
    status: MeasureStatus = MeasureStatus.PLANNED


class ReviewCycle(MutableModel):
    """The periodic review (evaluering) now pending."""

    number: int = Field(default=1, description="1 for the first review")
    interval_weeks: int
    due: date
    task_raised: bool = False
    chase: Chase = Field(default_factory=Chase)


class PathwayState(MutableModel):
    """Everything the pathway knows, apart from its referral and settings."""

    phase: Phase = Phase.AWAITING_ASSESSMENT
    sequence: int = Field(default=0, description="Counter behind every idempotency key")
    runs: int = Field(default=1, description="Temporal runs so far (continue-as-new)")
    participants: list[Participant] = Field(default_factory=list)
    assessment: RecordedAssessment | None = None
    invite: RecordedInvite | None = None
    meeting_chase: Chase = Field(default_factory=Chase)
    meeting: MeetingOutcome | None = None
    crisis_plan: CrisisPlan | None = None
    crisis_plan_at: datetime | None = None
    crisis_chase: Chase = Field(default_factory=Chase)
    crisis_revision_raised_for: int | None = None
    measures: list[MeasureEntry] = Field(default_factory=list)
    plan_version: int = 0
    review: ReviewCycle | None = None
    reviews_completed: int = 0
    objection: Objection | None = None
    objection_at: datetime | None = None
    closure: Closure | None = None
    closed_at: datetime | None = None
    failed_deliveries: list[str] = Field(
        default_factory=list, description="Keys of tasks no channel could deliver"
    )

    def measure(self, measure_id: str) -> MeasureEntry | None:
        return next((e for e in self.measures if e.measure.id == measure_id), None)

    def statuses(self) -> dict[str, MeasureStatus]:
        return {e.measure.id: e.status for e in self.measures}


class PathwayStatus(StrictModel):
    """The answer to the `status` query and to every Update: the state, and what it means."""

    workflow_id: str
    referral_id: str
    phase: Phase
    received_at: datetime
    meeting_deadline: date
    reminder_at: datetime
    escalation_at: datetime
    crisis_plan_deadline: date | None
    overdue: bool
    overdue_items: list[str]
    reminder_sent: bool
    recommended_participants: list[Participant]
    assessment: RecordedAssessment | None
    invite: RecordedInvite | None
    state: PathwayState
    done: list[str]
    due: list[DueItem]


class PathwayOutcome(StrictModel):
    """What the workflow returns when it ends."""

    workflow_id: str
    phase: Phase
    invited_on_time: bool | None
    overdue: bool
    reviews_completed: int = 0
    runs: int = 1


class PathwayInput(StrictModel):
    """The workflow's argument: the referral and settings, and after continue-as-new its state."""

    referral: Referral
    settings: PathwaySettings = PathwaySettings()
    state: PathwayState | None = None
