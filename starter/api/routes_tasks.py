"""Clinicians' tasks and the region's indicators.

Completing a task that stands for a pathway step carries that step's content and runs
the step's Update (the same validation as the step's own route); a task that only
informs is marked completed in the record.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from rop_domain.calendar import OSLO
from rop_domain.followup import CrisisPlan, MeasureStep, Review
from rop_domain.models import (
    WORKFLOW_ID_PATTERN,
    Assessment,
    Identifier,
    IsoDate,
    MeetingInvite,
    ShortText,
    StrictModel,
)
from rop_domain.steps import STEP, Step, StepName
from rop_domain.tasks import TaskStatus, step_for
from rop_domain.view import PathwayStatus
from starter.access_log import NO_PATHWAY, Grounds, Outcome
from starter.api import need_of_service
from starter.api.auth import Principal
from starter.api.context import (
    INDICATORS,
    TASKS,
    ApiContext,
    Ctx,
    admit_to_task,
    check_actor,
    require,
)
from starter.api.idempotency import update_id_for
from starter.api.problems import (
    FieldProblem,
    ProblemError,
    from_validation_error,
    invalid,
    openapi_responses,
)
from starter.api.routes_pathways import IdempotencyKey
from starter.indicators import (
    IndicatorQuery,
    Indicators,
    Period,
    SeriesPoint,
    check_breakdown_period,
    compute_indicators,
    compute_series,
    read_action,
    series_csv,
)
from starter.task_list import (
    TaskFilter,
    TaskView,
    Viewer,
    complete_informational,
    find_task,
    list_tasks_with_grounds,
)

router = APIRouter()


class MeasureStart(StrictModel):
    """Who started the measure a start-measure task names."""

    by: Identifier
    note: ShortText | None = None


class TaskCompletion(StrictModel):
    """What completing a task carries: for a task that stands for a step, that step's content
    (the field named for the task's kind); for an informational task, nothing."""

    assessment: Assessment | None = None
    meeting_invite: MeetingInvite | None = None
    crisis_plan: CrisisPlan | None = None
    measure_start: MeasureStart | None = None
    review: Review | None = None


COMPLETION_FIELDS: dict[StepName, str] = {
    StepName.ASSESS: "assessment",
    StepName.INVITE_TO_MEETING: "meeting_invite",
    StepName.REGISTER_CRISIS_PLAN: "crisis_plan",
    StepName.START_MEASURE: "measure_start",
    StepName.COMPLETE_REVIEW: "review",
}
"""The field of `TaskCompletion` that carries each step a task can stand for (which step a
task stands for is the task table's: `rop_domain.tasks.step_for`)."""


class TaskCompleted(StrictModel):
    """The task after completion, and the pathway's status if a step was carried out."""

    task: TaskView
    pathway: PathwayStatus | None


@router.get(
    "/tasks",
    summary="Tasks: open by default, by assignee, health trust, unit or pathway",
    response_model=list[TaskView],
    responses=openapi_responses(401, 403, 422),
)
async def tasks(
    ctx: Ctx,
    principal: Annotated[Principal, Depends(require(TASKS, "list tasks"))],
    assignee: Identifier | None = None,
    health_trust: Identifier | None = None,
    receiving_unit: Annotated[str | None, Query(pattern="^(TSB|PHV)$")] = None,
    workflow_id: Annotated[str | None, Query(pattern=WORKFLOW_ID_PATTERN)] = None,
    overdue: bool = False,
    include_closed: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> Response:
    where = TaskFilter(
        workflow_id=workflow_id,
        assignee=assignee,
        health_trust=health_trust,
        receiving_unit=receiving_unit,
        overdue=overdue,
        include_closed=include_closed,
        visible_to=(
            Viewer(*need_of_service.parties_arguments(principal)) if principal.is_person else None
        ),
    )
    async with ctx.pool.acquire() as connection:
        found = await list_tasks_with_grounds(connection, where, limit)
    shown = {task.workflow_id: Grounds(grounds) for task, grounds in found}
    await ctx.audit_listed(principal, shown, "list tasks")
    return JSONResponse([task.model_dump(mode="json") for task, _ in found])


@router.post(
    "/tasks/{task_id}/complete",
    summary="Complete a task; a step's task carries the step's content",
    response_model=TaskCompleted,
    responses=openapi_responses(400, 401, 403, 404, 409, 422, 503),
)
async def complete_task(
    request: Request,
    ctx: Ctx,
    task_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    principal: Annotated[Principal, Depends(require(TASKS, "complete task"))],
    completion: Annotated[TaskCompletion, Body()] = TaskCompletion(),  # noqa: B008 - immutable
    idempotency_key: IdempotencyKey = None,
) -> Response:
    async def handle() -> Response:
        # One pooled connection at a time: a request holding one while waiting for
        # another could exhaust the pool under load.
        async with ctx.pool.acquire() as connection:
            task = await find_task(connection, task_id)
        if task is None:
            raise ProblemError(404, "Task not found", f"no task {task_id}")
        action = _action(task)
        admitted = await admit_to_task(request, principal, task_id, task.workflow_id, action)
        step = step_for(task.kind)
        status: PathwayStatus | None = None
        async with ctx.audited(admitted, [task.workflow_id], action):
            if step is None:
                async with ctx.pool.acquire() as connection:
                    completed = await complete_informational(connection, task_id)
                if not completed:
                    raise ProblemError(409, "Task is not open", f"task {task_id} is {task.status}")
            else:
                status = await _carry_out(task, STEP[step], action, admitted)
        async with ctx.pool.acquire() as connection:
            after = await find_task(connection, task_id)
        assert after is not None
        return JSONResponse(TaskCompleted(task=after, pathway=status).model_dump(mode="json"))

    async def _carry_out(
        task: TaskView, step: Step, action: str, admitted: Principal
    ) -> PathwayStatus:
        """The step the task stands for, with its content from the completion's body."""
        field = COMPLETION_FIELDS[step.name]
        content = getattr(completion, field)
        if content is None:
            message = f"required to complete a {task.kind.value} task"
            raise invalid([FieldProblem(field=field, message=message)])
        if task.status is not TaskStatus.REQUESTED:
            raise ProblemError(409, "Task is not open", f"task {task_id} is {task.status}")
        body = _step_body(task, content)
        await check_actor(ctx, admitted, task.workflow_id, step, body, action)
        return await ctx.pathways.send(
            step.name, task.workflow_id, body, update_id=update_id_for(principal, idempotency_key)
        )

    async def replayed(_: Response) -> None:
        async with ctx.pool.acquire() as connection:
            task = await find_task(connection, task_id)
        if task is not None:
            await ctx.audit(
                principal, [task.workflow_id], f"{_action(task)} (replayed)", Outcome.OK
            )

    return await ctx.idempotency.run(request, principal, idempotency_key, handle, replayed)


def _action(task: TaskView) -> str:
    return f"complete task {task.id} ({task.kind.value})"


def _step_body(task: TaskView, content: BaseModel) -> BaseModel:
    """The step's body: the completion's content, which for a measure task lacks the measure
    (the task names it)."""
    if isinstance(content, MeasureStart):
        return MeasureStep(measure_id=task.reference or "", by=content.by, note=content.note)
    return content


def _indicator_query(
    from_date: Annotated[IsoDate | None, Query(description="YYYY-MM-DD")] = None,
    to_date: Annotated[IsoDate | None, Query(description="YYYY-MM-DD")] = None,
    health_trust: Identifier | None = None,
    municipality: Annotated[str | None, Query(description="kommunenummer")] = None,
) -> IndicatorQuery:
    """The period, health trust and municipality both indicator routes take, validated
    together."""
    try:
        query = IndicatorQuery.model_validate(
            {
                "from_date": from_date,
                "to_date": to_date,
                "health_trust": health_trust,
                "municipality": municipality,
            }
        )
    except ValidationError as error:
        raise from_validation_error(error) from None
    try:
        check_breakdown_period(query, datetime.now(OSLO).date())
    except ValueError as error:
        raise invalid([FieldProblem(field="from_date", message=str(error))]) from None
    return query


@router.get(
    "/indicators",
    summary="The region's indicators for referrals received in a period",
    response_model=Indicators,
    responses=openapi_responses(401, 403, 422),
)
async def indicators(
    ctx: Ctx,
    principal: Annotated[Principal, Depends(require(INDICATORS, "read indicators"))],
    query: Annotated[IndicatorQuery, Depends(_indicator_query)],
) -> Response:
    async with ctx.pool.acquire() as connection:
        result = await compute_indicators(connection, query, small_cell=ctx.indicator_small_cell)
    await _audit_indicators(ctx, principal, query, "read indicators")
    return JSONResponse(result.model_dump(mode="json"))


async def _audit_indicators(
    ctx: ApiContext, principal: Principal, query: IndicatorQuery, what: str
) -> None:
    """An indicator read in the access log, with its scope (trust, period), not per pathway."""
    await ctx.audit(principal, [NO_PATHWAY], read_action(query, what), Outcome.OK)


@router.get(
    "/indicators/series",
    summary="The indicators per month or quarter (the last 12 months unless the dates say)",
    response_model=list[SeriesPoint],
    responses={
        200: {
            "description": "A point per period; with format=csv, a CSV row per period",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        },
        **openapi_responses(401, 403, 422),
    },
)
async def indicator_series(
    ctx: Ctx,
    principal: Annotated[Principal, Depends(require(INDICATORS, "read indicators"))],
    query: Annotated[IndicatorQuery, Depends(_indicator_query)],
    by: Period = Period.MONTH,
    format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
) -> Response:
    async with ctx.pool.acquire() as connection:
        series = await compute_series(
            connection, query, by, datetime.now(OSLO).date(), small_cell=ctx.indicator_small_cell
        )
    await _audit_indicators(ctx, principal, query, f"read indicator series by {by.value}")
    if format == "csv":
        return Response(series_csv(series), media_type="text/csv; charset=utf-8")
    return JSONResponse([point.model_dump(mode="json") for point in series])
