"""Errors as `application/problem+json` (RFC 9457), one shape for every refusal.

A client's mistake is a 4xx naming what to fix; a 5xx means our side failed. The same
mapping serves the exception handlers and the idempotency store, which keeps the first
answer to a request, refusals included.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from starter.pathways import (
    PathwayError,
    PathwayNotFound,
    PathwayStepRejected,
    ReferralConflict,
)

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"


class FieldProblem(BaseModel):
    """One invalid field: where it is (dotted path) and what is wrong with it."""

    field: str
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem detail."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldProblem] | None = None


class ProblemError(Exception):
    """Raised anywhere in a request to answer with a problem."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        errors: list[FieldProblem] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.problem = Problem(title=title, status=status, detail=detail, errors=errors)
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse(
            self.problem.model_dump(mode="json", exclude_none=True),
            status_code=self.problem.status,
            media_type=PROBLEM_JSON,
            headers=self.headers,
        )


def field_name(location: tuple[Any, ...] | list[Any]) -> str:
    """`("body", "patient", "national_id")` → `patient.national_id`."""
    parts = [str(p) for p in location if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "(request)"


def invalid(errors: list[FieldProblem]) -> ProblemError:
    """422 naming every invalid field; the detail names the first."""
    first = errors[0]
    return ProblemError(422, "Invalid request", f"{first.field}: {first.message}", errors=errors)


def from_validation_error(error: ValidationError | RequestValidationError) -> ProblemError:
    return invalid(
        [_field_problem(e) for e in error.errors()]
        or [FieldProblem(field="(request)", message=str(error))]
    )


def _field_problem(error: Any) -> FieldProblem:
    """One field's problem; a body that is no JSON at all names the body and where it broke
    (FastAPI places such an error at the character's offset, which reads as a field name)."""
    if error.get("type") == "json_invalid":
        where = error["loc"][-1] if error.get("loc") else "?"
        reason = (error.get("ctx") or {}).get("error", "not JSON")
        return FieldProblem(field="body", message=f"not valid JSON at character {where}: {reason}")
    return FieldProblem(field=field_name(error["loc"]), message=error["msg"])


def from_pathway_error(error: PathwayError) -> ProblemError:
    """The pathway API's refusals, as the HTTP status a client acts on."""
    if isinstance(error, PathwayNotFound):
        return ProblemError(404, "Pathway not found", str(error))
    if isinstance(error, PathwayStepRejected):
        return ProblemError(409, "The pathway is not ready for this step", str(error))
    if isinstance(error, ReferralConflict):
        return ProblemError(409, "The referral conflicts with its pathway's", str(error))
    return ProblemError(503, "Temporal is unavailable", str(error))


def openapi_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The problem responses a route may give, for the OpenAPI schema."""
    descriptions = {
        400: "The body could not be read (not UTF-8 JSON)",
        401: "No valid bearer token",
        403: "The caller's role may not do this",
        404: "No such pathway or task",
        409: "The pathway is not ready for this step, or the request conflicts",
        412: "The resource changed since the version the caller sent (If-Match): read it again",
        415: "Unsupported content type",
        422: "Invalid input; `errors` names each field",
        428: "Send If-Match with the version the change is based on",
        429: "This address sent too many invalid tokens (ROP_API_AUTH_FAILURES_PER_MINUTE); "
        "try again later",
        503: "Temporal or the database is unavailable",
    }
    if 401 in statuses:  # the guard refuses an address that keeps sending invalid tokens
        statuses = (*statuses, 429)
    return {
        status: {
            "description": descriptions[status],
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


def install(app: FastAPI) -> None:
    """Answer every error with a problem document."""

    async def problem(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ProblemError)
        return error.response()

    async def request_invalid(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        return from_validation_error(error).response()

    async def pathway(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, PathwayError)
        return from_pathway_error(error).response()

    async def http(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        title = {400: "Bad request", 404: "Not found", 405: "Method not allowed"}.get(
            error.status_code, "Error"
        )
        return ProblemError(
            error.status_code, title, str(error.detail), headers=dict(error.headers or {})
        ).response()

    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.error("request failed", path=request.url.path, error=type(error).__name__)
        return ProblemError(500, "Internal error", "the request failed on our side").response()

    app.add_exception_handler(ProblemError, problem)
    app.add_exception_handler(RequestValidationError, request_invalid)
    app.add_exception_handler(PathwayError, pathway)
    app.add_exception_handler(StarletteHTTPException, http)
    app.add_exception_handler(Exception, unexpected)
