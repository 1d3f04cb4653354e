"""The pathway workflow's state and the facts derived from it, shared by its parts.

`PathwayBase` holds what the workflow knows (set up in `RopPathway.__init__`) and
answers questions about it: is the pathway finished, what is overdue, when is a
deadline, what do search attributes and the UI show. It does no waiting and
records nothing itself.
"""

import asyncio
from datetime import date, datetime, time

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from rop_domain import calendar
    from rop_domain.models import (
        FINAL_PHASES,
        Participant,
        ParticipantRole,
        PathwaySettings,
        Referral,
    )
    from rop_domain.state import (
        PathwayState,
    )
    from workflows import search_attributes as sa
    from workflows import status_view
    from workflows.effects import PathwayEffects


class PathwayBase:
    """State and derived facts of one pathway; `RopPathway` sets the attributes."""

    _referral: Referral
    _settings: PathwaySettings
    _s: PathwayState
    _workflow_id: str
    _effects: PathwayEffects
    _deadline: date
    _escalation_at: datetime
    _intake_done: bool
    _review_completed_this_run: bool
    _step_lock: asyncio.Lock

    def _finished(self) -> bool:
        return self._s.phase in FINAL_PHASES

    def _overdue(self) -> bool:
        return bool(status_view.overdue_items(self._s))

    def _deadlines(self) -> status_view.Deadlines:
        return status_view.Deadlines(
            meeting=self._deadline,
            meeting_escalation_at=self._escalation_at,
            crisis_plan=self._crisis_plan_deadline(),
        )

    def _reminder_instant(self, deadline: date) -> datetime:
        return calendar.reminder_instant(
            deadline,
            self._settings.reminder_working_days_before,
            time(self._settings.reminder_hour),
            self._settings.working_day_rule,
        )

    def _crisis_plan_deadline(self) -> date | None:
        if self._s.meeting is None:
            return None
        return calendar.add_working_days(
            calendar.local_date(self._s.meeting.held_at),
            self._settings.crisis_plan_working_days,
            self._settings.working_day_rule,
        )

    def _is_external(self, participant: Participant) -> bool:
        """Outside the receiving unit: everyone but the unit's own specialist service."""
        own = ParticipantRole(self._referral.receiving_unit.value.lower())
        return participant.role is not own

    def _publish(self) -> None:
        """Keep the search attributes and the UI's current details in step with the state."""
        wanted = sa.pathway_values(
            phase=self._s.phase.value,
            referral=self._referral,
            meeting_deadline=self._deadline,
            has_crisis_plan=self._s.crisis_plan is not None,
            overdue=self._overdue(),
            delivery_failed=len(self._s.failed_deliveries),
            invited_on_time=self._s.invite.on_time if self._s.invite else None,
            next_review_due=(
                self._s.review.due if self._s.review and not self._finished() else None
            ),
        )
        # Only what changed: each upsert is a history event, and continue-as-new carries
        # the current values into the next run.
        current = workflow.info().typed_search_attributes
        changed = [key.value_set(value) for key, value in wanted if current.get(key) != value]
        if changed:
            workflow.upsert_search_attributes(changed)
        workflow.set_current_details(status_view.current_details(self._s, self._deadlines()))
