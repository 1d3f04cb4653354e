"""FHIR Subscriptions for systems that want to hear of tasks (issue 30): create one (a
handshake follows), read it, ask its `$status`, turn it off.

`POST /fhir/Subscription` takes an R4 Subscription shaped by the Backport IG: the topic
`https://rop-forlop.no/fhir/SubscriptionTopic/task-owner`, one filter
`Task?owner=CareTeam/helse-bergen.TSB` (or a Practitioner or Organization), a rest-hook
endpoint, `id-only` or `empty` content, an optional heartbeat period. Its deliveries run on
the worker (`workflows.subscription`).
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse, Response

from activities.subscription_bundles import SubscriptionRow, status_parameters
from activities.subscriptions import subscription_row
from starter.access_log import NO_PATHWAY, Outcome
from starter.api.auth import Principal, Role
from starter.api.context import Ctx, require
from starter.api.problems import FieldProblem, ProblemError, invalid, openapi_responses
from starter.api.routes_pathways import IdempotencyKey
from starter.fhir.subscription import SubscriptionRefused, parse_subscription, subscription_resource

router = APIRouter(tags=["fhir"])

FHIR_JSON = "application/fhir+json"
SUBSCRIBERS = frozenset({Role.SYSTEM})
SubscriptionId = Annotated[uuid.UUID, Path()]
_RESOURCE: dict[int | str, dict[str, Any]] = {
    200: {"description": "A FHIR resource", "content": {FHIR_JSON: {"schema": {"type": "object"}}}}
}


@router.post(
    "/fhir/Subscription",
    summary="Subscribe a rest-hook to the tasks of an owner (FHIR R4, Backport IG)",
    status_code=201,
    responses={
        201: {
            "description": "The Subscription, requested: a handshake follows",
            "content": {FHIR_JSON: {"schema": {"type": "object"}}},
        },
        **openapi_responses(400, 401, 403, 422),
    },
)
async def create_subscription(
    request: Request,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(require(SUBSCRIBERS, "create subscription"))],
    idempotency_key: IdempotencyKey = None,
) -> Response:
    async def handle() -> Response:
        try:
            document = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise ProblemError(400, "Bad request", "the body is not JSON") from None
        if not isinstance(document, dict):
            raise ProblemError(400, "Bad request", "the body is not a FHIR resource")
        try:
            asked = parse_subscription(document)
        except SubscriptionRefused as refused:
            raise invalid([FieldProblem(field=refused.element, message=str(refused))]) from None
        subscription_id = uuid.uuid4()
        await ctx.pool.execute(
            "INSERT INTO subscriptions (id, owner_type, owner, endpoint, headers, content, "
            "heartbeat_seconds, created_by) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8)",
            subscription_id,
            asked.owner_type.value,
            asked.owner,
            asked.endpoint,
            json.dumps(asked.headers),
            asked.content,
            asked.heartbeat_seconds,
            principal.identity,
        )
        action = f"create subscription {subscription_id} (Task?owner={asked.owner_type.value}/{asked.owner})"
        await ctx.audit(principal, [NO_PATHWAY], action, Outcome.OK)
        await ctx.pathways.deliver_subscription(str(subscription_id))
        row = await subscription_row(ctx.pool, str(subscription_id))
        assert row is not None
        return JSONResponse(
            subscription_resource(row),
            status_code=201,
            media_type=FHIR_JSON,
            headers={"Location": f"/fhir/Subscription/{subscription_id}"},
        )

    return await ctx.idempotency.run(request, principal, idempotency_key, handle)


@router.get(
    "/fhir/Subscription/{subscription_id}",
    summary="A subscription (FHIR R4)",
    responses={**_RESOURCE, **openapi_responses(401, 403, 404, 422)},
)
async def read_subscription(
    ctx: Ctx,
    subscription_id: SubscriptionId,
    principal: Annotated[Principal, Depends(require(SUBSCRIBERS, "read subscription"))],
) -> Response:
    row = await _found(ctx.pool, subscription_id)
    return JSONResponse(subscription_resource(row), media_type=FHIR_JSON)


@router.get(
    "/fhir/Subscription/{subscription_id}/$status",
    summary="A subscription's status: events since it started, for a receiver's gap check",
    responses={**_RESOURCE, **openapi_responses(401, 403, 404, 422)},
)
async def subscription_status(
    request: Request,
    ctx: Ctx,
    subscription_id: SubscriptionId,
    principal: Annotated[Principal, Depends(require(SUBSCRIBERS, "read subscription status"))],
) -> Response:
    row = await _found(ctx.pool, subscription_id)
    status = status_parameters(row, "query-status", _base(request))
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 1,
        "entry": [
            {"fullUrl": f"urn:uuid:{status['id']}", "resource": status, "search": {"mode": "match"}}
        ],
    }
    return JSONResponse(bundle, media_type=FHIR_JSON)


@router.delete(
    "/fhir/Subscription/{subscription_id}",
    summary="Turn a subscription off: no more notifications",
    responses={**_RESOURCE, **openapi_responses(401, 403, 404, 422)},
)
async def end_subscription(
    ctx: Ctx,
    subscription_id: SubscriptionId,
    principal: Annotated[Principal, Depends(require(SUBSCRIBERS, "end subscription"))],
) -> Response:
    await _found(ctx.pool, subscription_id)
    await ctx.pool.execute("UPDATE subscriptions SET status = 'off' WHERE id = $1", subscription_id)
    await ctx.audit(principal, [NO_PATHWAY], f"end subscription {subscription_id}", Outcome.OK)
    row = await _found(ctx.pool, subscription_id)
    return JSONResponse(subscription_resource(row), media_type=FHIR_JSON)


async def _found(pool: asyncpg.Pool, subscription_id: uuid.UUID) -> SubscriptionRow:
    row = await subscription_row(pool, str(subscription_id))
    if row is None:
        raise ProblemError(404, "Not found", f"no subscription {subscription_id}")
    return row


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/fhir"
