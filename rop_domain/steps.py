"""The step registry: every step a person or service takes on a pathway, in one place.

A step is one Temporal Update of the pathway workflow. Each entry says everything the
ways in need to offer it: its Update's name, the model of its body, the field that names
who took it, its HTTP path, its `rop` command and a summary. The Python API
(`starter.pathways.Pathways.send`), the HTTP routes, the CLI, task completion and the
API's actor check are all driven by this table. Adding a step is one entry here, its
Update handler in `workflows/pathway.py`, and its CLI options in `starter/cli_steps.py`
(`CLI_STEPS`); a step a task stands for also names the completion field that carries it
(`starter/api/routes_tasks.py`, `COMPLETION_FIELDS`). `tests/test_registry.py` fails,
naming the piece, while one is missing. Which tasks a step closes is the task table's
(`rop_domain/tasks.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel

from rop_domain.followup import (
    Closure,
    CrisisPlan,
    MeasureCancellation,
    MeasureStep,
    MeetingOutcome,
    Objection,
    PlanRevision,
    Review,
)
from rop_domain.models import Assessment, MeetingInvite, MeetingMove


class StepName(StrEnum):
    """A step, named as its Update is."""

    ASSESS = "assess"
    INVITE_TO_MEETING = "invite_to_meeting"
    MOVE_MEETING = "move_meeting"
    RECORD_MEETING = "record_meeting"
    REGISTER_CRISIS_PLAN = "register_crisis_plan"
    START_MEASURE = "start_measure"
    COMPLETE_MEASURE = "complete_measure"
    CANCEL_MEASURE = "cancel_measure"
    REVISE_PLAN = "revise_plan"
    COMPLETE_REVIEW = "complete_review"
    RECORD_OBJECTION = "record_objection"
    CLOSE_PATHWAY = "close_pathway"


@dataclass(frozen=True)
class Step:
    """One step as every way in offers it."""

    name: StepName
    body: type[BaseModel]
    actor_field: str
    """The field of the body that names who took the step (a person may name only themselves)."""
    http_path: str
    """Below `/pathways/{workflow_id}/`."""
    command: tuple[str, ...]
    """The `rop` command (`rop measure start ...` is `("measure", "start")`)."""
    action: str
    """The step in words: the access log's action, and errors."""
    summary: str


STEPS: tuple[Step, ...] = (
    Step(StepName.ASSESS, Assessment, "assessor", "assessment", ("assess",), "assess",
         "Record the assessment: in or out of the target group"),
    Step(StepName.INVITE_TO_MEETING, MeetingInvite, "invited_by", "meeting-invite", ("invite",),
         "invite to meeting", "Invite the parties to the first clarification meeting"),
    Step(StepName.MOVE_MEETING, MeetingMove, "moved_by", "meeting-move", ("move-meeting",),
         "move meeting", "Move the clarification meeting to another time; the parties are told"),
    Step(StepName.RECORD_MEETING, MeetingOutcome, "recorded_by", "meeting", ("meeting",),
         "record meeting", "Record the clarification meeting and what it decided"),
    Step(StepName.REGISTER_CRISIS_PLAN, CrisisPlan, "registered_by", "crisis-plan",
         ("crisis-plan",), "register crisis plan", "Register a version of the crisis plan"),
    Step(StepName.START_MEASURE, MeasureStep, "by", "measures/start", ("measure", "start"),
         "start measure", "A measure has started"),
    Step(StepName.COMPLETE_MEASURE, MeasureStep, "by", "measures/complete",
         ("measure", "complete"), "complete measure", "A measure is completed"),
    Step(StepName.CANCEL_MEASURE, MeasureCancellation, "by", "measures/cancel",
         ("measure", "cancel"), "cancel measure", "A measure is cancelled"),
    Step(StepName.REVISE_PLAN, PlanRevision, "revised_by", "plan", ("plan", "revise"), "revise plan",
         "Replace the plan of measures"),
    Step(StepName.COMPLETE_REVIEW, Review, "reviewed_by", "review", ("review",),
         "complete review", "Record a periodic review"),
    Step(StepName.RECORD_OBJECTION, Objection, "recorded_by", "objection", ("objection",),
         "record objection", "The patient objects to sharing with cooperating services"),
    Step(StepName.CLOSE_PATHWAY, Closure, "closed_by", "closure", ("close",), "close pathway",
         "End the pathway"),
)  # fmt: skip

STEP: dict[StepName, Step] = {step.name: step for step in STEPS}
"""Each step by its name."""


def actor_of(step: Step, body: BaseModel) -> str:
    """Who the body says took the step."""
    actor: str = getattr(body, step.actor_field)
    return actor
