"""FHIR Task search and read for an EPJ's worklist, and what the server can do (issue 30).

`GET /fhir/Task?owner=CareTeam/helse-bergen.TSB&status=requested&due=lt2026-12-08&_sort=due`
answers a searchset Bundle, a page at a time (`_count`, the `next` link), scoped by need of
service in SQL as every read is (`starter.task_search`). `GET /fhir/Task/{id}` answers one
Task with its version as ETag; another unit's task answers 404, as one that does not exist.
`GET /fhir/metadata` lists the searches; `GET /fhir/SearchParameter/task-due` is the search
on due date FHIR R4 lacks.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from importlib.metadata import version
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from activities.task_owner import OwnerType
from rop_domain.calendar import OSLO
from rop_domain.models import WORKFLOW_ID_PATTERN
from rop_domain.tasks import TaskKind, TaskStatus
from starter import task_claims
from starter.access_log import Grounds
from starter.api import need_of_service
from starter.api.auth import Principal
from starter.api.context import (
    TASKS,
    ApiContext,
    Ctx,
    admit_to_task,
    change_task_owner,
    require,
)
from starter.api.problems import FieldProblem, ProblemError, invalid, openapi_responses
from starter.api.routes_pathways import IdempotencyKey
from starter.fhir import systems
from starter.fhir.task import DUE, capability_statement, task_resource, weak_etag
from starter.task_claims import Refusal
from starter.task_list import Viewer
from starter.task_search import Bound, Cursor, Owner, SortOrder, TaskSearch, find_task, search_tasks

router = APIRouter(tags=["fhir"])

FHIR_JSON = "application/fhir+json"
_BUNDLE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A FHIR searchset Bundle of Tasks",
        "content": {FHIR_JSON: {"schema": {"type": "object"}}},
    }
}
_OWNER = re.compile(r"^(Practitioner|CareTeam|Organization)/([A-Za-z0-9\-.]{1,64})$")
_CAREPLAN = re.compile(r"^CarePlan/(.+)$")
_DATE = re.compile(r"^(eq|lt|le|gt|ge)?(\d{4}-\d{2}-\d{2}(?:T[0-9:.]+(?:Z|[+-]\d{2}:\d{2}))?)$")


@router.get(
    "/fhir/Task",
    summary="Search tasks (FHIR): by owner, status, kind, pathway, authored-on and due date",
    responses={**_BUNDLE, **openapi_responses(401, 403, 422)},
)
async def search(
    request: Request,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(require(TASKS, "search tasks"))],
    owner: Annotated[
        str | None, Query(description="Practitioner/<HPR>, CareTeam/<id>, Organization/<id>")
    ] = None,
    owner_identifier: Annotated[
        str | None, Query(alias="owner:identifier", description=f"{systems.HPR}|<HPR number>")
    ] = None,
    status: Annotated[str | None, Query(description="comma-separated task statuses")] = None,
    code: Annotated[str | None, Query(description="comma-separated task kinds")] = None,
    focus: Annotated[str | None, Query(description="CarePlan/<workflow id>")] = None,
    based_on: Annotated[str | None, Query(alias="based-on")] = None,
    authored_on: Annotated[list[str], Query(alias="authored-on")] = [],  # noqa: B006 - FastAPI copies it
    due: Annotated[list[str], Query(description="e.g. lt2026-12-08")] = [],  # noqa: B006
    sort: Annotated[SortOrder, Query(alias="_sort")] = SortOrder.ID,
    count: Annotated[int, Query(alias="_count", ge=1, le=500)] = 50,
    page: Annotated[str | None, Query(alias="_page", max_length=400)] = None,
) -> Response:
    query = TaskSearch(
        owner=_owner(owner, owner_identifier),
        statuses=_tokens("status", status, TaskStatus),
        kinds=_tokens("code", code, TaskKind, system=systems.TASK_KIND),
        workflow_id=_pathway(focus, based_on),
        authored=_bounds("authored-on", authored_on),
        due=_bounds("due", due),
        sort=sort,
        count=count,
        after=_cursor(page),
        visible_to=(
            Viewer(*need_of_service.parties_arguments(principal)) if principal.is_person else None
        ),
    )
    async with ctx.pool.acquire() as connection:
        try:
            found, next_page = await search_tasks(connection, query)
        except ValueError as error:  # a page token of another sort order
            raise invalid([FieldProblem(field="_page", message=str(error))]) from None
    await ctx.audit_listed(
        principal, {task.workflow_id: Grounds(task.grounds) for task in found}, "search tasks"
    )
    links = [{"relation": "self", "url": str(request.url)}]
    if next_page is not None:
        links.append(
            {
                "relation": "next",
                "url": str(request.url.include_query_params(_page=next_page.encode())),
            }
        )
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": [
            {
                "fullUrl": str(request.url_for("read_task", task_id=task.id)),
                "resource": task_resource(task).model_dump(mode="json", exclude_none=True),
                "search": {"mode": "match"},
            }
            for task in found
        ],
    }
    return JSONResponse(bundle, media_type=FHIR_JSON)


@router.get(
    "/fhir/Task/{task_id}",
    summary="One task (FHIR), with its version as ETag",
    responses={
        200: {"description": "A FHIR Task", "content": {FHIR_JSON: {"schema": {"type": "object"}}}},
        **openapi_responses(401, 403, 404, 422),
    },
)
async def read_task(
    request: Request,
    ctx: Ctx,
    task_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    principal: Annotated[Principal, Depends(require(TASKS, "read task"))],
) -> Response:
    async with ctx.pool.acquire() as connection:
        task = await find_task(connection, task_id)
    if task is None:
        raise ProblemError(404, "Task not found", f"no task {task_id}")
    action = f"read task {task_id}"
    admitted = await admit_to_task(request, principal, task_id, task.workflow_id, action)
    async with ctx.audited(admitted, [task.workflow_id], action):
        resource = task_resource(task).model_dump(mode="json", exclude_none=True)
    return JSONResponse(resource, media_type=FHIR_JSON, headers={"ETag": weak_etag(task.version)})


_REFUSALS = {
    Refusal.NOT_FOUND: 404,
    Refusal.VERSION_MOVED: 412,
    Refusal.NOT_OF_YOUR_UNIT: 403,
    Refusal.NOT_A_UNIT_TASK: 409,
    Refusal.NOT_OPEN: 409,
    Refusal.CLAIMED: 409,
    Refusal.NOT_CLAIMED: 409,
}
_ETAG = re.compile(r'^(?:W/)?"(\d{1,9})"$')
IfMatch = Annotated[
    str | None,
    Header(alias="If-Match", description='The version the caller saw, as its ETag: W/"3"'),
]


@router.post(
    "/fhir/Task/{task_id}/$claim",
    summary="Claim a unit's task: its owner becomes you (If-Match: the version you saw)",
    responses={
        200: {
            "description": "The Task, owned by you",
            "content": {FHIR_JSON: {"schema": {"type": "object"}}},
        },
        **openapi_responses(401, 403, 404, 409, 412, 422, 428),
    },
)
async def claim_task(
    request: Request,
    ctx: Ctx,
    task_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    principal: Annotated[Principal, Depends(require(TASKS, "claim task"))],
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    return await _change_owner(
        request, ctx, task_id, principal, if_match, idempotency_key, claiming=True
    )


@router.post(
    "/fhir/Task/{task_id}/$unclaim",
    summary="Give a claimed task back to its unit (If-Match: the version you saw)",
    responses={
        200: {
            "description": "The Task, owned by its unit",
            "content": {FHIR_JSON: {"schema": {"type": "object"}}},
        },
        **openapi_responses(401, 403, 404, 409, 412, 422, 428),
    },
)
async def unclaim_task(
    request: Request,
    ctx: Ctx,
    task_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    principal: Annotated[Principal, Depends(require(TASKS, "unclaim task"))],
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    return await _change_owner(
        request, ctx, task_id, principal, if_match, idempotency_key, claiming=False
    )


async def _change_owner(
    request: Request,
    ctx: ApiContext,
    task_id: int,
    principal: Principal,
    if_match: str | None,
    idempotency_key: str | None,
    *,
    claiming: bool,
) -> Response:
    """A claim or unclaim: by a person of the task's unit, at the version they saw; the
    access log keeps it, applied or refused, and the task's history the change."""
    action = f"{'claim' if claiming else 'unclaim'} task {task_id}"
    if not principal.is_person or principal.actor is None:
        raise ProblemError(
            403, "Forbidden", "a person claims a task (a token with their HPR number)"
        )
    match = _ETAG.fullmatch(if_match or "")
    if match is None:
        raise ProblemError(
            428, "Precondition Required", 'send If-Match with the task\'s ETag, e.g. W/"1"'
        )
    version = int(match.group(1))

    async def handle() -> Response:
        async with ctx.pool.acquire() as connection:
            task = await find_task(connection, task_id)
        if task is None:
            raise ProblemError(404, "Task not found", f"no task {task_id}")
        admitted = await admit_to_task(request, principal, task_id, task.workflow_id, action)
        try:
            await change_task_owner(
                ctx, admitted, task_id, task.workflow_id, version, claiming=claiming, action=action
            )
        except task_claims.ClaimRefused as refused:
            raise ProblemError(_REFUSALS[refused.refusal], "Not changed", str(refused)) from None
        async with ctx.pool.acquire() as connection:
            after = await find_task(connection, task_id)
        assert after is not None
        return JSONResponse(
            task_resource(after).model_dump(mode="json", exclude_none=True),
            media_type=FHIR_JSON,
            headers={"ETag": weak_etag(after.version)},
        )

    return await ctx.idempotency.run(request, principal, idempotency_key, handle)


_RESOURCE: dict[int | str, dict[str, Any]] = {
    200: {"description": "A FHIR resource", "content": {FHIR_JSON: {"schema": {"type": "object"}}}}
}


@router.get(
    "/fhir/metadata",
    summary="What this FHIR server answers (CapabilityStatement)",
    responses=_RESOURCE,
)
async def metadata(request: Request) -> Response:
    statement = capability_statement(str(request.base_url) + "fhir", version("rop-forlop"))
    return JSONResponse(statement.model_dump(mode="json", exclude_none=True), media_type=FHIR_JSON)


@router.get(
    "/fhir/SearchParameter/task-due",
    summary="The search on a task's due date (Task.restriction.period.end)",
    responses=_RESOURCE,
)
async def due_search_parameter() -> Response:
    return JSONResponse(DUE.model_dump(mode="json", exclude_none=True), media_type=FHIR_JSON)


def _owner(reference: str | None, identifier: str | None) -> Owner | None:
    if reference is not None and identifier is not None:
        raise invalid([FieldProblem(field="owner", message="give owner or owner:identifier")])
    if identifier is not None:
        system, _, hpr = identifier.partition("|")
        if system != systems.HPR or not re.fullmatch(r"\d{5,9}", hpr):
            message = f"write {systems.HPR}|<HPR number>"
            raise invalid([FieldProblem(field="owner:identifier", message=message)])
        return Owner(OwnerType.PRACTITIONER, hpr)
    if reference is None:
        return None
    match = _OWNER.fullmatch(reference)
    if match is None:
        message = "write Practitioner/<HPR number>, CareTeam/<id> or Organization/<id>"
        raise invalid([FieldProblem(field="owner", message=message)])
    return Owner(OwnerType(match.group(1)), match.group(2))


Token = TypeVar("Token", TaskStatus, TaskKind)


def _tokens(
    field: str, value: str | None, kind: type[Token], system: str | None = None
) -> tuple[Token, ...]:
    """A comma-separated token list (any of them), each `[system|]code`."""
    if value is None:
        return ()
    found = []
    for token in value.split(","):
        token_system, bar, code = token.rpartition("|")
        if bar and system is not None and token_system not in ("", system):
            raise invalid([FieldProblem(field=field, message=f"the system is {system}")])
        try:
            found.append(kind(code))
        except ValueError:
            known = ", ".join(member.value for member in kind)
            raise invalid([FieldProblem(field=field, message=f"one of {known}")]) from None
    return tuple(found)


def _pathway(focus: str | None, based_on: str | None) -> str | None:
    """The pathway that `focus` or `based-on` names (the same CarePlan if both)."""
    named = {reference for reference in (focus, based_on) if reference is not None}
    if not named:
        return None
    workflow_ids = set()
    for reference in named:
        match = _CAREPLAN.fullmatch(reference)
        if match is None or not re.fullmatch(WORKFLOW_ID_PATTERN, match.group(1)):
            message = "write CarePlan/<workflow id>"
            raise invalid([FieldProblem(field="focus", message=message)])
        workflow_ids.add(match.group(1))
    if len(workflow_ids) > 1:
        raise invalid([FieldProblem(field="focus", message="focus and based-on differ")])
    return workflow_ids.pop()


def _bounds(field: str, values: list[str]) -> tuple[Bound, ...]:
    """Date search values: a prefix (eq by default) and a day (Oslo) or an instant."""
    bounds: list[Bound] = []
    for value in values:
        match = _DATE.fullmatch(value)
        if match is None:
            message = "a prefix (eq, lt, le, gt, ge) and YYYY-MM-DD or an instant with its offset"
            raise invalid([FieldProblem(field=field, message=message)])
        prefix, written = match.group(1) or "eq", match.group(2)
        try:
            if "T" in written:
                at = datetime.fromisoformat(written)
                bounds += (
                    [Bound("ge", at), Bound("le", at)] if prefix == "eq" else [Bound(prefix, at)]
                )
                continue
            day = date.fromisoformat(written)
        except ValueError as error:
            raise invalid([FieldProblem(field=field, message=str(error))]) from None
        start = datetime.combine(day, time(), tzinfo=OSLO)
        end = datetime.combine(day + timedelta(days=1), time(), tzinfo=OSLO)
        bounds += {
            "eq": [Bound("ge", start), Bound("lt", end)],
            "ge": [Bound("ge", start)],
            "gt": [Bound("ge", end)],
            "le": [Bound("lt", end)],
            "lt": [Bound("lt", start)],
        }[prefix]
    return tuple(bounds)


def _cursor(page: str | None) -> Cursor | None:
    if page is None:
        return None
    try:
        return Cursor.decode(page)
    except ValueError as error:
        raise invalid([FieldProblem(field="_page", message=str(error))]) from None
