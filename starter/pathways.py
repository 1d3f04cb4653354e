"""The Python API for starting and driving pathways: what the CLI, the HTTP API and
any backend service use, so there is one way in.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from rop_domain.commands import SubscriptionRun
from rop_domain.deadlines import PathwaySettings, meeting_deadline
from rop_domain.models import Phase, Referral, StrictModel
from rop_domain.reconcile import ReconcileReport, ReconcileRequest
from rop_domain.state import PathwayInput
from rop_domain.steps import STEP, StepName
from rop_domain.view import PathwayStatus
from rop_runtime.settings import RopSettings
from workflows import search_attributes
from workflows.pathway import TASK_QUEUE, RopPathway
from workflows.reconcile import RECONCILE_WORKFLOW
from workflows.status_view import pathway_summary
from workflows.subscription import SUBSCRIPTION_WORKFLOW, subscription_workflow_id

MAX_IDEMPOTENCY_KEY_LENGTH = 255


def is_idempotency_key(key: str) -> bool:
    """An idempotency key a caller may send (HTTP header or `--idempotency-key`)."""
    return bool(key) and len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH and key.isprintable()


def keyed_update_id(source: str, *key: str) -> str:
    """The Temporal Update id of a step sent under an idempotency key from `source`.

    A pathway applies an Update id once, so a step sent again under the same key is not
    applied twice. Hashed: Update ids are stored unencrypted in the pathway's history.
    """
    return f"{source}-" + hashlib.sha256("\0".join(key).encode()).hexdigest()[:40]


class PathwayError(Exception):
    """A request about a pathway that could not be carried out; the message says why."""


class PathwayNotFound(PathwayError):
    """No pathway has that workflow id."""


class PathwayStepRejected(PathwayError):
    """The pathway refused the step (wrong phase or invalid content); nothing was recorded."""


class ReferralConflict(PathwayError):
    """A referral id that has a pathway already was submitted with other content."""

    def __init__(self, workflow_id: str, fields: list[str]) -> None:
        super().__init__(
            f"pathway {workflow_id} exists for this referral id with other content "
            f"({', '.join(fields)}); nothing was changed: correct the referral in the "
            "pathway's own record, or give the new referral an id of its own"
        )
        self.workflow_id, self.fields = workflow_id, fields


class WorkflowIdTaken(ReferralConflict):
    """The referral's workflow id is held by something that is not its pathway: another
    workflow type or task queue, or a run that failed (e.g. started around the API with a
    payload the worker refused). Nothing was started; an operator must look at it."""

    def __init__(self, workflow_id: str, what: str) -> None:
        PathwayError.__init__(
            self,
            f"workflow id {workflow_id} is taken by {what}, not by this referral's pathway; "
            "nothing was started (an operator can see it with `temporal workflow describe`)",
        )
        self.workflow_id, self.fields = workflow_id, []


class PathwayDidNotAnswer(PathwayError):
    """The pathway did not answer in time; the step may still be applied.

    Sending it again with the same `update_id` is safe: it is applied once.
    """

    def __init__(self, message: str, update_id: str | None) -> None:
        super().__init__(message)
        self.update_id = update_id


@dataclass(frozen=True)
class Submitted:
    """The pathway of a submitted referral, and whether this submission started it."""

    workflow_id: str
    created: bool


class PathwaySummary(StrictModel):
    """A pathway as Temporal visibility lists it: its search attributes, nothing personal."""

    workflow_id: str
    running: bool
    phase: Phase | None
    health_trust: str | None
    municipality: str | None
    receiving_unit: str | None
    meeting_deadline: date | None
    meeting_invited_on_time: bool | None
    has_crisis_plan: bool | None
    next_review_due: date | None
    overdue: bool | None
    delivery_failed: int | None


class Pathways:
    """Start and drive ROP pathways on a Temporal cluster."""

    def __init__(
        self,
        client: Client,
        *,
        task_queue: str = TASK_QUEUE,
        pathway_settings: PathwaySettings | None = None,
        answer_timeout: timedelta = timedelta(seconds=20),
        workflow_task_timeout: timedelta | None = None,
        trust_settings: dict[str, PathwaySettings] | None = None,
    ) -> None:
        """`trust_settings`: the rules of health trusts that have their own
        (`RopSettings.trust_policies`); other trusts' pathways start with `pathway_settings`."""
        self._client = client
        self._trust_settings = trust_settings or {}
        self._workflow_task_timeout = workflow_task_timeout
        self._answer_timeout = answer_timeout
        self._task_queue = task_queue
        self._pathway_settings = pathway_settings or PathwaySettings()

    async def submit(self, referral: Referral) -> Submitted:
        """Start the referral's pathway, or return the one it already has (running or ended)."""
        workflow_id = referral.workflow_id
        settings = self._trust_settings.get(referral.health_trust, self._pathway_settings)
        deadline = meeting_deadline(referral.received_at, settings).day
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
                PathwayInput(referral=referral, settings=settings),
                id=workflow_id,
                task_queue=self._task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                task_timeout=self._workflow_task_timeout,
                search_attributes=TypedSearchAttributes(
                    [SearchAttributePair(key, value) for key, value in initial]
                ),
                static_summary=pathway_summary(referral),
                static_details=(
                    f"Referral from {referral.source.value}, received "
                    f"{referral.received_at.isoformat()}. No patient data in summaries or search attributes."
                ),
            )
        except WorkflowAlreadyStartedError:
            await self._refuse_a_squatter(workflow_id)
            await self._refuse_a_different_referral(referral)
            return Submitted(workflow_id=workflow_id, created=False)
        return Submitted(workflow_id=workflow_id, created=True)

    async def send(
        self,
        step: StepName,
        workflow_id: str,
        body: BaseModel,
        *,
        update_id: str | None = None,
    ) -> PathwayStatus:
        """Take a step (`rop_domain.steps`): its Update, with `body` as its argument.

        With `update_id`, the step is applied once however often it is sent.
        """
        expected = STEP[step].body
        if not isinstance(body, expected):
            raise TypeError(f"{step.value} takes a {expected.__name__}, not {type(body).__name__}")
        return await self._update(workflow_id, step.value, body, update_id)

    async def resend_notification(
        self, workflow_id: str, task_key: str, *, update_id: str | None = None
    ) -> PathwayStatus:
        """Deliver again a task whose delivery failed."""
        return await self._update(workflow_id, "resend_notification", task_key, update_id)

    async def _refuse_a_squatter(self, workflow_id: str) -> None:
        """Raise `WorkflowIdTaken` unless the workflow holding the id is a pathway of ours
        that can answer (running or completed)."""
        try:
            described = await self._client.get_workflow_handle(workflow_id).describe(
                rpc_timeout=self._answer_timeout
            )
        except RPCError as error:
            raise await self._explain(workflow_id, error) from None
        if described.workflow_type != RopPathway.__name__:
            raise WorkflowIdTaken(workflow_id, f"a workflow of type {described.workflow_type}")
        if described.task_queue != self._task_queue:
            raise WorkflowIdTaken(workflow_id, f"a workflow on task queue {described.task_queue}")
        if described.status not in (
            WorkflowExecutionStatus.RUNNING,
            WorkflowExecutionStatus.COMPLETED,
            WorkflowExecutionStatus.CONTINUED_AS_NEW,
        ):
            status = described.status.name if described.status else "unknown"
            raise WorkflowIdTaken(workflow_id, f"a run that ended {status}")

    async def _refuse_a_different_referral(self, referral: Referral) -> None:
        """A resubmission is welcome only as the same referral: raise `ReferralConflict`
        naming the fields that differ (the pathway answers with names, never values)."""
        handle = self._client.get_workflow_handle(referral.workflow_id)
        try:
            differing = await handle.query(
                "referral_differences",
                referral,
                result_type=list[str],
                rpc_timeout=self._answer_timeout,
            )
        except RPCError as error:
            raise await self._explain(referral.workflow_id, error) from None
        if differing:
            raise ReferralConflict(referral.workflow_id, differing)

    @property
    def task_queue(self) -> str:
        """The task queue this deployment's pathways and worker use."""
        return self._task_queue

    async def reconcile(self, request: ReconcileRequest) -> ReconcileReport:
        """Run a reconciliation on the worker (`workflows.reconcile`), which has the record
        role that may repair, and wait for its report."""
        report: ReconcileReport = await self._client.execute_workflow(
            RECONCILE_WORKFLOW,
            request,
            id=f"rop-reconcile-{uuid.uuid4().hex[:12]}",
            task_queue=self._task_queue,
            result_type=ReconcileReport,
        )
        return report

    async def deliver_subscription(self, subscription_id: str) -> None:
        """Start a FHIR Subscription's deliveries on the worker (`workflows.subscription`);
        a second start for the same subscription is a no-op."""
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await self._client.start_workflow(
                SUBSCRIPTION_WORKFLOW,
                SubscriptionRun(subscription_id=subscription_id),
                id=subscription_workflow_id(subscription_id),
                task_queue=self._task_queue,
            )

    async def status(self, workflow_id: str) -> PathwayStatus:
        """The pathway's phase, deadline, what is done and what is due."""
        handle = self._client.get_workflow_handle_for(RopPathway.run, workflow_id)
        try:
            return await handle.query(RopPathway.status, rpc_timeout=self._answer_timeout)
        except RPCError as error:
            raise await self._explain(workflow_id, error) from None

    async def find(
        self,
        *,
        phase: Phase | None = None,
        health_trust: str | None = None,
        overdue: bool | None = None,
        limit: int = 100,
    ) -> list[PathwaySummary]:
        """Pathways by their search attributes, newest first (Temporal visibility, which
        lags the pathways by a moment)."""
        clauses = ["WorkflowType = 'RopPathway'", "ExecutionStatus != 'ContinuedAsNew'"]
        if phase is not None:
            clauses.append(f"{search_attributes.PHASE.name} = '{phase.value}'")
        if health_trust is not None:
            if "'" in health_trust or "\\" in health_trust:  # the query quotes values with '
                raise ValueError(f"health trust {health_trust!r}: no quotes or backslashes")
            clauses.append(f"{search_attributes.HEALTH_TRUST.name} = '{health_trust}'")
        if overdue is not None:
            clauses.append(f"{search_attributes.OVERDUE.name} = {str(overdue).lower()}")
        found: list[PathwaySummary] = []
        try:
            async for execution in self._client.list_workflows(
                " AND ".join(clauses), page_size=min(limit, 1000), limit=limit
            ):
                attributes = execution.typed_search_attributes
                found.append(
                    PathwaySummary(
                        workflow_id=execution.id,
                        running=execution.status == WorkflowExecutionStatus.RUNNING,
                        phase=attributes.get(search_attributes.PHASE),
                        health_trust=attributes.get(search_attributes.HEALTH_TRUST),
                        municipality=attributes.get(search_attributes.MUNICIPALITY),
                        receiving_unit=attributes.get(search_attributes.RECEIVING_UNIT),
                        meeting_deadline=_day(attributes.get(search_attributes.MEETING_DEADLINE)),
                        meeting_invited_on_time=attributes.get(
                            search_attributes.MEETING_INVITED_ON_TIME
                        ),
                        has_crisis_plan=attributes.get(search_attributes.HAS_CRISIS_PLAN),
                        next_review_due=_day(attributes.get(search_attributes.NEXT_REVIEW_DUE)),
                        overdue=attributes.get(search_attributes.OVERDUE),
                        delivery_failed=attributes.get(search_attributes.DELIVERY_FAILED),
                    )
                )
        except RPCError as error:
            raise PathwayError(f"Temporal refused the request: {error.message}") from None
        return found

    async def _update(
        self, workflow_id: str, update: str, argument: Any, update_id: str | None = None
    ) -> PathwayStatus:
        """Send the Update and wait for its answer, at most `answer_timeout`.

        With `update_id` (the HTTP API derives it from an Idempotency-Key), Temporal
        applies the Update once however often it is sent: a retry after a timeout gets
        the first one's answer.
        """
        handle = self._client.get_workflow_handle_for(RopPathway.run, workflow_id)
        try:
            status: PathwayStatus = await asyncio.wait_for(
                handle.execute_update(update, argument, id=update_id, result_type=PathwayStatus),
                self._answer_timeout.total_seconds(),
            )
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            raise PathwayDidNotAnswer(
                f"pathway {workflow_id} did not answer within {self._answer_timeout.seconds} s "
                "(is a worker running?); the step may still be applied: send it again with "
                "the same idempotency key (it is applied once), or read the status",
                update_id,
            ) from None
        except WorkflowUpdateFailedError as error:
            cause = error.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause)
            raise PathwayStepRejected(message) from None
        except RPCError as error:
            raise await self._explain(workflow_id, error) from None
        return status

    async def _explain(self, workflow_id: str, error: RPCError) -> PathwayError:
        """Turn a server error into what the caller did wrong, where that is the reason."""
        if error.status is RPCStatusCode.DEADLINE_EXCEEDED:
            return PathwayError(
                f"pathway {workflow_id} did not answer within "
                f"{self._answer_timeout.seconds} s (is a worker running?)"
            )
        if error.status is not RPCStatusCode.NOT_FOUND:
            return PathwayError(f"Temporal refused the request: {error.message}")
        try:
            described = await self._client.get_workflow_handle(workflow_id).describe()
        except RPCError:
            return PathwayNotFound(f"no pathway with id {workflow_id}")
        if described.status is not None and described.status != WorkflowExecutionStatus.RUNNING:
            return PathwayStepRejected(f"pathway {workflow_id} has ended ({described.status.name})")
        return PathwayError(error.message)


def _day(value: datetime | None) -> date | None:
    return search_attributes.day_of(value) if value is not None else None


def pathways_from_settings(client: Client, settings: RopSettings) -> Pathways:
    """The pathway API as the settings say: the one way the CLI, the HTTP API and the local
    stack build it, so they start pathways with the same rules and timeouts."""
    return Pathways(
        client,
        task_queue=settings.task_queue,
        pathway_settings=settings.pathway_settings(),
        trust_settings=settings.trust_pathway_settings(),
        answer_timeout=timedelta(seconds=settings.answer_timeout_seconds),
        workflow_task_timeout=timedelta(seconds=settings.workflow_task_timeout_seconds),
    )
