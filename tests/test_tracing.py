"""One trace from an HTTP step through its Temporal Update to the activity that records it,
with nothing personal in any span (an in-memory exporter, real servers)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.testing import WorkflowEnvironment

from rop_runtime.tracing import TracingConfigError, provider_from_environment
from starter.api.auth import Role
from tests import factories
from tests.api_harness import running_api

PERSONAL = (
    factories.national_id("150586951"),
    factories.PATIENT_NAME,
    "pseudo-123",
)


def _in_trace(spans: tuple[ReadableSpan, ...], trace_id: int) -> list[str]:
    return [span.name for span in spans if span.context and span.context.trace_id == trace_id]


async def test_an_http_step_is_one_trace_through_its_update_to_its_record(
    dev_server: WorkflowEnvironment, pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    traced = running_api(dev_server, pool, database_url, tmp_path, tracing=provider)
    async with (
        traced as api,
        api.client(Role.SYSTEM) as system,
        api.client(Role.CLINICIAN) as clinician,
    ):
        data = factories.referral_data(datetime.now(UTC))
        submitted = await system.post("/referrals", json=data)
        assert submitted.status_code == 201, submitted.text
        workflow_id = submitted.json()["workflow_id"]
        assessment = json.loads(factories.assessment().model_dump_json())
        assessed = await clinician.post(f"/pathways/{workflow_id}/assessment", json=assessment)
        assert assessed.status_code == 200, assessed.text
        await asyncio.sleep(0.5)  # the worker's spans end as its task completes
    spans = exported.get_finished_spans()

    def only(name: str) -> ReadableSpan:
        [span] = [s for s in spans if s.name == name]
        assert span.context is not None
        return span

    # The referral's trace runs from its HTTP request through the pathway's run to the
    # activities that record it; the workflow's spans belong to the pathway's trace...
    referral = only("POST /referrals")
    assert referral.context is not None
    in_referral_trace = _in_trace(spans, referral.context.trace_id)
    for name in (
        "StartWorkflow:RopPathway",
        "RunWorkflow:RopPathway",
        "RunActivity:open_pathway",
        "ValidateUpdate:assess",
        "HandleUpdate:assess",
        "StartActivity:record_step",  # the workflow's local activity...
        "RunActivity:record_step",  # ...run by the worker
    ):
        assert name in in_referral_trace, (name, in_referral_trace)
    # ...and each later step's Update links back to the HTTP request that sent it.
    step = only("POST /pathways/{workflow_id}/assessment")
    sent = only("StartWorkflowUpdate:assess")
    assert step.context is not None
    assert sent.context is not None
    assert sent.context.trace_id == step.context.trace_id
    handled = only("HandleUpdate:assess")
    assert [link.context.span_id for link in handled.links] == [sent.context.span_id]

    # Everything the spans carry, as an exporter would send it.
    exported_text = " ".join(span.to_json() for span in spans)
    assert [p for p in PERSONAL if p in exported_text] == []


def test_tracing_is_off_unless_the_otel_variables_ask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    assert provider_from_environment("rop-test") is None
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert provider_from_environment("rop-test") is None
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(TracingConfigError, match="use one of otlp, console or none"):
        provider_from_environment("rop-test")
