"""The task table: each kind of task and everything about it, in one place.

For each kind: who gets it (resolved from the pathway's state by `addressees`), whether it
leaves the receiving unit, what its template says (`parameters`), when it is due (`due_at`),
what raises it, which step a person completes it with, which steps close it, and the status
it opens with. A raise site in the workflow says `step.raise_task(kind, About(...))` with what
it knows about the task and nothing more (`workflows/effects.py`); the task list and the ways
in complete tasks by this table; "external" (outside the receiving unit, so withheld or
redacted after the patient objected to sharing) is decided here only.

Adding a task kind: its `TaskKind`, its `TaskRule` in `TASKS`, a template in each language
(`activities/templates/nb|nn/<kind>.txt`), and its raise site; `tests/test_registry.py`
names what is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, TypeVar

from rop_domain import calendar
from rop_domain.followup import Measure
from rop_domain.models import Participant, ReceivingUnit, Referral
from rop_domain.plan import SETTLED
from rop_domain.steps import StepName

if TYPE_CHECKING:  # the state names task kinds: imported for types only
    from rop_domain.state import PathwayState


class TaskKind(StrEnum):
    """What a clinician or leader is asked to do."""

    ASSESS_REFERRAL = "assess-referral"
    ASSESSMENT_REMINDER = "assessment-reminder"
    ASSESSMENT_ESCALATION = "assessment-deadline-escalation"
    INVITE_TO_MEETING = "invite-to-meeting"
    REACH_PARTY = "reach-party-otherwise"
    INVITE_TO_MEETING_REMINDER = "invite-to-meeting-reminder"
    MEETING_DEADLINE_ESCALATION = "meeting-deadline-escalation"
    MEETING_INVITATION = "meeting-invitation"
    REFERRAL_NOT_ACCEPTED = "referral-not-accepted"
    MAKE_CRISIS_PLAN = "make-crisis-plan"
    CRISIS_PLAN_REMINDER = "crisis-plan-reminder"
    CRISIS_PLAN_ESCALATION = "crisis-plan-escalation"
    REVISE_CRISIS_PLAN = "revise-crisis-plan"
    CRISIS_PLAN_REVISION_REMINDER = "crisis-plan-revision-reminder"
    CRISIS_PLAN_REVISION_ESCALATION = "crisis-plan-revision-escalation"
    START_MEASURE = "start-measure"
    HOLD_REVIEW = "hold-review"
    REVIEW_REMINDER = "review-reminder"
    REVIEW_ESCALATION = "review-escalation"
    PATHWAY_CLOSED = "pathway-closed"
    TASK_UNDELIVERED = "task-undelivered"


class TaskStatus(StrEnum):
    """FHIR Task's status vocabulary, the subset we use."""

    REQUESTED = "requested"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


Message = dict[str, str]
"""A task's template parameters: dates as ISO strings, formatted by the template. They name
the pathway by its referral id and never carry the patient's name, national id or clinical
content."""


class Recipient(StrEnum):
    """Who a task goes to (`addressees` resolves it)."""

    RECEIVING_CLINICIAN = "receiving clinician"
    INVITER = "the clinician who sent the meeting invite"
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


class Due(StrEnum):
    """When a task is due."""

    NEVER = "no due date"
    DEADLINE_DAY = "when its deadline's day ends in Norway"
    """A reminder or escalation is due when what it chases was due: it lists as overdue at
    once after the deadline."""
    MEETING = "at the meeting"


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
    template: tuple[str, ...] = ("deadline",)
    """The template's parameters besides `referral_id` (`_PARAMETERS` says what each is)."""
    due: Due = Due.DEADLINE_DAY


@dataclass(frozen=True)
class About:
    """What a task is about, as the step or timer raising it knows it. The task table takes
    what the kind's recipient, template and due date need; a kind that needs a part not
    given is a fault in the raise site (`parameters` says which)."""

    deadline: date | None = None
    meeting_at: datetime | None = None
    place: str | None = None
    party: Participant | None = None
    """The invited party a meeting invitation (or the task to reach it otherwise) is for."""
    version: int | None = None
    """The crisis plan's version."""
    measure: Measure | None = None
    review: int | None = None
    """The review's number."""
    reason: str | None = None
    """Why the pathway closed."""
    leader: str | None = None
    """The receiving unit's leader as the directory names it (escalations look it up)."""
    undelivered: str | None = None
    """The idempotency key of a task no channel delivered."""


@dataclass(frozen=True)
class Addressee:
    """Where a task goes: an address, the unit or organisation it is of (for the kinds whose
    reach goes by party), and the person, where known (HPR number)."""

    address: str
    unit: str | None = None
    person: str | None = None


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
        Recipient.INVITER, Reach.INTERNAL,
        "an invite after an objection, for a party without the patient's consent", None,
        {StepName.RECORD_MEETING: TaskStatus.COMPLETED},
        template=("role", "meeting_at"), due=Due.NEVER,
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
        template=("meeting_at", "place"), due=Due.MEETING,
    ),
    TaskKind.REFERRAL_NOT_ACCEPTED: TaskRule(
        Recipient.REFERRER, Reach.EXTERNAL, "an assessment: not in the target group", None,
        opens_as=TaskStatus.COMPLETED, template=(), due=Due.NEVER,
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
        template=("version", "deadline"),
    ),
    TaskKind.CRISIS_PLAN_REVISION_REMINDER: TaskRule(
        Recipient.CRISIS_PLAN_RESPONSIBLE, Reach.INTERNAL, "a crisis plan past its revision date",
        StepName.REGISTER_CRISIS_PLAN, _CRISIS_PLAN_DONE,
        template=("version", "deadline"),
    ),
    TaskKind.CRISIS_PLAN_REVISION_ESCALATION: TaskRule(
        Recipient.UNIT_LEADER, Reach.INTERNAL, "a crisis plan still unrevised days after",
        StepName.REGISTER_CRISIS_PLAN, _CRISIS_PLAN_DONE,
        template=("version", "deadline"),
    ),
    TaskKind.START_MEASURE: TaskRule(
        Recipient.MEASURE_RESPONSIBLE, Reach.BY_PARTY, "a measure whose predecessors settled",
        StepName.START_MEASURE,
        {
            StepName.START_MEASURE: TaskStatus.COMPLETED,
            StepName.COMPLETE_MEASURE: TaskStatus.COMPLETED,
            StepName.CANCEL_MEASURE: TaskStatus.CANCELLED,
        },
        template=("measure_id", "measure_kind"), due=Due.NEVER,
    ),
    TaskKind.HOLD_REVIEW: TaskRule(
        Recipient.KOORDINATOR, Reach.INTERNAL, "the review's due day",
        StepName.COMPLETE_REVIEW, _REVIEW_DONE,
        template=("review", "deadline"),
    ),
    TaskKind.REVIEW_REMINDER: TaskRule(
        Recipient.KOORDINATOR, Reach.INTERNAL, "a review past its due day",
        StepName.COMPLETE_REVIEW, _REVIEW_DONE,
        template=("review", "deadline"),
    ),
    TaskKind.REVIEW_ESCALATION: TaskRule(
        Recipient.UNIT_LEADER, Reach.INTERNAL, "a review still open days after",
        StepName.COMPLETE_REVIEW, _REVIEW_DONE,
        template=("review", "deadline"),
    ),
    TaskKind.TASK_UNDELIVERED: TaskRule(
        Recipient.RECEIVING_CLINICIAN, Reach.INTERNAL,
        "a delivery that failed: its receiver rejected it, or it did not get through in its window",
        None, template=("task_number", "task_kind"), due=Due.NEVER,
    ),
    TaskKind.PATHWAY_CLOSED: TaskRule(
        Recipient.EVERY_PARTY, Reach.BY_PARTY, "the pathway's closure", None,
        opens_as=TaskStatus.COMPLETED, template=("reason",), due=Due.NEVER,
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


_T = TypeVar("_T")


def _required(value: _T | None, kind: TaskKind, part: str) -> _T:
    if value is None:
        raise ValueError(f"a {kind.value} task needs its {part}: the raise site gave none")
    return value


_PARAMETERS: dict[str, Callable[[About], str | None]] = {
    "deadline": lambda about: about.deadline.isoformat() if about.deadline else None,
    "meeting_at": lambda about: about.meeting_at.isoformat() if about.meeting_at else None,
    "place": lambda about: about.place,
    "role": lambda about: about.party.role.value if about.party else None,
    "version": lambda about: None if about.version is None else str(about.version),
    "measure_id": lambda about: about.measure.id if about.measure else None,
    "measure_kind": lambda about: about.measure.kind.value if about.measure else None,
    "review": lambda about: None if about.review is None else str(about.review),
    "reason": lambda about: about.reason,
    "task_number": lambda about: _key_part(about.undelivered, 0),
    "task_kind": lambda about: _key_part(about.undelivered, 1),
}
"""What each template parameter is, taken from what the task is about."""


def _key_part(key: str | None, part: int) -> str | None:
    """A task's number (`part` 0) or kind (1) from its idempotency key,
    `<workflow id>/<number>-<kind>`."""
    if key is None:
        return None
    number, kind = key.rsplit("/", 1)[1].split("-", 1)
    return str(int(number)) if part == 0 else kind


def parameters(kind: TaskKind, referral_id: str, about: About) -> Message:
    """The template parameters of a task of `kind`, in the template's order."""
    message = {"referral_id": referral_id}
    for name in TASKS[kind].template:
        message[name] = _required(_PARAMETERS[name](about), kind, name)
    return message


def due_at(kind: TaskKind, about: About) -> datetime | None:
    """When a task of `kind` about `about` is due."""
    due = TASKS[kind].due
    if due is Due.DEADLINE_DAY:
        return calendar.end_of_day(_required(about.deadline, kind, "deadline"))
    if due is Due.MEETING:
        return _required(about.meeting_at, kind, "meeting time")
    return None


def addressees(
    kind: TaskKind, referral: Referral, state: PathwayState, about: About
) -> list[Addressee]:
    """Who gets a task of `kind`: one addressee, or for a notice to every party each of
    them once."""
    recipient = TASKS[kind].recipient
    if recipient is Recipient.EVERY_PARTY:
        return every_party(referral, state)
    if recipient is Recipient.RECEIVING_CLINICIAN:
        return [Addressee(referral.responsible_clinician)]
    if recipient is Recipient.REFERRER:
        return [Addressee(referral.referrer)]
    if recipient is Recipient.UNIT_LEADER:
        return [Addressee(_required(about.leader, kind, "unit leader"))]
    if recipient is Recipient.INVITER:
        invite = _required(state.invite, kind, "meeting invite")
        return [Addressee(invite.invite.invited_by)]
    if recipient is Recipient.INVITED_PARTY:
        party = _required(about.party, kind, "invited party")
        return [Addressee(party.address, unit=party.role.value, person=party.person)]
    if recipient is Recipient.MEASURE_RESPONSIBLE:
        measure = _required(about.measure, kind, "measure")
        return [Addressee(measure.responsible, unit=measure.provider.value)]
    meeting = _required(state.meeting, kind, "meeting")
    if recipient is Recipient.CRISIS_PLAN_RESPONSIBLE:
        return [Addressee(meeting.crisis_plan_responsible)]
    assert recipient is Recipient.KOORDINATOR
    return [Addressee(meeting.koordinator)]


def every_party(referral: Referral, state: PathwayState) -> list[Addressee]:
    """The receiving clinician, each invited party the invite sent to, and the responsibles
    of measures not settled; each address once, with the unit or organisation it is of."""
    parties = [Addressee(referral.responsible_clinician, unit=referral.receiving_unit.value)]
    if state.invite:
        parties += [
            Addressee(p.address, unit=p.role.value)
            for p in state.invite.invite.participants
            if p.reached_by is None
        ]
    parties += [
        Addressee(e.measure.responsible, unit=e.measure.provider.value)
        for e in state.measures
        if e.status not in SETTLED
    ]
    told: set[str] = set()
    once = []
    for party in parties:
        if party.address not in told:
            told.add(party.address)
            once.append(party)
    return once
