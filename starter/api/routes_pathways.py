"""Referrals in; pathways out: status, the list, the FHIR Bundle and the access log."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field, ValidationError

from rop_domain.models import (
    WORKFLOW_ID_PATTERN,
    Identifier,
    Phase,
    Referral,
    StrictModel,
    ValidationPolicy,
    parse_referral,
)
from rop_domain.reconcile import ReconcileReport, ReconcileRequest
from rop_domain.view import PathwayStatus
from starter import access_log, pathway_rows
from starter.access_log import AccessRecord, Grounds, Outcome
from starter.api import need_of_service
from starter.api.auth import Principal
from starter.api.context import (
    AUDIT,
    LIST_PATHWAYS,
    READ_PATHWAY,
    SUBMIT_REFERRAL,
    Ctx,
    require,
)
from starter.api.problems import (
    FieldProblem,
    ProblemError,
    from_pathway_error,
    from_validation_error,
    invalid,
    openapi_responses,
)
from starter.fhir.bundle import pathway_bundle
from starter.fhir.service_request import FhirMappingError, referral_from_service_request
from starter.pathways import PathwayError, PathwaySummary
from starter.task_list import TaskFilter, list_tasks

router = APIRouter()

FHIR_JSON = "application/fhir+json"
WorkflowId = Annotated[
    str, Path(pattern=WORKFLOW_ID_PATTERN, description="The pathway: rop-<referral id>")
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Repeat a request with the same key to get its first answer, not a second effect",
    ),
]


class Submission(StrictModel):
    """The pathway a referral started (or already had)."""

    workflow_id: str
    created: bool = Field(description="False if the referral's pathway existed already")
    location: str


REFERRAL_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Referral"}},
            FHIR_JSON: {"schema": {"$ref": "#/components/schemas/FhirServiceRequest"}},
        },
    }
}


@router.post(
    "/referrals",
    summary="Submit a referral (our model, or a FHIR R4 ServiceRequest)",
    status_code=201,
    response_model=Submission,
    responses={
        200: {"description": "The referral's pathway existed already", "model": Submission},
        **openapi_responses(400, 401, 403, 409, 415, 422, 503),
    },
    openapi_extra=REFERRAL_BODY,
)
async def submit_referral(
    request: Request,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(require(SUBMIT_REFERRAL, "submit referral"))],
    idempotency_key: IdempotencyKey = None,
) -> Response:
    async def handle() -> Response:
        referral = await _read_referral(request, ctx.policy)
        async with ctx.audited(principal, [referral.workflow_id], "submit referral"):
            submitted = await ctx.pathways.submit(referral)
        location = f"/pathways/{submitted.workflow_id}"
        body = Submission(
            workflow_id=submitted.workflow_id, created=submitted.created, location=location
        )
        return JSONResponse(
            body.model_dump(mode="json"),
            status_code=201 if submitted.created else 200,
            headers={"Location": location},
        )

    async def replayed(response: Response) -> None:
        location = response.headers.get("location", "")
        if location.startswith("/pathways/"):
            workflow_id = location.removeprefix("/pathways/")
            await ctx.audit(principal, [workflow_id], "submit referral (replayed)", Outcome.OK)

    return await ctx.idempotency.run(request, principal, idempotency_key, handle, replayed)


async def _read_referral(request: Request, policy: ValidationPolicy) -> Referral:
    """The referral of the body, by content type, validated with the edge's `policy`."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if media_type == FHIR_JSON:
        try:
            return referral_from_service_request(body, policy)
        except FhirMappingError as error:
            raise invalid(
                [FieldProblem(field=path, message=message) for path, message in error.problems]
            ) from None
    if media_type != "application/json":
        raise ProblemError(415, "Unsupported content type", f"send application/json or {FHIR_JSON}")
    try:
        return parse_referral(body, policy)
    except ValidationError as error:
        raise from_validation_error(error) from None


@router.get(
    "/pathways",
    summary="Find pathways by phase, health trust and overdue (Temporal visibility)",
    response_model=list[PathwaySummary],
    responses=openapi_responses(401, 403, 422, 503),
)
async def find_pathways(
    ctx: Ctx,
    principal: Annotated[Principal, Depends(require(LIST_PATHWAYS, "list pathways"))],
    phase: Phase | None = None,
    health_trust: Identifier | None = None,
    overdue: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    if principal.is_person:
        # A person sees only the pathways that name them: found from the record, by index.
        rows = await need_of_service.pathways_naming(
            ctx.pool,
            principal,
            phase=phase.value if phase else None,
            health_trust=health_trust,
            overdue=overdue,
            limit=limit,
        )
        found = [pathway_rows.summary_of(row) for row, _ in rows]
        shown = {row["workflow_id"]: grounds for row, grounds in rows}
    else:
        try:
            found = await ctx.pathways.find(
                phase=phase, health_trust=health_trust, overdue=overdue, limit=limit
            )
        except PathwayError as error:
            raise from_pathway_error(error) from None
        shown = dict.fromkeys((p.workflow_id for p in found), Grounds.SERVICE)
    await ctx.audit_listed(principal, shown, "list pathways")
    return JSONResponse([p.model_dump(mode="json") for p in found if p.workflow_id in shown])


@router.get(
    "/pathways/{workflow_id}",
    summary="The pathway's status: phase, deadlines, what is done and what is due",
    response_model=PathwayStatus,
    responses=openapi_responses(401, 403, 404, 422, 503),
)
async def pathway_status(
    ctx: Ctx,
    workflow_id: WorkflowId,
    principal: Annotated[Principal, Depends(require(READ_PATHWAY, "read status"))],
) -> Response:
    async with ctx.audited(principal, [workflow_id], "read status"):
        status = await ctx.pathways.status(workflow_id)
    return JSONResponse(status.model_dump(mode="json"))


@router.get(
    "/pathways/{workflow_id}/fhir",
    summary="The pathway as a FHIR R4 Bundle: CarePlan, Tasks and the meeting's Appointment",
    responses={
        200: {
            "description": "A FHIR Bundle (type collection)",
            "content": {FHIR_JSON: {"schema": {"$ref": "#/components/schemas/FhirBundle"}}},
        },
        **openapi_responses(401, 403, 404, 422, 503),
    },
)
async def pathway_fhir(
    ctx: Ctx,
    workflow_id: WorkflowId,
    principal: Annotated[Principal, Depends(require(READ_PATHWAY, "read FHIR bundle"))],
) -> Response:
    async with ctx.audited(principal, [workflow_id], "read FHIR bundle"):
        status = await ctx.pathways.status(workflow_id)
    async with ctx.pool.acquire() as connection:
        patient_reference = await pathway_rows.patient_reference(connection, workflow_id)
        tasks = await list_tasks(
            connection, TaskFilter(workflow_id=workflow_id, include_closed=True)
        )
    if patient_reference is None:
        raise ProblemError(404, "Pathway not found", f"{workflow_id} has no record yet; retry")
    bundle = pathway_bundle(status, patient_reference, tasks)
    return Response(bundle.model_dump_json(exclude_none=True), media_type=FHIR_JSON)


@router.get(
    "/pathways/{workflow_id}/access-log",
    summary="Who read or changed the pathway, when, and what (operators)",
    response_model=list[AccessRecord],
    responses=openapi_responses(401, 403, 422),
)
async def pathway_access_log(
    ctx: Ctx,
    workflow_id: WorkflowId,
    principal: Annotated[Principal, Depends(require(AUDIT, "read access log"))],
) -> Response:
    async with ctx.pool.acquire() as connection:
        records = await access_log.for_pathway(connection, workflow_id)
    # Reading who accessed a pathway is an access too (the next read shows this one).
    await ctx.audit(principal, [workflow_id], "read access log", Outcome.OK)
    return JSONResponse([r.model_dump(mode="json") for r in records])


@router.post(
    "/reconcile",
    summary="Compare each pathway's record with what its workflow applied (operators); "
    "with repair=true, write what the record lacks; with restart=true, start each open "
    "pathway Temporal does not know again from its record",
    response_model=ReconcileReport,
    responses=openapi_responses(401, 403, 422, 503),
)
async def reconcile_records(
    request: Request,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(require(AUDIT, "reconcile"))],
    pathway: Annotated[str | None, Query(pattern=WORKFLOW_ID_PATTERN)] = None,
    since: date | None = None,
    repair: bool = False,
    restart: bool = False,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """A reconciliation runs on the worker (it has the record role a repair needs); a repeat
    with the same Idempotency-Key answers the first report, a repeat without one checks
    again (a repair writes nothing twice)."""
    what = " and ".join(
        ["reconcile", *(["repair"] if repair else []), *(["restart"] if restart else [])]
    )
    action = f"{what} (since {since or '…'})"

    async def handle() -> Response:
        report = await ctx.pathways.reconcile(
            ReconcileRequest(
                pathway=pathway,
                since=since,
                repair=repair,
                restart=restart,
                requested_by=principal.identity,
                task_queue=ctx.pathways.task_queue,
            )
        )
        await ctx.audit(principal, [pathway or access_log.NO_PATHWAY], action, Outcome.OK)
        return JSONResponse(report.model_dump(mode="json"))

    async def replayed(_: Response) -> None:
        await ctx.audit(
            principal, [pathway or access_log.NO_PATHWAY], f"{action} (replayed)", Outcome.OK
        )

    return await ctx.idempotency.run(request, principal, idempotency_key, handle, replayed)
