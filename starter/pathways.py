"""The Python API for starting and driving pathways: what the CLI, the HTTP API and
any backend service use, so there is one way in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from rop_domain.calendar import deadline_after
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
from rop_domain.models import Assessment, MeetingInvite, PathwaySettings, Phase, Referral
from rop_domain.state import PathwayInput, PathwayStatus
from workflows import search_attributes
from workflows.pathway import TASK_QUEUE, RopPathway


class PathwayError(Exception):
    """A request about a pathway that could not be carried out; the message says why."""


class PathwayNotFound(PathwayError):
    """No pathway has that workflow id."""


class PathwayStepRejected(PathwayError):
    """The pathway refused the step (wrong phase or invalid content); nothing was recorded."""


@dataclass(frozen=True)
class Submitted:
    """The pathway of a submitted referral, and whether this submission started it."""

    workflow_id: str
    created: bool


class Pathways:
    """Start and drive ROP pathways on a Temporal cluster."""

    def __init__(
        self,
        client: Client,
        *,
        task_queue: str = TASK_QUEUE,
        pathway_settings: PathwaySettings | None = None,
    ) -> None:
        self._client = client
        self._task_queue = task_queue
        self._pathway_settings = pathway_settings or PathwaySettings()

    async def submit(self, referral: Referral) -> Submitted:
        """Start the referral's pathway, or return the one it already has (running or ended)."""
        workflow_id = referral.workflow_id
        settings = self._pathway_settings
        deadline = deadline_after(
            referral.received_at, settings.meeting_working_days, settings.working_day_rule
        )
        initial = search_attributes.pathway_values(
            phase=Phase.AWAITING_ASSESSMENT.value,
            referral=referral,
            meeting_deadline=deadline,
            has_crisis_plan=False,
            overdue=False,
        )
        try:
            await self._client.start_workflow(
                RopPathway.run,
                PathwayInput(referral=referral, settings=self._pathway_settings),
                id=workflow_id,
                task_queue=self._task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                search_attributes=TypedSearchAttributes(
                    [SearchAttributePair(key, value) for key, value in initial]
                ),
                static_summary=(
                    f"ROP pathway for referral {referral.referral_id}: "
                    f"{referral.receiving_unit.value}, {referral.health_trust}, "
                    f"kommune {referral.municipality}"
                ),
                static_details=(
                    f"Referral from {referral.source.value}, received "
                    f"{referral.received_at.isoformat()}. No patient data in summaries or search attributes."
                ),
            )
        except WorkflowAlreadyStartedError:
            return Submitted(workflow_id=workflow_id, created=False)
        return Submitted(workflow_id=workflow_id, created=True)

    async def assess(self, workflow_id: str, assessment: Assessment) -> PathwayStatus:
        """Record the assessment: in or out of the target group."""
        return await self._update(workflow_id, RopPathway.assess, assessment)

    async def invite_to_meeting(self, workflow_id: str, invite: MeetingInvite) -> PathwayStatus:
        """Send the invitation to the first clarification meeting."""
        return await self._update(workflow_id, RopPathway.invite_to_meeting, invite)

    async def record_meeting(self, workflow_id: str, outcome: MeetingOutcome) -> PathwayStatus:
        """Record the clarification meeting and what it decided."""
        return await self._update(workflow_id, RopPathway.record_meeting, outcome)

    async def register_crisis_plan(self, workflow_id: str, plan: CrisisPlan) -> PathwayStatus:
        """Register a new version of the crisis plan."""
        return await self._update(workflow_id, RopPathway.register_crisis_plan, plan)

    async def start_measure(self, workflow_id: str, step: MeasureStep) -> PathwayStatus:
        """A measure has started."""
        return await self._update(workflow_id, RopPathway.start_measure, step)

    async def complete_measure(self, workflow_id: str, step: MeasureStep) -> PathwayStatus:
        """A measure is completed."""
        return await self._update(workflow_id, RopPathway.complete_measure, step)

    async def cancel_measure(
        self, workflow_id: str, cancellation: MeasureCancellation
    ) -> PathwayStatus:
        """A measure is cancelled."""
        return await self._update(workflow_id, RopPathway.cancel_measure, cancellation)

    async def revise_plan(self, workflow_id: str, revision: PlanRevision) -> PathwayStatus:
        """Replace the plan of measures."""
        return await self._update(workflow_id, RopPathway.revise_plan, revision)

    async def complete_review(self, workflow_id: str, review: Review) -> PathwayStatus:
        """Record a periodic review."""
        return await self._update(workflow_id, RopPathway.complete_review, review)

    async def record_objection(self, workflow_id: str, objection: Objection) -> PathwayStatus:
        """The patient objects to sharing with cooperating services."""
        return await self._update(workflow_id, RopPathway.record_objection, objection)

    async def close_pathway(self, workflow_id: str, closure: Closure) -> PathwayStatus:
        """End the pathway."""
        return await self._update(workflow_id, RopPathway.close_pathway, closure)

    async def resend_notification(self, workflow_id: str, task_key: str) -> PathwayStatus:
        """Deliver again a task whose delivery failed."""
        return await self._update(workflow_id, RopPathway.resend_notification, task_key)

    async def status(self, workflow_id: str) -> PathwayStatus:
        """The pathway's phase, deadline, what is done and what is due."""
        handle = self._client.get_workflow_handle_for(RopPathway.run, workflow_id)
        try:
            return await handle.query(RopPathway.status)
        except RPCError as error:
            raise await self._explain(workflow_id, error) from None

    async def _update(self, workflow_id: str, update: Any, argument: Any) -> PathwayStatus:
        handle = self._client.get_workflow_handle_for(RopPathway.run, workflow_id)
        try:
            status: PathwayStatus = await handle.execute_update(update, argument)
        except WorkflowUpdateFailedError as error:
            cause = error.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause)
            raise PathwayStepRejected(message) from None
        except RPCError as error:
            raise await self._explain(workflow_id, error) from None
        return status

    async def _explain(self, workflow_id: str, error: RPCError) -> PathwayError:
        """Turn a server error into what the caller did wrong, where that is the reason."""
        if error.status is not RPCStatusCode.NOT_FOUND:
            return PathwayError(f"Temporal refused the request: {error.message}")
        try:
            described = await self._client.get_workflow_handle(workflow_id).describe()
        except RPCError:
            return PathwayNotFound(f"no pathway with id {workflow_id}")
        if described.status is not None and described.status != WorkflowExecutionStatus.RUNNING:
            return PathwayStepRejected(f"pathway {workflow_id} has ended ({described.status.name})")
        return PathwayError(error.message)
