"""The worklist's forms: for each step a task can stand for, which fields the form shows and
the step's body built from what was sent. The body is the step's own model, so the same
validation applies as on the API's route; the actor is the signed-in person, never a field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from rop_domain.calendar import OSLO
from rop_domain.followup import (
    Closure,
    CrisisPlan,
    MeasureStep,
    MeetingOutcome,
    PlanRevision,
    Review,
)
from rop_domain.models import (
    FINAL_PHASES,
    Assessment,
    MeetingInvite,
    MeetingMove,
    Participant,
    Phase,
)
from rop_domain.steps import StepName
from rop_domain.tasks import TaskKind, step_for
from rop_domain.view import PathwayStatus

FORMS = frozenset(
    {
        StepName.ASSESS,
        StepName.INVITE_TO_MEETING,
        StepName.RECORD_MEETING,
        StepName.REGISTER_CRISIS_PLAN,
        StepName.START_MEASURE,
        StepName.COMPLETE_REVIEW,
    }
)
"""The steps a task's form sends (`step_of_form`)."""

BLANK_MEASURE_ROWS = 2
"""Empty rows a plan's form offers for new measures, below the plan's current ones."""


PATHWAY_STEPS = frozenset({StepName.MOVE_MEETING, StepName.REVISE_PLAN, StepName.CLOSE_PATHWAY})
"""Steps no task stands for, each with a form on the pages of the pathway's tasks."""


def pathway_steps(phase: Phase) -> list[StepName]:
    """Steps no task stands for that a person may take from any of the pathway's tasks in
    `phase`: move the invited meeting, revise the plan in follow-up, close an open pathway."""
    steps = []
    if phase is Phase.MEETING_INVITED:
        steps.append(StepName.MOVE_MEETING)
    if phase is Phase.FOLLOW_UP:
        steps.append(StepName.REVISE_PLAN)
    if phase not in FINAL_PHASES:
        steps.append(StepName.CLOSE_PATHWAY)
    return steps


def step_of_form(task_kind: TaskKind) -> StepName | None:
    """The step a task's form sends: the one the task stands for; for an invitation to the
    avklaringsmøte, recording the meeting (the task table has no task for that step: the
    invitation is what a unit's member holds then)."""
    if task_kind is TaskKind.MEETING_INVITATION:
        return StepName.RECORD_MEETING
    step = step_for(task_kind)
    return step if step in FORMS else None


def form_for(task_kind: TaskKind, task_open: bool, phase: Phase) -> StepName | None:
    """The form a task's page shows: its step's while the task is open (the meeting's once it
    is invited). A form sent again after it applied is answered by its Update's id, whatever
    the task is by then (`step_of_form`)."""
    step = step_of_form(task_kind)
    if not task_open or (step is StepName.RECORD_MEETING and phase is not Phase.MEETING_INVITED):
        return None
    return step


@dataclass(frozen=True)
class FormProblem:
    """A field the step's validation refused, and why."""

    field: str
    message: str


class FormRefused(Exception):
    def __init__(self, problems: list[FormProblem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems


def body_of(
    step: StepName,
    fields: dict[str, list[str]],
    actor: str,
    status: PathwayStatus,
    measure_id: str | None,
) -> BaseModel:
    """The step's body from the form's `fields`, or `FormRefused` naming each bad field."""
    one = {name: values[-1] for name, values in fields.items() if values}
    data: dict[str, Any]
    model: type[BaseModel]
    if step is StepName.ASSESS:
        model = Assessment
        data = {"assessor": actor, "decision": one.get("decision"), "reason": one.get("reason")}
    elif step is StepName.INVITE_TO_MEETING:
        model = MeetingInvite
        data = _invite(fields, one, actor, status.recommended_participants)
    elif step is StepName.RECORD_MEETING:
        model = MeetingOutcome
        data = {
            "recorded_by": actor,
            "held_at": _oslo(one.get("held_at")),
            "attendees": fields.get("attendee", []),
            "koordinator": one.get("koordinator"),
            "individual_plan": one.get("individual_plan"),
            "crisis_plan_responsible": one.get("crisis_plan_responsible"),
            "review_interval_weeks": one.get("review_interval_weeks") or 12,
            "measures": _measures(one),
        }
    elif step is StepName.REGISTER_CRISIS_PLAN:
        model = CrisisPlan
        data = {
            "registered_by": actor,
            "version": one.get("version"),
            "made_with_patient": "made_with_patient" in one,
            "relatives_involved": "relatives_involved" in one,
            "next_revision": one.get("next_revision"),
            "without_patient_reason": one.get("without_patient_reason") or None,
        }
    elif step is StepName.START_MEASURE:
        model = MeasureStep
        data = {"measure_id": measure_id, "by": actor, "note": one.get("note") or None}
    elif step is StepName.COMPLETE_REVIEW:
        model = Review
        data = {
            "reviewed_by": actor,
            "outcome": one.get("outcome"),
            "note": one.get("note") or None,
        }
    elif step is StepName.MOVE_MEETING:
        model = MeetingMove
        data = {
            "moved_by": actor,
            "meeting_at": _oslo(one.get("meeting_at")),
            "reason": one.get("reason"),
            "location": one.get("location") or None,
        }
    elif step is StepName.REVISE_PLAN:
        model = PlanRevision
        data = {
            "revised_by": actor,
            "reason": one.get("reason"),
            "measures": _measures(one),
            "replaces_version": one.get("replaces_version") or None,
        }
    else:
        assert step is StepName.CLOSE_PATHWAY
        model = Closure
        data = {"closed_by": actor, "reason": one.get("reason"), "note": one.get("note") or None}
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise FormRefused(
            [
                FormProblem(".".join(str(part) for part in e["loc"]) or "form", e["msg"])
                for e in error.errors()
            ]
        ) from None


def _invite(
    fields: dict[str, list[str]],
    one: dict[str, str],
    actor: str,
    recommended: list[Participant],
) -> dict[str, Any]:
    """An invitation: the recommended parties ticked, a reason for each one not ticked."""
    ticked = set(fields.get("participant", []))
    participants = [
        p.model_dump(mode="json") for index, p in enumerate(recommended) if str(index) in ticked
    ]
    absent = {
        p.role.value: one.get(f"absent_{index}", "")
        for index, p in enumerate(recommended)
        if str(index) not in ticked
    }
    return {
        "invited_by": actor,
        "meeting_at": _oslo(one.get("meeting_at")),
        "location": one.get("location") or None,
        "participants": participants,
        "absent_reasons": {role: reason for role, reason in absent.items() if reason},
    }


def _measures(one: dict[str, str]) -> list[dict[str, Any]]:
    """The plan's measures from rows `measure_id_N`, `kind_N`, … (a row without an id is left
    out: the blank rows a person did not fill in); `depends_on_N` lists ids, comma-separated."""
    rows = sorted(
        int(name.removeprefix("measure_id_"))
        for name, value in one.items()
        if name.startswith("measure_id_") and name[11:].isdigit() and value.strip()
    )
    return [
        {
            "id": one[f"measure_id_{row}"].strip(),
            "kind": one.get(f"kind_{row}"),
            "provider": one.get(f"provider_{row}"),
            "responsible": one.get(f"responsible_{row}"),
            "description": one.get(f"description_{row}") or None,
            "indication": one.get(f"indication_{row}") or None,
            "depends_on": [
                d.strip() for d in one.get(f"depends_on_{row}", "").split(",") if d.strip()
            ],
        }
        for row in rows
    ]


def _oslo(local: str | None) -> str | None:
    """A `datetime-local` value (no offset) as Oslo time, as the person meant it."""
    if not local:
        return None
    try:
        return datetime.fromisoformat(local).replace(tzinfo=OSLO).isoformat()
    except ValueError:
        return local  # the model's validation names it
