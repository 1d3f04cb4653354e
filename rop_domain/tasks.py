"""The task table: for each kind of task, who gets it, whether it leaves the receiving unit,
what raises it, which step a person completes it with, and which steps close it.

The workflow raises and closes tasks by this table (`workflows/effects.py`), the task
list and the ways in complete them by it, and "external" (outside the receiving unit,
so withheld or redacted after the patient objected to sharing) is decided here only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from rop_domain.commands import TaskKind, TaskStatus
from rop_domain.models import ReceivingUnit
from rop_domain.steps import StepName


class Recipient(StrEnum):
    """Who a task goes to."""

    RECEIVING_CLINICIAN = "receiving clinician"
    UNIT_LEADER = "the receiving unit's leader"
    REFERRER = "the referrer"
    INVITED_PARTY = "each invited party"
    CRISIS_PLAN_RESPONSIBLE = "the crisis plan's responsible"
    MEASURE_RESPONSIBLE = "the measure's responsible"
    KOORDINATOR = "the koordinator"
    EVERY_PARTY = "the receiving clinician, the invited parties, open measures' responsibles"


class Reach(StrEnum):
    """Whether a task leaves the receiving unit."""

    INTERNAL = "internal"
    EXTERNAL = "external"
    BY_PARTY = "by party"
    """External when the party is not of the receiving unit (an invitee, a measure's provider)."""


@dataclass(frozen=True)
class TaskRule:
    recipient: Recipient
    reach: Reach
    raised_by: str
    """The step or timer that raises the task, in words."""
    done_by: StepName | None
    """The step a person completes the task with; None: the task only informs."""
    closed_by: dict[StepName, TaskStatus] = field(default_factory=dict)
    """The steps that close the task when taken, and the status they give it. Closing the
    pathway cancels every open task as well."""
    opens_as: TaskStatus = TaskStatus.REQUESTED
    """A notice sent as the pathway ends asks nothing of anyone: it is recorded completed."""


_CRISIS_PLAN_DONE = {StepName.REGISTER_CRISIS_PLAN: TaskStatus.COMPLETED}
_REVIEW_DONE = {StepName.COMPLETE_REVIEW: TaskStatus.COMPLETED}
_INVITED = {StepName.INVITE_TO_MEETING: TaskStatus.CANCELLED}

TASKS: dict[TaskKind, TaskRule] = {
    TaskKind.ASSESS_REFERRAL: TaskRule(
        Recipient.RECEIVING_CLINICIAN, Reach.INTERNAL, "the referral's intake",
        StepName.ASSESS, {StepName.ASSESS: TaskStatus.COMPLETED},
    ),
    TaskKind.ASSESSMENT_REMINDER: TaskRule(
        Recipient.RECEIVING_CLINICIAN, Reach.INTERNAL, "the assessment deadline's reminder",
        StepName.ASSESS, {StepName.ASSESS: TaskStatus.CANCELLED},
    ),
    TaskKind.ASSESSMENT_ESCALATION: TaskRule(
        Recipient.UNIT_LEADER, Reach.INTERNAL, "the assessment deadline's escalation",
        StepName.ASSESS, {StepName.ASSESS: TaskStatus.CANCELLED},
    ),
    TaskKind.INVITE_TO_MEETING: TaskRule(
        Recipient.RECEIVING_CLINICIAN, Reach.INTERNAL, "an assessment: in the target group",
        StepName.INVITE_TO_MEETING, {StepName.INVITE_TO_MEETING: TaskStatus.COMPLETED},
    ),
    TaskKind.REACH_PARTY: TaskRule(
        Recipient.RECEIVING_CLINICIAN, Reach.INTERNAL,
        "an invite after an objection, for a party without the patient's consent", None,
        {StepName.RECORD_MEETING: TaskStatus.COMPLETED},
    ),
    TaskKind.INVITE_TO_MEETING_REMINDER: TaskRule(
        Recipient.RECEIVING_CLINICIAN, Reach.INTERNAL, "the meeting deadline's reminder",
        StepName.INVITE_TO_MEETING, _INVITED,
    ),
    TaskKind.MEETING_DEADLINE_ESCALATION: TaskRule(
        Recipient.UNIT_LEADER, Reach.INTERNAL, "the meeting deadline's escalation",
        StepName.INVITE_TO_MEETING, _INVITED,
    ),
    TaskKind.MEETING_INVITATION: TaskRule(
        Recipient.INVITED_PARTY, Reach.BY_PARTY, "the meeting invite, or its move", None,
        {StepName.RECORD_MEETING: TaskStatus.COMPLETED, StepName.MOVE_MEETING: TaskStatus.CANCELLED},
    ),
    TaskKind.REFERRAL_NOT_ACCEPTED: TaskRule(
        Recipient.REFERRER, Reach.EXTERNAL, "an assessment: not in the target group", None,
        opens_as=TaskStatus.COMPLETED,
    ),
    TaskKind.MAKE_CRISIS_PLAN: TaskRule(
        Recipient.CRISIS_PLAN_RESPONSIBLE, Reach.INTERNAL, "the meeting",
        StepName.REGISTER_CRISIS_PLAN, _CRISIS_PLAN_DONE,
    ),
    TaskKind.CRISIS_PLAN_REMINDER: TaskRule(
        Recipient.CRISIS_PLAN_RESPONSIBLE, Reach.INTERNAL, "the crisis plan deadline's reminder",
        StepName.REGISTER_CRISIS_PLAN, _CRISIS_PLAN_DONE,
    ),
    TaskKind.CRISIS_PLAN_ESCALATION: TaskRule(
        Recipient.UNIT_LEADER, Reach.INTERNAL, "the crisis plan deadline's escalation",
        StepName.REGISTER_CRISIS_PLAN, _CRISIS_PLAN_DONE,
    ),
    TaskKind.REVISE_CRISIS_PLAN: TaskRule(
        Recipient.CRISIS_PLAN_RESPONSIBLE, Reach.INTERNAL, "the crisis plan's revision date",
        StepName.REGISTER_CRISIS_PLAN, _CRISIS_PLAN_DONE,
    ),
    TaskKind.CRISIS_PLAN_REVISION_REMINDER: TaskRule(
        Recipient.CRISIS_PLAN_RESPONSIBLE, Reach.INTERNAL, "a crisis plan past its revision date",
        StepName.REGISTER_CRISIS_PLAN, _CRISIS_PLAN_DONE,
    ),
    TaskKind.CRISIS_PLAN_REVISION_ESCALATION: TaskRule(
        Recipient.UNIT_LEADER, Reach.INTERNAL, "a crisis plan still unrevised days after",
        StepName.REGISTER_CRISIS_PLAN, _CRISIS_PLAN_DONE,
    ),
    TaskKind.START_MEASURE: TaskRule(
        Recipient.MEASURE_RESPONSIBLE, Reach.BY_PARTY, "a measure whose predecessors settled",
        StepName.START_MEASURE,
        {
            StepName.START_MEASURE: TaskStatus.COMPLETED,
            StepName.COMPLETE_MEASURE: TaskStatus.COMPLETED,
            StepName.CANCEL_MEASURE: TaskStatus.CANCELLED,
        },
    ),
    TaskKind.HOLD_REVIEW: TaskRule(
        Recipient.KOORDINATOR, Reach.INTERNAL, "the review's due day",
        StepName.COMPLETE_REVIEW, _REVIEW_DONE,
    ),
    TaskKind.REVIEW_REMINDER: TaskRule(
        Recipient.KOORDINATOR, Reach.INTERNAL, "a review past its due day",
        StepName.COMPLETE_REVIEW, _REVIEW_DONE,
    ),
    TaskKind.REVIEW_ESCALATION: TaskRule(
        Recipient.UNIT_LEADER, Reach.INTERNAL, "a review still open days after",
        StepName.COMPLETE_REVIEW, _REVIEW_DONE,
    ),
    TaskKind.PATHWAY_CLOSED: TaskRule(
        Recipient.EVERY_PARTY, Reach.BY_PARTY, "the pathway's closure", None,
        opens_as=TaskStatus.COMPLETED,
    ),
}  # fmt: skip

MEETING_CHASE = [TaskKind.INVITE_TO_MEETING_REMINDER, TaskKind.MEETING_DEADLINE_ESCALATION]
"""Also cancelled by an assessment that finds the patient not in the target group."""


def closed_by(step: StepName) -> dict[TaskStatus, list[TaskKind]]:
    """The task kinds `step` closes, by the status it gives them, in the table's order."""
    closes: dict[TaskStatus, list[TaskKind]] = {}
    for kind, rule in TASKS.items():
        status = rule.closed_by.get(step)
        if status is not None:
            closes.setdefault(status, []).append(kind)
    return closes


def step_for(kind: TaskKind) -> StepName | None:
    """The step a person completes a task of `kind` with; None for a task that informs."""
    return TASKS[kind].done_by


def is_external(kind: TaskKind, receiving_unit: ReceivingUnit, party_unit: str | None) -> bool:
    """Whether a task of `kind` leaves the receiving unit. `party_unit` is the unit or
    organisation of the recipient, for the kinds that go by party (an invitee's role, a
    measure's provider); the receiving unit's own people are never external."""
    reach = TASKS[kind].reach
    if reach is Reach.BY_PARTY:
        return party_unit is not None and party_unit.upper() != receiving_unit.value
    return reach is Reach.EXTERNAL
