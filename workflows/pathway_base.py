"""The pathway workflow's state and the facts derived from it, shared by its parts.

The workflow class is read in three files, one part each: here what it knows (every
attribute declared and set in `PathwayBase.__init__`) and the questions it answers about it
(is the pathway finished, what is overdue, when is a deadline, what do search attributes and
the UI show), and how a step is applied with its record (`_applying`); its clock in
`workflows/watchers.py`; its run, Updates and queries in `workflows/pathway.py`, grouped by
step. Where the code changed under running pathways, each branch reads `self._rules`
(`workflows/patches.py`).

Two views of the state: `_state` is the state steps change, and `_visible()` the state as
recorded. While a step's record is being written they differ (the step may yet be
refused); the status query, search attributes and timers go by the recorded one.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import date, datetime
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from rop_domain import deadlines
    from rop_domain.commands import EventKind
    from rop_domain.deadlines import PathwaySettings
    from rop_domain.models import FINAL_PHASES, Referral
    from rop_domain.state import PathwayInput, PathwayState
    from workflows import metrics, status_view
    from workflows import search_attributes as sa
    from workflows.effects import PathwayEffects, RecordRefused, StepRecord
    from workflows.patches import DEADLINE_DAY_AT_NOON, RunRules

REJECTED = "PathwayStepRejected"
"""ApplicationError type of an Update refused by its validator, or by the record."""

_KEPT_THROUGH_A_REFUSAL = frozenset(
    {"sequence", "failed_deliveries", "answers", "recorded_steps", "record_behind"}
)
"""State a refused step puts back as it found it: keys stay unique (a refused step's
keys are never used again), and deliveries and answers are not the step's business."""

_LEFT_OUT_OF_THE_RECORDED_VIEW = frozenset({"answers", "recorded_steps"})
"""Parts of the state the copy a step takes (`_applying`) leaves out: kept through a refusal,
never read through `_visible()`, and the bulk of the state (up to `MAX_ANSWER_BYTES` and
`MAX_RECORDED_STEP_BYTES`), which every step would otherwise copy whole."""


def reject(message: str) -> ApplicationError:
    return ApplicationError(message, type=REJECTED, non_retryable=True)


class PathwayBase:
    """State and derived facts of one pathway, declared and set here."""

    def __init__(self, pathway: PathwayInput) -> None:
        referral, settings = pathway.referral, pathway.settings
        self._referral: Referral = referral
        self._settings: PathwaySettings = settings
        self._state: PathwayState = pathway.state or PathwayState()
        """What the pathway knows; carried across continue-as-new."""
        self._workflow_id: str = workflow.info().workflow_id
        self._rules = RunRules.of_this_run()
        """What this run does where the code changed under running pathways."""
        self._effects = PathwayEffects(referral, settings, self._state, self._rules)
        meeting = deadlines.meeting_deadline(referral.received_at, settings)
        self._deadline: date = meeting.day
        self._escalation_at: datetime = meeting.escalation_at
        self._assessment_deadline = deadlines.assessment_deadline(referral.received_at, settings)
        self._intake_done: bool = pathway.state is not None
        """The record is opened (a new pathway's intake, or an earlier run's)."""
        self._review_completed_this_run = False
        self._step_lock = asyncio.Lock()
        """Steps record in the order their Updates were accepted."""
        self._recorded: PathwayState | None = None
        """The state as recorded, while a step is being recorded (`_visible`)."""
        self._recording_stalled = False
        self._fault: str | None = None
        """Why the run cannot go on (a timer's step the record refused): its task fails."""
        self._days_at_noon: bool | None = None
        """Whether day-valued search attributes are stored at noon (`_store_days_at_noon`)."""

    @contextlib.asynccontextmanager
    async def _applying(
        self, still_valid: Callable[[], None] | None = None
    ) -> AsyncIterator[Callable[..., StepRecord]]:
        """Apply one step to the state and record it: both, or neither.

        Steps take turns, in the order they were accepted, after the intake. An Update's
        `still_valid` (its validator) runs again when its turn comes, for the state may
        have moved on since it was accepted. Until the step is recorded, the status, search
        attributes and timers show the state before it. If the record refuses the step,
        the state is put back, and the Update fails with the reason (a timer's step that
        is refused is a fault in our code: the workflow task fails, for operators to see).
        """
        await workflow.wait_condition(lambda: self._intake_done)
        async with self._step_lock:
            if still_valid is not None:
                try:
                    still_valid()
                except ApplicationError:
                    metrics.count_step("rejected")
                    raise
            left_out: dict[str, Any] = {name: [] for name in _LEFT_OUT_OF_THE_RECORDED_VIEW}
            recorded = self._state.model_copy(update=left_out).model_copy(deep=True)
            self._recorded = recorded
            try:
                yield self._new_step
            except RecordRefused as refused:
                metrics.count_step("refused")
                self._put_back(recorded)
                self._recorded = None
                self._publish()
                workflow.logger.error("step refused by the record", extra={"reason": str(refused)})
                if workflow.current_update_info() is None:
                    self._fault = f"a timer's step was refused by the record: {refused}"
                    raise
                raise reject(
                    f"the step could not be recorded and was not applied: {refused}"
                ) from None
            finally:
                self._recorded = None
            metrics.count_step("applied")
            if self._rules.record_first:
                self._publish()

    def _put_back(self, recorded: PathwayState) -> None:
        """Undo a refused step: the state as it was recorded, in place (effects share it)."""
        for name in PathwayState.model_fields:
            if name not in _KEPT_THROUGH_A_REFUSAL:
                setattr(self._state, name, getattr(recorded, name))

    def _visible(self) -> PathwayState:
        """The state as recorded: while a step is being recorded, the state before it (less
        the answers and steps kept, `_LEFT_OUT_OF_THE_RECORDED_VIEW`: read them in `_state`)."""
        if self._recorded is not None and self._rules.record_first:
            return self._recorded
        return self._state

    def _finished(self, state: PathwayState | None = None) -> bool:
        return (state or self._state).phase in FINAL_PHASES

    def _ended(self) -> bool:
        """Finished as recorded: what timers go by."""
        return self._finished(self._visible())

    def _overdue(self, state: PathwayState | None = None) -> bool:
        return bool(status_view.overdue_items(state or self._state))

    def _deadlines(self, state: PathwayState) -> status_view.Deadlines:
        return status_view.Deadlines(
            meeting=self._deadline,
            meeting_reminder_at=deadlines.reminder_at(self._deadline, self._settings),
            meeting_escalation_at=self._escalation_at,
            crisis_plan=self._crisis_plan_deadline(state),
            assessment=self._assessment_deadline.day if self._rules.chases_assessment else None,
        )

    def _crisis_plan_deadline(self, state: PathwayState | None = None) -> date | None:
        meeting = (state or self._state).meeting
        if meeting is None:
            return None
        return deadlines.crisis_plan_deadline(meeting.held_at, self._settings)

    def _new_step(self, kind: EventKind, **parts: Any) -> StepRecord:
        """A step's record (`PathwayEffects.step`), begun once the step has changed the
        state (runs from before `RECORD_FIRST` published the change here, and replay so)."""
        self._publish_before_record()
        return self._effects.step(kind, **parts)

    def _publish_before_record(self) -> None:
        """Where runs from before `RECORD_FIRST` published a step's change: replay them so."""
        if not self._rules.record_first:
            self._publish()

    def _store_days_at_noon(self) -> bool:
        """Whether this pathway stores days at noon UTC (`search_attributes.DAY_AT`): as its
        meeting deadline was stored when it started, which continue-as-new carries on. A
        pathway started before the rule keeps 00:00 Oslo time, so its history replays
        unchanged (the SDK's core compares upserts on replay); the search attributes
        themselves decide, so no patch marker is needed. One started without them (not by
        the starter) keeps the rule from before too."""
        if self._days_at_noon is None:
            # Where 71fcfd7-39f5f56 asked `workflow.patched`: their marker replays here.
            if self._rules.keeps_deprecated_markers():
                workflow.deprecate_patch(DEADLINE_DAY_AT_NOON)
            stored = workflow.info().typed_search_attributes.get(sa.MEETING_DEADLINE)
            self._days_at_noon = stored is not None and sa.stored_at_noon(stored)
        return self._days_at_noon

    def _publish(self) -> None:
        """Keep the search attributes and the UI's current details in step with the state
        as recorded."""
        s = self._visible()
        wanted = sa.pathway_values(
            phase=s.phase.value,
            referral=self._referral,
            meeting_deadline=self._deadline,
            has_crisis_plan=s.crisis_plan is not None,
            overdue=self._overdue(s),
            delivery_failed=len(s.failed_deliveries),
            invited_on_time=s.invite.on_time if s.invite else None,
            next_review_due=(s.review.due if s.review and not self._finished(s) else None),
            recording_stalled=self._recording_stalled,
            record_behind=s.record_behind,
            escalated_to_unit=s.escalated_to_unit,
            days_at_noon=self._store_days_at_noon(),
        )
        # Only what changed: each upsert is a history event, and continue-as-new carries
        # the current values into the next run.
        current = workflow.info().typed_search_attributes
        changed = [key.value_set(value) for key, value in wanted if current.get(key) != value]
        flagged = self._recording_stalled or s.record_behind
        if not flagged and current.get(sa.STALLED) is not None:
            changed.append(sa.STALLED.value_unset())
        if changed:
            workflow.upsert_search_attributes(changed)
        workflow.set_current_details(
            status_view.current_details(
                s,
                self._deadlines(s),
                headline=status_view.pathway_summary(self._referral),
                recording_stalled=self._recording_stalled,
            )
        )
