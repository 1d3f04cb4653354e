"""Traces, with OpenTelemetry: off unless the standard `OTEL_*` variables ask for them.

One trace runs from an HTTP request through the Temporal Update it sends, the workflow's
handling of it, and the activities that record it: the API is instrumented
(`opentelemetry-instrumentation-fastapi`), and every Temporal client, worker included, carries
the SDK's `TracingInterceptor`, which passes the trace context in Temporal headers.

Turned on by `OTEL_TRACES_EXPORTER` (`otlp` or `console`; `none` or unset: off), exported as
the OpenTelemetry SDK reads its variables (`OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME`, ...).

What spans carry: Update, query and activity names, workflow and run ids, HTTP method,
route and status. Never a payload: the interceptor passes context in headers and reads no
arguments, and the API's instrumentation records no bodies or headers. Workflow and task
ids are not personal data; nothing in a span names a patient (tests/test_tracing.py).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from temporalio.client import Interceptor
from temporalio.contrib.opentelemetry import TracingInterceptor

EXPORTERS = ("otlp", "console")


class TracingConfigError(ValueError):
    """`OTEL_TRACES_EXPORTER` names an exporter we do not ship."""


def provider_from_environment(service_name: str) -> TracerProvider | None:
    """The tracer provider the `OTEL_*` variables ask for, set as the global one; None (and
    nothing set) when tracing is off."""
    exporter_name = os.environ.get("OTEL_TRACES_EXPORTER", "none").strip().lower()
    if exporter_name in ("", "none"):
        return None
    exporter: SpanExporter
    if exporter_name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # endpoint, headers, timeout from OTEL_EXPORTER_OTLP_*
    elif exporter_name == "console":
        exporter = ConsoleSpanExporter()
    else:
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER={exporter_name}: use one of {', '.join(EXPORTERS)} or none"
        )
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, where set, win over `service_name`.
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


def client_interceptors(provider: TracerProvider | None) -> Sequence[Interceptor]:
    """The Temporal client's (and so its worker's) interceptors: tracing when it is on."""
    if provider is None:
        return ()
    return (TracingInterceptor(provider.get_tracer("rop-forlop")),)


def instrument_api(app: FastAPI, provider: TracerProvider | None) -> None:
    """Server spans for every API request, when tracing is on."""
    if provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, exclude_spans=["receive", "send"]
    )
