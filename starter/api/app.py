"""The FastAPI application: routes, problem responses, a request log, a complete schema."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response

from rop_domain.models import Referral
from starter.api import (
    metrics,
    offline_docs,
    problems,
    routes_audit,
    routes_fhir_tasks,
    routes_pathways,
    routes_steps,
    routes_subscriptions,
    routes_tasks,
)
from starter.api.auth import Principal
from starter.api.context import ApiContext, audit_invalid
from starter.api.guard import Guard
from starter.worklist import routes as worklist_routes

log = structlog.get_logger(__name__)

DESCRIPTION = """Start and drive ROP pathways (rop-forlop) over HTTP.

Every pathway step is the same Temporal Update the `rop` CLI sends. Send
`Idempotency-Key` on a POST to make a retry safe. Errors are `application/problem+json`
(RFC 9457). Every read or change of a pathway is written to the access log.
"""


def create_app(
    open_context: Callable[[], AbstractAsyncContextManager[ApiContext]],
    *,
    max_body_bytes: int = 1_000_000,
    auth_failures_per_minute: int = 30,
) -> FastAPI:
    """The API, with its connections opened by `open_context` for the app's lifetime, behind
    its guard (`starter.api.guard`: body limit, no-store, refused tokens throttled)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_context() as ctx:
            app.state.context = ctx
            yield

    app = FastAPI(
        title="rop-forlop API",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    problems.install(app)
    offline_docs.install(app)
    observe = metrics.install(app)

    async def invalid_and_logged(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        await audit_invalid(request)
        return problems.from_validation_error(error).response()

    # After `problems.install`: an invalid body from a known caller is also in the access log.
    app.add_exception_handler(RequestValidationError, invalid_and_logged)
    app.include_router(routes_pathways.router)
    app.include_router(routes_steps.router)
    app.include_router(routes_tasks.router)
    app.include_router(routes_audit.router)
    app.include_router(routes_fhir_tasks.router)
    app.include_router(routes_subscriptions.router)
    app.include_router(worklist_routes.router)

    @app.get("/health", summary="Liveness: the API process answers", tags=["operations"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.middleware("http")
    async def request_log(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        seconds = time.perf_counter() - started
        observe(request, response.status_code, seconds)
        principal = getattr(request.state, "principal", None)
        log.info(
            "request",
            method=request.method,
            path=request.url.path,
            status=response.status_code,
            caller=principal.identity if isinstance(principal, Principal) else None,
            ms=round(seconds * 1000, 1),
        )
        return response

    # Last added, so outermost: it answers 413 and 429 before anything else runs.
    app.add_middleware(
        Guard, max_body_bytes=max_body_bytes, auth_failures_per_minute=auth_failures_per_minute
    )
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, plus what the routes refer to but FastAPI cannot see: the problem
    document, the referral body (parsed by hand for its validation policy) and the FHIR
    resources."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (problems.Problem, Referral):
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(model_schema.pop("$defs", {}))
        components[model.__name__] = model_schema
    components["FhirServiceRequest"] = {
        "type": "object",
        "description": "A FHIR R4 ServiceRequest (http://hl7.org/fhir/R4/servicerequest.html); "
        "the README says where each referral field is read from.",
        "required": ["resourceType", "status", "intent", "subject"],
        "properties": {"resourceType": {"type": "string", "enum": ["ServiceRequest"]}},
    }
    components["FhirBundle"] = {
        "type": "object",
        "description": "A FHIR R4 Bundle (http://hl7.org/fhir/R4/bundle.html), type collection.",
        "required": ["resourceType", "type"],
        "properties": {
            "resourceType": {"type": "string", "enum": ["Bundle"]},
            "type": {"type": "string", "enum": ["collection"]},
            "entry": {"type": "array", "items": {"type": "object"}},
        },
    }
    app.openapi_schema = schema
    return schema
