"""The access log for the privacy officer (personvernombud), as FHIR AuditEvents, and for the
patient, who may see who accessed their own pathways (innsyn).

`GET /fhir/AuditEvent?patient=<reference>&date=ge2026-11-01&date=lt2026-12-01` (or
`patient:identifier=urn:oid:2.16.578.1.12.4.1.4.1|<fødselsnummer>`): every access to the
patient's pathways in the period, one AuditEvent each (`starter.audit_search`). Searching is itself an access, written to the log of each pathway found.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response

from rop_domain.calendar import OSLO
from rop_domain.models import IDENTIFIER_PATTERN, StrictModel
from starter import access_log, audit_search
from starter.access_log import Grounds, Outcome
from starter.api.auth import Principal
from starter.api.context import PATIENT, PRIVACY, Ctx, require
from starter.api.problems import FieldProblem, invalid, openapi_responses
from starter.audit_search import PatientQuery
from starter.fhir.audit_event import searchset
from starter.fhir.systems import FODSELSNUMMER

router = APIRouter(tags=["audit"])

FHIR_JSON = "application/fhir+json"
_DATE = re.compile(r"^(ge|gt|le|lt)(\d{4}-\d{2}-\d{2})$")


def _period(dates: list[str]) -> tuple[datetime | None, datetime | None]:
    """The `date` search parameters (`ge`/`gt`/`le`/`lt` and a day, Oslo time) as an
    interval [since, until)."""
    since = until = None
    for value in dates:
        match = _DATE.fullmatch(value)
        if match is None:
            raise invalid(
                [FieldProblem(field="date", message="write ge|gt|le|lt and a day: ge2026-11-01")]
            )
        prefix, day = match.group(1), date.fromisoformat(match.group(2))
        start = datetime.combine(day, time(), tzinfo=OSLO)
        next_day = datetime.combine(date.fromordinal(day.toordinal() + 1), time(), tzinfo=OSLO)
        if prefix in ("ge", "gt"):
            since = start if prefix == "ge" else next_day
        else:
            until = next_day if prefix == "le" else start
    return since, until


def _patient(reference: str | None, identifier: str | None) -> PatientQuery:
    """Whom the search names: by one of `patient` and `patient:identifier`."""
    if (reference is None) == (identifier is None):
        raise invalid(
            [FieldProblem(field="patient", message="give one of patient and patient:identifier")]
        )
    if reference is not None:
        return PatientQuery.by_reference(reference)
    assert identifier is not None
    try:
        return PatientQuery.by_identifier(identifier)
    except ValueError as error:
        raise invalid([FieldProblem(field="patient:identifier", message=str(error))]) from None


@router.get(
    "/fhir/AuditEvent",
    summary="Who accessed a patient's pathways, as FHIR AuditEvents (privacy officer)",
    responses={
        200: {
            "description": "A FHIR searchset Bundle of AuditEvents",
            "content": {FHIR_JSON: {"schema": {"type": "object"}}},
        },
        **openapi_responses(401, 403, 422),
    },
)
async def audit_events(
    ctx: Ctx,
    principal: Annotated[Principal, Depends(require(PRIVACY, "read audit events"))],
    patient: Annotated[
        str | None,
        Query(pattern=IDENTIFIER_PATTERN, description="the patient's pseudonymous reference"),
    ] = None,
    patient_identifier: Annotated[
        str | None,
        Query(
            alias="patient:identifier",
            description="the patient's fødselsnummer or D-number as a token: "
            "urn:oid:2.16.578.1.12.4.1.4.1|<fødselsnummer>",
        ),
    ] = None,
    date_: Annotated[list[str], Query(alias="date")] = [],  # noqa: B006 - FastAPI copies it
) -> Response:
    since, until = _period(date_)
    query = _patient(patient, patient_identifier)
    async with ctx.pool.acquire() as connection:
        pathways, events = await audit_search.audit_events(connection, query, since, until)
    await ctx.audit(principal, pathways, "read audit events", Outcome.OK)
    return JSONResponse(searchset(events), media_type=FHIR_JSON)


class OwnAccess(StrictModel):
    """One access to the patient's pathway, as the patient may see it: when, by which role
    and organisation, doing what, on which grounds; never the name of the person."""

    at: datetime
    roles: str
    organisation: str | None
    action: str
    outcome: Outcome
    grounds: Grounds | None


@router.get(
    "/patient/access-log",
    summary="Who accessed my pathways, and when (the signed-in patient, HelseID)",
    response_model=list[OwnAccess],
    responses=openapi_responses(401, 403),
)
async def own_access_log(
    ctx: Ctx, principal: Annotated[Principal, Depends(require(PATIENT, "read own access log"))]
) -> Response:
    assert principal.patient_id is not None  # a patient's sign-in says who they are
    async with ctx.pool.acquire() as connection:
        pathways = await audit_search.pathways_of(
            connection, PatientQuery(FODSELSNUMMER, principal.patient_id)
        )
        records = await access_log.for_pathways(connection, pathways)
    await ctx.audit(principal, pathways, "read own access log", Outcome.OK)
    shown = [
        OwnAccess(**{name: getattr(record, name) for name in OwnAccess.model_fields})
        for record in records
    ]
    return JSONResponse([access.model_dump(mode="json") for access in shown])
