"""The API's metrics at `/metrics`, in Prometheus format: requests by route and status, and
their latency.

The `route` label is the route's template (`/pathways/{workflow_id}`), never the path a
caller sent, so no pathway id reaches a label; a path no route matches is `unmatched`.
`/metrics` itself carries nothing personal and needs no token, like `/health`: restrict it
at the network (deploy/), where Prometheus scrapes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

from starter.api import offline_docs
from starter.api.need_of_service import BreakGlassCode

UNMATCHED = "unmatched"


Observe = Callable[[Request, int, float], None]
"""Count one request: the request, its status, how many seconds it took."""


def install(app: FastAPI) -> Observe:
    """Serve `/metrics`; return what counts a request (the request log's middleware calls it,
    which times each request once). One registry per app: tests run several."""
    registry = CollectorRegistry()
    requests = Counter(
        "rop_api_requests",
        "HTTP requests by method, route template and status",
        ["method", "route", "status"],
        registry=registry,
    )
    latency = Histogram(
        "rop_api_request_duration_seconds",
        "HTTP request latency by method and route template",
        ["method", "route"],
        registry=registry,
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20),
    )

    broken = Counter(
        "rop_api_break_glass",
        "Accesses on the grounds of breaking the glass, by the reason's code",
        ["code"],
        registry=registry,
    )
    for code in BreakGlassCode:
        broken.labels(code.value)  # exported at 0, so a rate can be taken from the start
    app.state.break_glass = broken

    def observe(request: Request, status: int, seconds: float) -> None:
        route = _route_template(request)
        requests.labels(request.method, route, str(status)).inc()
        latency.labels(request.method, route).observe(seconds)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return observe


def _route_template(request: Request) -> str:
    """The template of the route that answered, as the router left it in the scope; a
    mounted folder (the API explorer's assets) by its mount point."""
    route = request.scope.get("route")
    if route is not None:
        return str(getattr(route, "path", UNMATCHED))
    if request.url.path.startswith(f"{offline_docs.ASSETS}/"):
        return offline_docs.ASSETS
    return UNMATCHED


def count_break_glass(app: Any, reason: str) -> None:
    """Count one access on the grounds of breaking the glass (`reason`: `<code>: <text>`);
    the alert rule `RopBreakGlassBurst` watches its rate (deploy/monitoring)."""
    counter = getattr(app.state, "break_glass", None)
    if counter is not None:
        counter.labels(reason.partition(":")[0]).inc()
