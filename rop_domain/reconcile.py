"""What the workflow has applied against what the record holds: the words of `rop reconcile`.

A pathway's workflow and its record agree by construction (a step is applied with its
record or not at all), until one store is restored from a backup: then the record lacks the
steps taken since the backup, later steps write on top, and the tasks those steps closed
show as open. The workflow keeps each step it recorded in the last two weeks, whole
(`state.KeptStep`); these models carry them out (a query) and say what differs, by ids only.
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import Field, model_validator

from rop_domain.commands import NewPathway, PathwayStep
from rop_domain.models import Phase, StrictModel
from rop_domain.state import KeptStep, unpack


class RecordedStep(StrictModel):
    """One step the workflow recorded: the intake, or a step."""

    at: datetime
    intake: NewPathway | None = None
    step: PathwayStep | None = None

    def event_keys(self) -> list[str]:
        if self.intake is not None:
            return [f"{self.intake.workflow_id}/referral-received"]
        assert self.step is not None
        return [event.idempotency_key for event in self.step.events]

    def task_keys(self) -> list[str]:
        found = self.intake or self.step
        assert found is not None
        return [task.idempotency_key for task in found.notifications]


def recorded_step(kept: KeptStep) -> RecordedStep:
    """A kept step as the query gives it."""
    text = unpack(kept.packed)
    if kept.intake:
        return RecordedStep(at=kept.at, intake=NewPathway.model_validate_json(text))
    return RecordedStep(at=kept.at, step=PathwayStep.model_validate_json(text))


class RecordedSteps(StrictModel):
    """The answer of the pathway's `recorded_steps` query."""

    workflow_id: str
    phase: Phase = Field(description="The phase the recorded steps have brought it to")
    record_behind: bool = Field(
        default=False, description="Whether the pathway shows its record behind (last check)"
    )
    steps: list[RecordedStep] = Field(description="Oldest first")


class Difference(StrictModel):
    """How one pathway's record differs from its workflow, by ids only."""

    workflow_id: str
    no_record: bool = Field(default=False, description="The record has no row for the pathway")
    no_workflow: bool = Field(
        default=False, description="The record has the pathway; Temporal does not"
    )
    missing_events: list[str] = Field(default_factory=list, description="Idempotency keys")
    missing_tasks: list[str] = Field(default_factory=list, description="Idempotency keys")
    record_phase: str | None = None
    workflow_phase: str | None = None

    @property
    def behind(self) -> bool:
        """The record lacks rows of steps the workflow applied (a repair writes them). The
        phase alone does not count: a query may answer between a step's record and its
        state, and a step that changed the phase has rows the check finds missing."""
        return self.no_record or bool(self.missing_events or self.missing_tasks)

    def describe(self) -> str:
        """One line: what differs, by ids only."""
        if self.no_workflow:
            return f"{self.workflow_id}: in the record, no workflow in Temporal"
        parts = []
        if self.no_record:
            parts.append("no record row")
        if self.missing_events:
            parts.append(f"{len(self.missing_events)} events missing")
        if self.missing_tasks:
            parts.append(f"{len(self.missing_tasks)} tasks missing")
        if self.record_phase != self.workflow_phase and not self.no_record:
            parts.append(f"phase {self.record_phase} in the record, {self.workflow_phase} applied")
        return f"{self.workflow_id}: " + ("; ".join(parts) or "record = workflow")


def compare(
    recorded: RecordedSteps,
    present_events: set[str],
    present_tasks: set[str],
    record_phase: str | None,
) -> Difference:
    """The difference between what the workflow recorded and what the record holds (keys of
    the recorded steps' events and tasks found there, and the pathway row's phase; None: no
    row)."""
    events = [key for step in recorded.steps for key in step.event_keys()]
    tasks = [key for step in recorded.steps for key in step.task_keys()]
    return Difference(
        workflow_id=recorded.workflow_id,
        no_record=record_phase is None,
        missing_events=[key for key in events if key not in present_events],
        missing_tasks=[key for key in tasks if key not in present_tasks],
        record_phase=record_phase,
        workflow_phase=recorded.phase.value,
    )


class RecordBehind(StrictModel):
    """Update `note_reconciliation`: what the last check found, for the pathway to show."""

    behind: bool
    checked_at: datetime
    missing_events: int = Field(default=0, ge=0)


class ReconcileRequest(StrictModel):
    """Which pathways to check, whether to repair, and who asks (for the access log)."""

    pathway: str | None = Field(default=None, description="One pathway's workflow id")
    since: date | None = Field(
        default=None,
        description="Only pathways running, or closed since this day (the backup's day)",
    )
    repair: bool = False
    task_queue: str | None = Field(
        default=None, description="Only pathways on this task queue (a deployment's)"
    )
    requested_by: str = Field(default="rop-forlop", max_length=200)
    flag: bool = Field(
        default=True, description="Tell each pathway what was found (RopStalled record-behind)"
    )
    restart: bool = Field(
        default=False,
        description="Start each open pathway Temporal does not know again from its record",
    )

    @model_validator(mode="after")
    def _restart_names_a_queue(self) -> ReconcileRequest:
        if self.restart and self.task_queue is None:
            raise ValueError("a restart needs the task queue its pathways run on")
        return self


class NotRestarted(StrictModel):
    """A pathway without a workflow that a restart could not start again, and why."""

    workflow_id: str
    reason: str


class ReconcileReport(StrictModel):
    """What a reconciliation found and did."""

    checked: int
    behind: list[Difference] = Field(description="Pathways whose record lacks applied steps")
    without_workflow: list[str] = Field(
        description="Open pathways in the record that Temporal does not know"
    )
    unanswered: list[str] = Field(
        default_factory=list, description="Pathways whose workflow did not answer the query"
    )
    repaired: list[str] = Field(default_factory=list)
    steps_written: int = 0
    restarted: list[str] = Field(
        default_factory=list, description="Pathways started again from their record"
    )
    not_restarted: list[NotRestarted] = Field(default_factory=list)

    def still_without_workflow(self) -> list[str]:
        """Open pathways in the record that still have no workflow."""
        return [w for w in self.without_workflow if w not in self.restarted]

    def lines(self) -> list[str]:
        """The report for a terminal or a log: one line a pathway, ids only."""
        found = [d.describe() for d in self.behind]
        found += [f"{w}: in the record, no workflow in Temporal" for w in self.without_workflow]
        found += [f"{w}: restarted from the record" for w in self.restarted]
        found += [f"{n.workflow_id}: not restarted: {n.reason}" for n in self.not_restarted]
        found += [
            f"{w}: the workflow did not answer (is a worker running?)" for w in self.unanswered
        ]
        repaired = (
            f"; repaired {len(self.repaired)} ({self.steps_written} steps written)"
            if self.repaired
            else ""
        )
        if self.restarted:
            repaired += f"; restarted {len(self.restarted)}"
        return [
            *found,
            f"{self.checked} pathways checked: {len(self.behind)} with the record behind, "
            f"{len(self.without_workflow)} without a workflow, "
            f"{len(self.unanswered)} unanswered{repaired}",
        ]
