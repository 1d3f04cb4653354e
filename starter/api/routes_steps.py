"""One POST per pathway step, each the same Temporal Update the CLI sends.

The Update's validator decides whether the pathway is ready for the step; a refusal is
a 409 with its message, and nothing enters the pathway's history. The routes are made
from one table, `STEPS`, so every step is handled alike.

(No `from __future__ import annotations` here: FastAPI reads each route's body type from
its annotations, which name the step's model at the time the route is made.)
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
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
from rop_domain.models import Assessment, MeetingInvite
from rop_domain.state import PathwayStatus
from starter.access_log import Outcome
from starter.api.auth import Principal
from starter.api.context import CHANGE_PATHWAY, check_actor, context, require
from starter.api.idempotency import update_id_for
from starter.api.problems import from_pathway_error, openapi_responses
from starter.api.routes_pathways import IdempotencyKey, WorkflowId, outcome_of
from starter.pathways import PathwayError, Pathways

router = APIRouter(tags=["steps"])

STEP_RESPONSES = openapi_responses(400, 401, 403, 404, 409, 422, 503)


async def run_step(
    request: Request,
    principal: Principal,
    workflow_id: str,
    idempotency_key: str | None,
    action: str,
    call: Callable[[str | None], Awaitable[PathwayStatus]],
) -> Response:
    """Send the step's Update once per Idempotency-Key; log the access either way."""
    ctx = context(request)

    async def handle() -> Response:
        try:
            status = await call(update_id_for(principal, idempotency_key))
        except PathwayError as error:
            await ctx.audit(principal, [workflow_id], action, outcome_of(error))
            raise from_pathway_error(error) from None
        await ctx.audit(principal, [workflow_id], action, Outcome.OK)
        return JSONResponse(status.model_dump(mode="json"))

    async def replayed(_: Response) -> None:
        await ctx.audit(principal, [workflow_id], f"{action} (replayed)", Outcome.OK)

    return await ctx.idempotency.run(request, principal, idempotency_key, handle, replayed)


@dataclass(frozen=True)
class Step:
    """A pathway step as a route: where, its model, and the `Pathways` call that sends it."""

    path: str
    action: str
    body: type[BaseModel]
    summary: str
    send: Callable[[Pathways, str, Any, str | None], Awaitable[PathwayStatus]]


STEPS = (
    Step("assessment", "assess", Assessment,
         "Record the assessment: in or out of the target group",
         lambda p, w, body, u: p.assess(w, body, update_id=u)),
    Step("meeting-invite", "invite to meeting", MeetingInvite,
         "Invite the parties to the first clarification meeting",
         lambda p, w, body, u: p.invite_to_meeting(w, body, update_id=u)),
    Step("meeting", "record meeting", MeetingOutcome,
         "Record the clarification meeting and what it decided",
         lambda p, w, body, u: p.record_meeting(w, body, update_id=u)),
    Step("crisis-plan", "register crisis plan", CrisisPlan,
         "Register a version of the crisis plan",
         lambda p, w, body, u: p.register_crisis_plan(w, body, update_id=u)),
    Step("measures/start", "start measure", MeasureStep, "A measure has started",
         lambda p, w, body, u: p.start_measure(w, body, update_id=u)),
    Step("measures/complete", "complete measure", MeasureStep, "A measure is completed",
         lambda p, w, body, u: p.complete_measure(w, body, update_id=u)),
    Step("measures/cancel", "cancel measure", MeasureCancellation, "A measure is cancelled",
         lambda p, w, body, u: p.cancel_measure(w, body, update_id=u)),
    Step("plan", "revise plan", PlanRevision, "Replace the plan of measures",
         lambda p, w, body, u: p.revise_plan(w, body, update_id=u)),
    Step("review", "complete review", Review, "Record a periodic review",
         lambda p, w, body, u: p.complete_review(w, body, update_id=u)),
    Step("objection", "record objection", Objection,
         "The patient objects to sharing with cooperating services",
         lambda p, w, body, u: p.record_objection(w, body, update_id=u)),
    Step("closure", "close pathway", Closure, "End the pathway",
         lambda p, w, body, u: p.close_pathway(w, body, update_id=u)),
)  # fmt: skip


def _handler(step: Step) -> Callable[..., Awaitable[Response]]:
    async def handler(
        request: Request,
        workflow_id: WorkflowId,
        body: Any,
        principal: Annotated[Principal, Depends(require(CHANGE_PATHWAY, step.action))],
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        ctx = context(request)
        await check_actor(ctx, principal, workflow_id, step.action, body)
        pathways = ctx.pathways
        return await run_step(
            request,
            principal,
            workflow_id,
            idempotency_key,
            step.action,
            lambda update_id: step.send(pathways, workflow_id, body, update_id),
        )

    handler.__annotations__["body"] = step.body  # FastAPI validates the body as this model
    handler.__name__ = step.action.replace(" ", "_")
    return handler


for _step in STEPS:
    router.add_api_route(
        f"/pathways/{{workflow_id}}/{_step.path}",
        _handler(_step),
        methods=["POST"],
        summary=_step.summary,
        response_model=PathwayStatus,
        responses=STEP_RESPONSES,
    )
