"""Metrics from a running worker and API, scraped in Prometheus format during real pathways:
the SDK's own, the pathway's, and no label that points at a patient or a clinician."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from temporalio.testing import WorkflowEnvironment

from activities.channels import EmailChannel, SmtpSettings
from activities.delivery import DeliveryActivities
from rop_domain.models import Assessment, AssessmentDecision
from rop_domain.routing import Channel, Route, RoutingTable
from rop_domain.steps import StepName
from rop_runtime.metrics import PathwayGauges, prometheus_runtime
from starter.api.auth import Role
from starter.local_stack import ensure_search_attributes, packaged_binary
from starter.pathways import PathwayStepRejected
from tests import factories
from tests.api_harness import Api
from tests.channel_servers import SmtpServer, free_port
from tests.conftest import DATA_CONVERTER
from tests.pathway_harness import close_and_end, eventually, running_pathways, start
from workflows import search_attributes

PERSONAL = (
    factories.national_id("150586951"),
    factories.PATIENT_NAME,
    "pseudo-123",
    factories.CLINICIAN,
    factories.GP,
    factories.KOORDINATOR,
)


async def _scrape(url: str) -> list[Sample]:
    async with httpx.AsyncClient() as http:
        answer = await http.get(url)
    assert answer.status_code == 200, answer.text
    return [
        sample
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    ]


def _value(samples: Iterable[Sample], name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def _assert_nothing_personal(samples: list[Sample], *identifiers: str) -> None:
    labels = {value for sample in samples for value in sample.labels.values()}
    leaked = [v for v in labels if any(secret in v for secret in (*PERSONAL, *identifiers))]
    assert leaked == [], leaked


async def test_the_worker_serves_sdk_and_pathway_metrics_and_no_ids(
    pool: asyncpg.Pool, task_queue: str, smtp_server: SmtpServer
) -> None:
    port = free_port()
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=DATA_CONVERTER,
        test_server_existing_path=packaged_binary("temporal-test-server"),
        runtime=prometheus_runtime(f"127.0.0.1:{port}"),
    )
    try:
        await ensure_search_attributes(env.client, search_attributes.ALL)
        email = RoutingTable(
            routes=[
                Route(
                    recipient=factories.CLINICIAN,
                    channel=Channel.EMAIL,
                    address="lege@example.invalid",
                )
            ]
        )
        delivery = DeliveryActivities(
            pool, email, email=EmailChannel(SmtpSettings(host="127.0.0.1", port=smtp_server.port))
        )
        async with running_pathways(env.client, pool, task_queue, delivery=delivery) as api:
            now = await env.get_current_time()
            data = factories.referral_data(now)
            workflow_id, handle = await start(env.client, api, data)
            await api.send(StepName.ASSESS, workflow_id, factories.assessment())
            with pytest.raises(PathwayStepRejected):
                await api.send(
                    StepName.ASSESS,
                    workflow_id,
                    Assessment(
                        assessor=factories.CLINICIAN,
                        decision=AssessmentDecision.NOT_IN_TARGET_GROUP,
                        reason="again",
                    ),
                )
            # No invite: the deadline is reminded of, then escalated, by the pathway's timers.
            status = await api.status(workflow_id)
            await env.sleep(status.escalation_at - now + timedelta(hours=1))
            await eventually(api, workflow_id, lambda s: s.meeting_escalated)
            # A run ends once its deliveries are done: then every e-mail has been counted.
            await close_and_end(api, handle)
            samples = await _scrape(f"http://127.0.0.1:{port}/metrics")
    finally:
        await env.shutdown()

    # The pathway's own.
    assert _value(samples, "rop_pathway_steps_total", step="assess", outcome="applied") == 1
    assert _value(samples, "rop_pathway_steps_total", step="timer", outcome="applied") >= 2
    assert _value(samples, "rop_reminders_total", kind="invite-to-meeting-reminder") == 1
    assert _value(samples, "rop_escalations_total", kind="meeting-deadline-escalation") == 1
    # The clinician's tasks go by e-mail: one count for each message the SMTP server took.
    sent = len(smtp_server.inbox.messages)
    assert sent >= 2
    assert _value(samples, "rop_deliveries_total", channel="email", outcome="sent") == sent
    assert _value(samples, "rop_record_step_seconds_count", activity_type="record_step") >= 3
    # The SDK's runtime metrics, which the alert rules and the dashboard use.
    names = {sample.name for sample in samples}
    for expected in (
        "temporal_worker_task_slots_available",
        "temporal_workflow_task_schedule_to_start_latency_bucket",
        "temporal_sticky_cache_size",
        "temporal_workflow_task_execution_latency_bucket",
    ):
        assert expected in names, sorted(names)
    _assert_nothing_personal(samples, workflow_id, data["referral_id"])


async def test_pathway_gauges_count_what_visibility_shows(
    dev_server: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    port = free_port()
    runtime = prometheus_runtime(f"127.0.0.1:{port}")
    gauges = PathwayGauges(dev_server.client, runtime.metric_meter)
    async with running_pathways(dev_server.client, pool, task_queue) as api:
        now = await dev_server.get_current_time()
        workflow_id, handle = await start(dev_server.client, api, factories.referral_data(now))
        for _ in range(50):  # visibility is eventually consistent
            counts = await gauges.refresh()
            if counts["running"] >= 1:
                break
        samples = await _scrape(f"http://127.0.0.1:{port}/metrics")
        await close_and_end(api, handle)
    assert set(counts) == {"running", "overdue", "delivery_failed", "recording_stalled"}
    assert counts["running"] >= 1
    for state, count in counts.items():
        assert _value(samples, "rop_pathways", state=state) == count
    _assert_nothing_personal(samples, workflow_id)


async def test_the_api_counts_requests_by_route_template_not_by_path(api: Api) -> None:
    unknown = "rop-X-0000000000"
    async with api.client(Role.SYSTEM) as http:
        assert (await http.get(f"/pathways/{unknown}")).status_code == 404
        assert (await http.get(f"/pathways/{unknown}")).status_code == 404
        assert (await http.post("/referrals", json={"patient": "nobody"})).status_code == 422
    samples = await _scrape(f"{api.url}/metrics")
    requests = "rop_api_requests_total"
    assert (
        _value(samples, requests, method="GET", route="/pathways/{workflow_id}", status="404") >= 2
    )
    assert _value(samples, requests, method="POST", route="/referrals", status="422") >= 1
    assert _value(samples, "rop_api_request_duration_seconds_count", route="/referrals") >= 1
    _assert_nothing_personal(samples, unknown)
