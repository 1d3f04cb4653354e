"""One POST per pathway step, each the same Temporal Update the CLI sends.

The Update's validator decides whether the pathway is ready for the step; a refusal is
a 409 with its message, and nothing enters the pathway's history. The routes are made
from the step registry (`rop_domain.steps.STEPS`), so every step is handled alike.

(No `from __future__ import annotations` here: FastAPI reads each route's body type from
its annotations, which name the step's model at the time the route is made.)
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from rop_domain.steps import STEPS, Step
from rop_domain.view import PathwayStatus
from starter.access_log import Outcome
from starter.api.auth import Principal
from starter.api.context import CHANGE_PATHWAY, ApiContext, Ctx, check_actor, require
from starter.api.idempotency import update_id_for
from starter.api.problems import openapi_responses
from starter.api.routes_pathways import IdempotencyKey, WorkflowId

router = APIRouter(tags=["steps"])

STEP_RESPONSES = openapi_responses(400, 401, 403, 404, 409, 422, 503)


async def run_step(
    request: Request,
    ctx: ApiContext,
    principal: Principal,
    workflow_id: str,
    idempotency_key: str | None,
    action: str,
    call: Callable[[str | None], Awaitable[PathwayStatus]],
) -> Response:
    """Send the step's Update once per Idempotency-Key; log the access either way."""

    async def handle() -> Response:
        async with ctx.audited(principal, [workflow_id], action):
            status = await call(update_id_for(principal, idempotency_key))
        return JSONResponse(status.model_dump(mode="json"))

    async def replayed(_: Response) -> None:
        await ctx.audit(principal, [workflow_id], f"{action} (replayed)", Outcome.OK)

    return await ctx.idempotency.run(request, principal, idempotency_key, handle, replayed)


def _handler(step: Step) -> Callable[..., Awaitable[Response]]:
    async def handler(
        request: Request,
        ctx: Ctx,
        workflow_id: WorkflowId,
        body: Any,
        principal: Annotated[Principal, Depends(require(CHANGE_PATHWAY, step.action))],
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        await check_actor(ctx, principal, workflow_id, step, body)
        pathways = ctx.pathways
        return await run_step(
            request,
            ctx,
            principal,
            workflow_id,
            idempotency_key,
            step.action,
            lambda update_id: pathways.send(step.name, workflow_id, body, update_id=update_id),
        )

    handler.__annotations__["body"] = step.body  # FastAPI validates the body as this model
    handler.__name__ = step.action.replace(" ", "_")
    return handler


for _step in STEPS:
    router.add_api_route(
        f"/pathways/{{workflow_id}}/{_step.http_path}",
        _handler(_step),
        methods=["POST"],
        summary=_step.summary,
        response_model=PathwayStatus,
        responses=STEP_RESPONSES,
    )
