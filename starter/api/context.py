"""What every request handler needs, and the things each does first and last:
authenticate the caller for the route's roles, admit them to the pathway the request
names on their need of service, and write the access log.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from rop_domain.models import WORKFLOW_ID_PATTERN, ValidationPolicy
from rop_domain.steps import Step, actor_of
from starter import access_log, task_claims
from starter.access_log import Grounds, Outcome
from starter.api import metrics, need_of_service, strict_json
from starter.api.auth import AuthenticationFailed, Authenticator, Principal, Role
from starter.api.idempotency import IdempotencyStore
from starter.api.problems import ProblemError, from_pathway_error
from starter.pathways import (
    PathwayError,
    PathwayNotFound,
    Pathways,
    PathwayStepRejected,
    ReferralConflict,
)
from starter.worklist.signin import OidcClient

_WORKFLOW_ID = re.compile(WORKFLOW_ID_PATTERN)


@dataclass(frozen=True)
class ApiContext:
    """The API's connections: Temporal (through `Pathways`), the records, the auth config."""

    pathways: Pathways
    pool: asyncpg.Pool
    authenticator: Authenticator
    policy: ValidationPolicy
    break_glass_per_hour: int = 10
    """How often one person may break the glass in an hour (`ROP_BREAK_GLASS_PER_HOUR`)."""
    indicator_small_cell: int = 5
    """Breakdown counts below this are withheld (`ROP_INDICATOR_SMALL_CELL`)."""
    worklist_oidc: OidcClient | None = None
    """How the worklist page signs people in, if not by local mode's demo people."""

    @property
    def idempotency(self) -> IdempotencyStore:
        return IdempotencyStore(self.pool)

    async def audit(
        self, principal: Principal, workflow_ids: Iterable[str], action: str, outcome: Outcome
    ) -> None:
        """Write who did what to which pathways; the caller answers only after this."""
        await access_log.record(
            self.pool,
            (
                principal.access(workflow_id, action, outcome)
                for workflow_id in dict.fromkeys(workflow_ids)
            ),
        )

    async def audit_listed(
        self, principal: Principal, listed: dict[str, Grounds], action: str
    ) -> None:
        """Write a list's access: one row per pathway shown, each with its grounds."""
        for grounds in dict.fromkeys(listed.values()):
            shown = [workflow_id for workflow_id, g in listed.items() if g is grounds]
            await self.audit(replace(principal, grounds=grounds), shown, action, Outcome.OK)

    @contextlib.asynccontextmanager
    async def audited(
        self, principal: Principal, workflow_ids: Iterable[str], action: str
    ) -> AsyncIterator[None]:
        """Run a call on pathways and write its access: `ok` when it returns, or the outcome
        its `PathwayError` says, which becomes the problem a client acts on (404, 409, 503).
        A route answers only after the access is written."""
        try:
            yield
        except PathwayError as error:
            await self.audit(principal, workflow_ids, action, outcome_of(error))
            raise from_pathway_error(error) from None
        await self.audit(principal, workflow_ids, action, Outcome.OK)


def outcome_of(error: PathwayError) -> Outcome:
    """How the access log names a refused or failed call on a pathway."""
    if isinstance(error, PathwayNotFound):
        return Outcome.NOT_FOUND
    if isinstance(error, PathwayStepRejected | ReferralConflict):
        return Outcome.REJECTED
    return Outcome.FAILED


def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.context
    return ctx


Ctx = Annotated[ApiContext, Depends(context)]
"""A route's typed dependency on the API's connections."""


_bearer = HTTPBearer(
    auto_error=False,
    description="A service's API key, or a JWT from the configured issuer, with a role: "
    "system, clinician, operator or privacy-officer. A person (clinician) sees only the "
    "pathways of their "
    f"units or that name them; `{need_of_service.BREAK_GLASS_HEADER}: <reason>` gives "
    "emergency access, logged for follow-up.",
)

# Who may do what. Operators watch the system: they see search attributes, indicators
# and the access log, never clinical content, and change nothing.
READ_PATHWAY = frozenset({Role.SYSTEM, Role.CLINICIAN})
CHANGE_PATHWAY = frozenset({Role.SYSTEM, Role.CLINICIAN})
SUBMIT_REFERRAL = frozenset({Role.SYSTEM})
LIST_PATHWAYS = frozenset({Role.SYSTEM, Role.CLINICIAN, Role.OPERATOR})
TASKS = frozenset({Role.SYSTEM, Role.CLINICIAN})
INDICATORS = frozenset({Role.SYSTEM, Role.CLINICIAN, Role.OPERATOR})
AUDIT = frozenset({Role.OPERATOR})
PRIVACY = frozenset({Role.PRIVACY_OFFICER})
PATIENT = frozenset({Role.PATIENT})


async def check_actor(
    ctx: ApiContext,
    principal: Principal,
    workflow_id: str,
    step: Step,
    body: BaseModel,
    action: str | None = None,
) -> None:
    """Refuse a person's step that names someone else as its actor, or that their sign-in's
    assurance level does not allow (403, logged)."""
    if not principal.may_write:
        await ctx.audit(principal, [workflow_id], action or step.action, Outcome.DENIED)
        raise ProblemError(
            403,
            "Forbidden",
            f"{step.action}: clinical writes need HelseID assurance level high; this "
            f"sign-in's is {principal.assurance or 'not stated'}",
        )
    named = actor_of(step, body)
    if principal.actor is not None and named != principal.actor:
        await ctx.audit(principal, [workflow_id], action or step.action, Outcome.DENIED)
        raise ProblemError(
            403,
            "Forbidden",
            f"{step.actor_field}: you may record steps only as yourself ({principal.actor}), "
            f"not {named}",
        )


def _named_pathway(request: Request) -> str | None:
    """The workflow id the request's path names, if it names one."""
    workflow_id = request.path_params.get("workflow_id")
    if isinstance(workflow_id, str) and _WORKFLOW_ID.match(workflow_id):
        return workflow_id
    return None


async def audit_invalid(request: Request) -> None:
    """Log an authenticated caller's request for a pathway refused as invalid (422) as
    rejected: an attempt on a patient's record, even a malformed one, is traced."""
    principal = getattr(request.state, "principal", None)
    action = getattr(request.state, "action", None)
    workflow_id = _named_pathway(request)
    if isinstance(principal, Principal) and isinstance(action, str) and workflow_id:
        await context(request).audit(principal, [workflow_id], action, Outcome.REJECTED)


async def admit(request: Request, principal: Principal, workflow_id: str, action: str) -> Principal:
    """The caller admitted to one pathway, with the grounds the access log will show.

    A person without a need of service gets 403 (logged as denied) unless they break the
    glass; a pathway with no record is 404 for them, as for one that does not exist.
    """
    ctx = context(request)
    try:
        reason = need_of_service.break_glass_reason(
            request.headers.get(need_of_service.BREAK_GLASS_HEADER)
        )
        grounds = await need_of_service.grounds_for(ctx.pool, principal, workflow_id)
    except need_of_service.InvalidReason as error:
        await ctx.audit(principal, [workflow_id], action, Outcome.REJECTED)
        raise ProblemError(400, "Invalid break-glass reason", str(error)) from None
    except need_of_service.NoRecord:
        await ctx.audit(principal, [workflow_id], action, Outcome.NOT_FOUND)
        raise ProblemError(404, "Pathway not found", f"no pathway {workflow_id}") from None
    if grounds is not None:
        return replace(principal, grounds=grounds)
    if reason is not None:
        try:
            await need_of_service.check_break_glass_rate(
                ctx.pool, principal, ctx.break_glass_per_hour
            )
        except need_of_service.TooManyBreakGlass as error:
            await ctx.audit(principal, [workflow_id], action, Outcome.DENIED)
            raise ProblemError(429, "Too many break-glass accesses", str(error)) from None
        metrics.count_break_glass(request.app, reason)
        return replace(principal, grounds=Grounds.BREAK_GLASS, break_glass_reason=reason)
    await ctx.audit(principal, [workflow_id], action, Outcome.DENIED)
    units = ", ".join(sorted(principal.units)) or "none"
    raise ProblemError(
        403,
        "No need of service",
        f"{workflow_id} is not a pathway of your units ({units}) and does not name you; in "
        f"an emergency send {need_of_service.BREAK_GLASS_HEADER}: <reason> (logged and "
        "followed up)",
    )


def require(allowed: frozenset[Role], action: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the authenticated caller, if one of its roles is `allowed`, admitted
    to the pathway the path names on their need of service.

    A refused caller with a valid token is written to the access log of the pathway the
    path names, so attempts are traceable too.
    """

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        if credentials is None:
            raise ProblemError(
                401,
                "Authentication required",
                "send Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        ctx = context(request)
        try:
            principal = await ctx.authenticator.authenticate(credentials.credentials)
        except AuthenticationFailed as error:
            raise ProblemError(
                401,
                "Invalid token",
                str(error),
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            ) from None
        if not principal.may(allowed):
            workflow_id = _named_pathway(request)
            if workflow_id is not None:
                await ctx.audit(principal, [workflow_id], action, Outcome.DENIED)
            wanted = ", ".join(sorted(role.value for role in allowed))
            raise ProblemError(
                403,
                "Forbidden",
                f"{action}: needs role {wanted}; the caller has {principal.roles_text or 'none'}",
            )
        workflow_id = _named_pathway(request)
        if workflow_id is not None:
            principal = await admit(request, principal, workflow_id, action)
        elif Role.PATIENT in principal.roles:
            principal = replace(principal, grounds=Grounds.PATIENT)
        elif not principal.is_person:
            principal = replace(principal, grounds=Grounds.SERVICE)
        # For the request log, and for refusals of the body after this (`audit_invalid`).
        request.state.principal, request.state.action = principal, action
        try:
            await strict_json.refuse_duplicate_keys(request)
        except ProblemError:
            await audit_invalid(request)
            raise
        return principal

    return dependency


async def admit_to_task(
    request: Request, principal: Principal, task_id: int, workflow_id: str, action: str
) -> Principal:
    """`admit` to a task's pathway, where a person without a need of service gets 404 for the
    task, as for one that does not exist (the refusal is in the access log): task ids do not
    tell which pathways exist."""
    try:
        return await admit(request, principal, workflow_id, action)
    except ProblemError as error:
        if error.problem.status != 403:
            raise
        raise ProblemError(404, "Task not found", f"no task {task_id}") from None


async def change_task_owner(
    ctx: ApiContext,
    admitted: Principal,
    task_id: int,
    workflow_id: str,
    version: int,
    *,
    claiming: bool,
    action: str,
) -> None:
    """Claim or unclaim a unit's task for `admitted` (`task_claims`), for the API and the
    worklist alike: a sign-in that may not write is refused (403); applied or refused, the
    change is in the access log; a refusal is raised as `ClaimRefused` once logged."""
    if not admitted.may_write:
        await ctx.audit(admitted, [workflow_id], action, Outcome.DENIED)
        raise ProblemError(403, "Forbidden", "claims need a sign-in of assurance level high")
    change = task_claims.claim if claiming else task_claims.unclaim
    try:
        async with ctx.pool.acquire() as connection:
            await change(connection, task_id, version, admitted.actor or "", admitted.units)
    except task_claims.ClaimRefused as refused:
        await ctx.audit(admitted, [workflow_id], f"{action}: {refused.refusal}", Outcome.REJECTED)
        raise
    await ctx.audit(admitted, [workflow_id], action, Outcome.OK)
