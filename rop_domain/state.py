"""The pathway workflow's state, its input and what it reports.

The state is what the workflow carries across continue-as-new. It is kept compact
(no history of past steps: those are in the record service's event log) so that a
pathway can run for years in short Temporal runs.
"""

from __future__ import annotations

import base64
import zlib
from datetime import date, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from rop_domain.commands import Snapshot
from rop_domain.deadlines import PathwaySettings
from rop_domain.followup import Closure, CrisisPlan, Measure, MeetingOutcome, Objection
from rop_domain.models import (
    Participant,
    Phase,
    RecordedAssessment,
    RecordedInvite,
    Referral,
    StrictModel,
)
from rop_domain.plan import MeasureStatus
from rop_domain.tasks import TaskKind
from rop_domain.view import OpenTask


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


ANSWERS_KEPT_FOR = timedelta(days=7)
"""How long a step's first answer is kept for a repeat of its Update id: longer than the
HTTP API keeps Idempotency-Key answers (ROP_API_IDEMPOTENCY_HOURS, 72 by default)."""
MAX_ANSWER_BYTES = 384 * 1024
"""The answers kept take at most this many bytes, packed (the newest kept): the bound on the
state's size, and so on continue-as-new's input, well under Temporal's 2 MB payload limit. A
count would let a retry after that many other steps be applied twice; at ~1 KiB a packed
answer this holds hundreds of steps, more than a pathway takes in `ANSWERS_KEPT_FOR`."""
ANSWERS_KEPT_BEFORE_BYTES = 25
"""Runs from before `MAX_ANSWER_BYTES` (workflow patch `answers-bounded-by-bytes`) kept at
most this many answers, unpacked; they replay so."""


class KeptAnswer(MutableModel):
    """The first answer to an accepted Update, for a repeat of its id in a later run.

    Temporal de-duplicates Update ids within one run only; the answers travel in the state
    across continue-as-new. The answer is a `PathwayStatus` (`rop_domain.view`) as JSON,
    kept as a string: copied by reference, never nested.
    """

    update_id: str
    update_name: str
    at: datetime
    answer: str
    packed: bool = Field(
        default=False,
        description="`answer` is zlib-compressed, base64 (answers kept since "
        "the byte bound); runs from before kept it as JSON",
    )

    def text(self) -> str:
        """The answer as JSON."""
        return unpack(self.answer) if self.packed else self.answer

    def size(self) -> int:
        return len(self.answer) + len(self.update_id) + len(self.update_name)


RECORDED_STEPS_KEPT_FOR = timedelta(days=14)
"""How long the workflow keeps each step it recorded, whole: what `rop reconcile` compares the
record with, and writes back from after a restore of the record from a backup (nightly or
weekly backups are younger than this)."""
MAX_RECORDED_STEP_BYTES = 384 * 1024
"""The steps kept take at most this many bytes, packed (the newest kept)."""


def pack(text: str) -> str:
    """Text compressed for the state (zlib, base64): deterministic, as workflow code must be."""
    return base64.b64encode(zlib.compress(text.encode(), 9)).decode()


def unpack(packed: str) -> str:
    return zlib.decompress(base64.b64decode(packed)).decode()


class KeptStep(MutableModel):
    """A step the workflow recorded: the intake (`NewPathway`) or a `PathwayStep`, as JSON,
    packed. What the record must hold; `rop reconcile` reads them through a query."""

    at: datetime
    intake: bool = False
    packed: str


class PathwayState(MutableModel):
    """Everything the pathway knows, apart from its referral and settings."""

    phase: Phase = Phase.AWAITING_ASSESSMENT
    sequence: int = Field(default=0, description="Counter behind every idempotency key")
    runs: int = Field(default=1, description="Temporal runs so far (continue-as-new)")
    participants: list[Participant] = Field(default_factory=list)
    assessment: RecordedAssessment | None = None
    invite: RecordedInvite | None = None
    assessment_chase: Chase = Field(default_factory=Chase)
    meeting_chase: Chase = Field(default_factory=Chase)
    meeting: MeetingOutcome | None = None
    crisis_plan: CrisisPlan | None = None
    crisis_plan_at: datetime | None = None
    crisis_chase: Chase = Field(default_factory=Chase)
    crisis_revision_raised_for: int | None = None
    revision_chase: Chase = Field(
        default_factory=Chase, description="The current version's revision, once it is due"
    )
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
    open_tasks: list[OpenTask] = Field(
        default_factory=list,
        description="Tasks raised and not yet closed that someone must act on (runs from "
        "before this field list only those raised since)",
    )
    answers: list[KeptAnswer] = Field(
        default_factory=list, description="Recent Updates' first answers, by Update id"
    )
    record_behind: bool = Field(
        default=False, description="As the last reconciliation found (`rop reconcile`)"
    )
    escalated_to_unit: int = Field(
        default=0,
        ge=0,
        description="Escalations sent to the unit itself: the directory names no leader",
    )
    recorded_steps: list[KeptStep] = Field(
        default_factory=list,
        description="The steps recorded in the last `RECORDED_STEPS_KEPT_FOR`, oldest first",
    )

    def kept_answer(self, update_id: str) -> KeptAnswer | None:
        """The kept answer to Update `update_id`, if it was accepted in an earlier run."""
        return next((a for a in self.answers if a.update_id == update_id), None)

    def keep_answer(
        self,
        update_id: str,
        update_name: str,
        at: datetime,
        answer: str,
        *,
        bounded_by_bytes: bool = True,
    ) -> None:
        """Keep an Update's answer; forget those past `ANSWERS_KEPT_FOR`, and the oldest beyond
        `MAX_ANSWER_BYTES` (`bounded_by_bytes=False`: beyond `ANSWERS_KEPT_BEFORE_BYTES`, as
        runs from before the byte bound did)."""
        recent = [a for a in self.answers if at - a.at < ANSWERS_KEPT_FOR]
        if not bounded_by_bytes:
            recent.append(
                KeptAnswer(update_id=update_id, update_name=update_name, at=at, answer=answer)
            )
            self.answers = recent[-ANSWERS_KEPT_BEFORE_BYTES:]
            return
        recent.append(
            KeptAnswer(
                update_id=update_id,
                update_name=update_name,
                at=at,
                answer=pack(answer),
                packed=True,
            )
        )
        kept, total = 0, 0
        for kept_answer in reversed(recent):
            total += kept_answer.size()
            if total > MAX_ANSWER_BYTES:
                break
            kept += 1
        self.answers = recent[len(recent) - kept :]

    def keep_recorded_step(self, at: datetime, step_json: str, *, intake: bool = False) -> None:
        """Keep a step just recorded; forget those older than `RECORDED_STEPS_KEPT_FOR` and
        the oldest beyond `MAX_RECORDED_STEP_BYTES`."""
        recent = [s for s in self.recorded_steps if at - s.at < RECORDED_STEPS_KEPT_FOR]
        recent.append(KeptStep(at=at, intake=intake, packed=pack(step_json)))
        kept, total = 0, 0
        for step in reversed(recent):
            total += len(step.packed)
            if total > MAX_RECORDED_STEP_BYTES:
                break
            kept += 1
        self.recorded_steps = recent[len(recent) - kept :]

    def measure(self, measure_id: str) -> MeasureEntry | None:
        return next((e for e in self.measures if e.measure.id == measure_id), None)

    def statuses(self) -> dict[str, MeasureStatus]:
        return {e.measure.id: e.status for e in self.measures}

    def task_raised(self, task: OpenTask) -> None:
        self.open_tasks.append(task)

    def tasks_closed(self, kinds: list[TaskKind] | None, reference: str | None) -> None:
        """Forget the open tasks a step closed: of `kinds` (all if None), of one reference."""
        self.open_tasks = [
            t
            for t in self.open_tasks
            if not (
                (kinds is None or t.kind in kinds)
                and (reference is None or t.reference == reference)
            )
        ]


class PathwayOutcome(StrictModel):
    """What the workflow returns when it ends."""

    workflow_id: str
    phase: Phase
    invited_on_time: bool | None
    overdue: bool
    reviews_completed: int = 0
    runs: int = 1


class PathwayInput(StrictModel):
    """The workflow's argument: the referral and settings, and after continue-as-new (or a
    restart from the record) its state."""

    referral: Referral
    settings: PathwaySettings = PathwaySettings()
    state: PathwayState | None = None
    redeliver: list[str] = Field(
        default_factory=list,
        description="Keys of tasks whose delivery was under way when the pathway's workflow "
        "was lost: a restart from the record delivers them again (deliveries are idempotent)",
    )


_NOT_IN_A_SNAPSHOT = {"answers", "recorded_steps"}
"""What a snapshot leaves out: kept for repeats and repairs within days, which a workflow
restarted from its record has no use for, and the bulk of the state."""


class PathwaySnapshot(StrictModel):
    """The pathway as a step left it: what a restart from the record starts from, with the
    referral (rebuilt from the record's pathway row)."""

    settings: PathwaySettings
    state: PathwayState


def snapshot_of(settings: PathwaySettings, state: PathwayState) -> Snapshot:
    """The pathway as it stands, packed for the record (deterministic: workflow code)."""
    kept = state.model_copy(update={key: [] for key in _NOT_IN_A_SNAPSHOT})
    text = PathwaySnapshot(settings=settings, state=kept).model_dump_json()
    return Snapshot(sequence=state.sequence, packed=pack(text))


def unpack_snapshot(snapshot: Snapshot) -> PathwaySnapshot:
    return PathwaySnapshot.model_validate_json(unpack(snapshot.packed))
