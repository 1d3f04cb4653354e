"""The worklist's pages: sign-in, the list, a task with its pathway's status and its form,
claim and unclaim. Thin: each reads and writes through what the API's routes use (the task
search, need of service, the access log, the pathway's Updates, the claims), so a page can
do nothing the API would refuse.

URLs carry task ids and task kinds only, never clinical content: forms are POSTed, and
after a POST the browser is sent on (303) to a page by id.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

import httpx
from fastapi import APIRouter, Request
from fastapi import Path as PathParameter
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from activities.task_owner import OwnerType, unit_id
from rop_domain.calendar import OSLO
from rop_domain.followup import ClosureReason, MeasureKind, Provider
from rop_domain.steps import STEP, StepName
from rop_domain.tasks import TaskKind, TaskStatus
from starter import task_claims
from starter.access_log import Grounds
from starter.api import need_of_service
from starter.api.auth import AuthenticationFailed, Principal, Role
from starter.api.context import (
    ApiContext,
    admit_to_task,
    change_task_owner,
    check_actor,
    context,
)
from starter.api.idempotency import update_id_for
from starter.api.problems import ProblemError
from starter.task_list import Viewer
from starter.task_search import FoundTask, Owner, SortOrder, TaskSearch, find_task, search_tasks
from starter.worklist import sessions
from starter.worklist.forms import (
    BLANK_MEASURE_ROWS,
    PATHWAY_STEPS,
    FormProblem,
    FormRefused,
    body_of,
    form_for,
    pathway_steps,
    step_of_form,
)
from starter.worklist.signin import SignInFailed, authorization_url, exchange, pkce_pair
from starter.worklist.texts import Language, words

router = APIRouter(prefix="/worklist", include_in_schema=False)
_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)


def shown_due(due: datetime) -> str:
    """A due instant as a person reads it (Oslo): a deadline at the end of a day (midnight)
    is that day, not the next one at 00:00."""
    local = due.astimezone(OSLO)
    if local.time() == time(0, 0):
        return (local - timedelta(days=1)).strftime("%d.%m.%Y")
    return local.strftime("%d.%m.%Y %H:%M")


_templates.filters["due"] = shown_due
LANGUAGE_COOKIE = "rop_language"
TaskId = Annotated[int, PathParameter(ge=1, le=2**63 - 1)]


class SignedIn:
    """A request's signed-in person: their session and who they are to the API."""

    def __init__(self, session: sessions.Session, principal: Principal) -> None:
        self.session = session
        self.principal = principal


def _language(request: Request) -> Language:
    chosen = request.cookies.get(LANGUAGE_COOKIE)
    return Language.NYNORSK if chosen == Language.NYNORSK.value else Language.BOKMAL


def _page(request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    language = _language(request)
    html = _templates.get_template(template).render(
        t=words(language), language=language.value, oslo=OSLO, **values
    )
    return HTMLResponse(
        html,
        status_code=status_code,
        headers={
            "Content-Security-Policy": "default-src 'none'; style-src 'self' 'unsafe-inline'; "
            "form-action 'self'; frame-ancestors 'none'",
            "Referrer-Policy": "no-referrer",
        },
    )


def _secure(ctx: ApiContext) -> bool:
    """Cookies are `Secure` outside local mode (the stack serves plain HTTP on loopback)."""
    return not ctx.authenticator.local_mode


async def _signed_in(request: Request) -> SignedIn | None:
    ctx = context(request)
    session = await sessions.find(ctx.pool, request.cookies.get(sessions.COOKIE))
    if session is None:
        return None
    principal: Principal | None
    if session.bearer is not None:
        try:
            principal = await ctx.authenticator.authenticate(session.bearer)
        except AuthenticationFailed:
            return None  # the provider's token expired: sign in again
    else:
        principal = ctx.authenticator.local_person(session.key_holder or "")
    if principal is None or not principal.is_person or Role.CLINICIAN not in principal.roles:
        return None
    request.state.principal = principal
    return SignedIn(session, principal)


def _to_signin() -> RedirectResponse:
    return RedirectResponse("/worklist/signin", status_code=303)


async def _form(request: Request, signed_in: SignedIn) -> dict[str, list[str]]:
    """A POSTed form's fields, once its CSRF token is the session's (else 403)."""
    fields = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    sent = (fields.pop("csrf", [""]) or [""])[-1]
    if not hmac.compare_digest(sent.encode(), signed_in.session.csrf.encode()):
        raise ProblemError(403, "Forbidden", "the form's CSRF token is not this session's")
    return fields


@router.get("/signin")
async def signin_page(request: Request) -> Response:
    ctx = context(request)
    people = [(p.name, p.person, ", ".join(p.units)) for p in ctx.authenticator.local_people()]
    return _page(request, "signin.html", people=people, oidc=ctx.worklist_oidc is not None)


@router.post("/signin/demo")
async def signin_demo(request: Request) -> Response:
    """Local mode: sign in as a demo person by their key's name."""
    ctx = context(request)
    fields = parse_qs((await request.body()).decode("utf-8", "replace"))
    name = (fields.get("person") or [""])[-1]
    if ctx.authenticator.local_person(name) is None:
        raise ProblemError(403, "Forbidden", "no such demo person (local mode only)")
    return _with_session(await sessions.start(ctx.pool, key_holder=name), ctx)


@router.get("/signin/oidc")
async def signin_oidc(request: Request) -> Response:
    """Off to the OIDC provider, with a PKCE challenge and a state kept for the way back."""
    ctx = context(request)
    if ctx.worklist_oidc is None:
        raise ProblemError(404, "Not found", "no OIDC provider is configured for the worklist")
    async with httpx.AsyncClient(timeout=10) as http:
        authorize, _ = await ctx.worklist_oidc.endpoints(http)
    state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(16)
    verifier, challenge = pkce_pair()
    await sessions.remember_signin(ctx.pool, state, verifier, nonce)
    url = authorization_url(
        authorize, ctx.worklist_oidc, _callback_url(request), state, challenge, nonce
    )
    return RedirectResponse(url, status_code=303)


@router.get("/signin/callback")
async def signin_callback(request: Request, code: str = "", state: str = "") -> Response:
    ctx = context(request)
    if ctx.worklist_oidc is None:
        raise ProblemError(404, "Not found", "no OIDC provider is configured for the worklist")
    remembered = await sessions.take_signin(ctx.pool, state) if state else None
    if remembered is None or not code:
        raise ProblemError(400, "Sign-in failed", "unknown or expired sign-in: start again")
    verifier, _ = remembered
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            _, token_endpoint = await ctx.worklist_oidc.endpoints(http)
            token = await exchange(
                http,
                token_endpoint,
                ctx.worklist_oidc,
                code=code,
                redirect_uri=_callback_url(request),
                verifier=verifier,
            )
        principal = await ctx.authenticator.authenticate(token)
    except (SignInFailed, AuthenticationFailed, httpx.HTTPError) as error:
        raise ProblemError(401, "Sign-in failed", str(error)) from None
    if not principal.is_person or Role.CLINICIAN not in principal.roles:
        raise ProblemError(403, "Forbidden", "the worklist is for clinicians")
    return _with_session(await sessions.start(ctx.pool, bearer=token), ctx)


def _callback_url(request: Request) -> str:
    return str(request.url_for("signin_callback"))


def _with_session(session_id: str, ctx: ApiContext) -> Response:
    response = RedirectResponse("/worklist", status_code=303)
    response.set_cookie(
        sessions.COOKIE,
        session_id,
        max_age=int(sessions.LIFETIME.total_seconds()),
        httponly=True,
        secure=_secure(ctx),
        samesite="lax",
        path="/worklist",
    )
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    signed_in = await _signed_in(request)
    if signed_in is None:
        return _to_signin()
    await _form(request, signed_in)
    await sessions.end(context(request).pool, request.cookies.get(sessions.COOKIE))
    response = _to_signin()
    response.delete_cookie(sessions.COOKIE, path="/worklist")
    return response


@router.get("/language/{language}")
async def choose_language(language: Language) -> Response:
    response = RedirectResponse("/worklist", status_code=303)
    response.set_cookie(LANGUAGE_COOKIE, language.value, samesite="lax", path="/worklist")
    return response


@router.get("")
async def worklist(request: Request, kind: TaskKind | None = None) -> Response:
    signed_in = await _signed_in(request)
    if signed_in is None:
        return _to_signin()
    ctx, principal = context(request), signed_in.principal
    viewer = Viewer(*need_of_service.parties_arguments(principal))
    owners = [Owner(OwnerType.PRACTITIONER, principal.actor or "")]
    owners += [
        Owner(OwnerType.CARE_TEAM, unit_id(*unit.split("/", 1))) for unit in sorted(principal.units)
    ]
    mine: list[FoundTask] = []
    units: list[FoundTask] = []
    async with ctx.pool.acquire() as connection:
        for owner in owners:
            found, _ = await search_tasks(
                connection,
                TaskSearch(
                    owner=owner,
                    statuses=(TaskStatus.REQUESTED,),
                    kinds=(kind,) if kind else (),
                    sort=SortOrder.DUE,
                    count=200,
                    visible_to=viewer,
                ),
            )
            (mine if owner.type is OwnerType.PRACTITIONER else units).extend(found)
    shown = {task.workflow_id: Grounds(task.grounds) for task in [*mine, *units]}
    await ctx.audit_listed(principal, shown, "read worklist")
    now = datetime.now(UTC)
    return _page(
        request,
        "list.html",
        person=principal.actor,
        csrf=signed_in.session.csrf,
        mine=mine,
        units=units,
        now=now,
        kinds=[k.value for k in TaskKind],
        kind=kind.value if kind else "",
    )


@router.get("/tasks/{task_id}")
async def task_page(request: Request, task_id: TaskId, saved: bool = False) -> Response:
    signed_in = await _signed_in(request)
    if signed_in is None:
        return _to_signin()
    return await _show_task(request, signed_in, task_id, saved=saved)


async def _show_task(
    request: Request,
    signed_in: SignedIn,
    task_id: int,
    *,
    saved: bool = False,
    problems: list[FormProblem] | None = None,
    status_code: int = 200,
) -> Response:
    ctx = context(request)
    task, admitted = await _task_for(request, signed_in, task_id, f"read task {task_id}")
    async with ctx.audited(admitted, [task.workflow_id], f"read task {task_id}"):
        status = await ctx.pathways.status(task.workflow_id)
    form = form_for(task.kind, task.status is TaskStatus.REQUESTED, status.phase)
    default_meeting = ""
    if status.meeting_deadline:
        default_meeting = f"{status.meeting_deadline.isoformat()}T10:00"
    return _page(
        request,
        "task.html",
        status_code=status_code,
        task=task,
        status=status,
        form=form.value if form else None,
        more_steps=[step.value for step in pathway_steps(status.phase)],
        measures=[m.model_dump(mode="json") for m in status.measures]
        + [{} for _ in range(BLANK_MEASURE_ROWS)],
        new_measures=[{} for _ in range(BLANK_MEASURE_ROWS)],
        measure_kinds=[k.value for k in MeasureKind],
        providers=[p.value for p in Provider],
        closure_reasons=[r.value for r in ClosureReason],
        form_key=str(uuid.uuid4()),
        new_key=lambda: str(uuid.uuid4()),
        csrf=signed_in.session.csrf,
        person=signed_in.principal.actor,
        saved=saved,
        problems=problems or [],
        now=datetime.now(UTC),
        default_meeting=default_meeting,
        now_local=datetime.now(OSLO).strftime("%Y-%m-%dT%H:%M"),
        invited=[p.role.value for p in status.invite.invite.participants] if status.invite else [],
        crisis_plan_version=(status.crisis_plan.current.version + 1)
        if status.crisis_plan.current
        else 1,
    )


async def _task_for(
    request: Request, signed_in: SignedIn, task_id: int, action: str
) -> tuple[FoundTask, Principal]:
    """The task, if the person has a need of service for its pathway (404 otherwise, as the
    API answers: ids do not tell which pathways exist)."""
    async with context(request).pool.acquire() as connection:
        task = await find_task(connection, task_id)
    if task is None:
        raise ProblemError(404, "Task not found", f"no task {task_id}")
    admitted = await admit_to_task(request, signed_in.principal, task_id, task.workflow_id, action)
    return task, admitted


@router.post("/tasks/{task_id}")
async def send_step(request: Request, task_id: TaskId) -> Response:
    """The task's form: its step, with the form's own key as the Update's id, so a form
    sent twice applies once."""
    signed_in = await _signed_in(request)
    if signed_in is None:
        return _to_signin()
    fields = await _form(request, signed_in)
    task, admitted = await _task_for(request, signed_in, task_id, f"complete task {task_id}")
    step_name = step_of_form(task.kind)
    if step_name is None:
        raise ProblemError(409, "No form", f"task {task_id} has no step to send")
    return await _send(request, signed_in, task, admitted, step_name, fields)


@router.post("/tasks/{task_id}/steps/{step}")
async def send_pathway_step(request: Request, task_id: TaskId, step: StepName) -> Response:
    """A step of the task's pathway that no task stands for (`pathway_steps`: move the
    meeting, revise the plan, close), from the page of any of its tasks: the task is what
    admits the person (need of service), as for the task's own form. Whether the pathway's
    phase allows it is the workflow's to say (its validator), so a form sent again after it
    applied is answered by its Update's id."""
    signed_in = await _signed_in(request)
    if signed_in is None:
        return _to_signin()
    fields = await _form(request, signed_in)
    if step not in PATHWAY_STEPS:
        raise ProblemError(404, "No such form", f"the worklist has no form for {step.value}")
    task, admitted = await _task_for(
        request, signed_in, task_id, f"{step.value} from task {task_id}"
    )
    return await _send(request, signed_in, task, admitted, step, fields)


async def _send(
    request: Request,
    signed_in: SignedIn,
    task: FoundTask,
    admitted: Principal,
    step_name: StepName,
    fields: dict[str, list[str]],
) -> Response:
    """Send `step_name` built from the form's `fields`, its Update's id the form's key; a
    refused form shows the task's page again, each bad field named."""
    ctx = context(request)
    key = (fields.pop("form_key", [""]) or [""])[-1]
    if not key:
        raise ProblemError(422, "Unprocessable form", "the form has no form_key")
    status = await ctx.pathways.status(task.workflow_id)
    step = STEP[step_name]
    action = f"{step.action} through task {task.id} ({task.kind.value}) in the worklist"
    try:
        body = body_of(step_name, fields, admitted.actor or "", status, task.reference)
        await check_actor(ctx, admitted, task.workflow_id, step, body, action)
        async with ctx.audited(admitted, [task.workflow_id], action):
            await ctx.pathways.send(
                step.name, task.workflow_id, body, update_id=update_id_for(admitted, key)
            )
    except FormRefused as refused:
        return await _show_task(
            request, signed_in, task.id, problems=refused.problems, status_code=422
        )
    except ProblemError as error:
        if error.problem.status not in (409, 422):
            raise
        problem = FormProblem("form", error.problem.detail or error.problem.title)
        return await _show_task(request, signed_in, task.id, problems=[problem], status_code=409)
    return RedirectResponse(f"/worklist/tasks/{task.id}?saved=true", status_code=303)


@router.post("/tasks/{task_id}/claim")
async def claim(request: Request, task_id: TaskId) -> Response:
    return await _change_owner(request, task_id, claiming=True)


@router.post("/tasks/{task_id}/unclaim")
async def unclaim(request: Request, task_id: TaskId) -> Response:
    return await _change_owner(request, task_id, claiming=False)


async def _change_owner(request: Request, task_id: int, *, claiming: bool) -> Response:
    signed_in = await _signed_in(request)
    if signed_in is None:
        return _to_signin()
    fields = await _form(request, signed_in)
    ctx = context(request)
    action = f"{'claim' if claiming else 'unclaim'} task {task_id} in the worklist"
    task, admitted = await _task_for(request, signed_in, task_id, action)
    version = (fields.get("version") or ["0"])[-1]
    try:
        await change_task_owner(
            ctx,
            admitted,
            task_id,
            task.workflow_id,
            int(version) if version.isdigit() else 0,
            claiming=claiming,
            action=action,
        )
    except task_claims.ClaimRefused as refused:
        problem = FormProblem("owner", str(refused))
        return await _show_task(request, signed_in, task_id, problems=[problem], status_code=409)
    return RedirectResponse(f"/worklist/tasks/{task_id}", status_code=303)
