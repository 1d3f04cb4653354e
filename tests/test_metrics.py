"""Metrics from a running worker and API, scraped in Prometheus format during real pathways:
the SDK's own, the pathway's, and no label that points at a patient or a clinician."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

import asyncpg
import httpx
import promql_parser
import pytest
import pytest_asyncio
import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from temporalio.testing import WorkflowEnvironment

from rop_domain.models import Assessment, AssessmentDecision
from rop_domain.steps import StepName
from rop_runtime.metrics import PathwayGauges, prometheus_runtime
from starter.api.app import create_app
from starter.api.auth import Role
from starter.local_stack import ensure_search_attributes, packaged_binary
from starter.pathways import PathwayStepRejected
from tests import factories
from tests.api_harness import Api, without_connections
from tests.channel_servers import Inbox, SmtpServer, email_delivery, free_port
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


@dataclass(frozen=True)
class WorkerScrape:
    samples: list[Sample]
    workflow_id: str
    referral_id: str
    emails_sent: int


@pytest_asyncio.fixture(scope="module")
async def worker_scrape(pool: asyncpg.Pool) -> AsyncIterator[WorkerScrape]:
    """A worker with a Prometheus endpoint takes one pathway past its meeting deadline
    (reminded, escalated, tasks by e-mail), then is scraped."""
    port, task_queue = free_port(), f"rop-metrics-{uuid.uuid4().hex[:8]}"
    smtp = SmtpServer(Inbox())  # down at first: the first delivery is retried
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=DATA_CONVERTER,
        test_server_existing_path=packaged_binary("temporal-test-server"),
        runtime=prometheus_runtime(f"127.0.0.1:{port}"),
    )
    try:
        await ensure_search_attributes(env.client, search_attributes.ALL)
        delivery = email_delivery(pool, smtp)
        async with running_pathways(env.client, pool, task_queue, delivery=delivery) as api:
            now = await env.get_current_time()
            data = factories.referral_data(now)
            workflow_id, handle = await start(env.client, api, data)
            await _first_delivery_attempt_failed(pool, workflow_id)
            smtp.start()
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
        yield WorkerScrape(samples, workflow_id, data["referral_id"], len(smtp.inbox.messages))
    finally:
        await env.shutdown()
        smtp.stop()


async def _first_delivery_attempt_failed(pool: asyncpg.Pool, workflow_id: str) -> None:
    for _ in range(200):
        failed = await pool.fetchval(
            "SELECT count(*) FROM deliveries d JOIN tasks t ON t.id = d.task_id "
            "WHERE t.workflow_id = $1 AND d.last_error IS NOT NULL",
            workflow_id,
        )
        if failed:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no delivery attempt failed")


async def test_the_worker_serves_sdk_and_pathway_metrics_and_no_ids(
    worker_scrape: WorkerScrape,
) -> None:
    samples = worker_scrape.samples
    # The pathway's own.
    assert _value(samples, "rop_pathway_steps_total", step="assess", outcome="applied") == 1
    assert _value(samples, "rop_pathway_steps_total", step="timer", outcome="applied") >= 2
    assert _value(samples, "rop_reminders_total", kind="invite-to-meeting-reminder") == 1
    assert _value(samples, "rop_escalations_total", kind="meeting-deadline-escalation") == 1
    # The clinician's tasks go by e-mail: one count for each message the SMTP server took.
    assert worker_scrape.emails_sent >= 2
    assert (
        _value(samples, "rop_deliveries_total", channel="email", outcome="sent")
        == worker_scrape.emails_sent
    )
    assert _value(samples, "rop_record_step_seconds_count", activity_type="record_step") >= 3
    buckets = {s.labels["le"] for s in samples if s.name == "rop_record_step_seconds_bucket"}
    assert {"0.005", "0.01", "0.025"} <= buckets  # milliseconds apart, not the SDK's 50 ms
    # The SDK's runtime metrics, which the alert rules and the dashboard use.
    names = {sample.name for sample in samples}
    for expected in (
        "temporal_worker_task_slots_available",
        "temporal_workflow_task_schedule_to_start_latency_bucket",
        "temporal_sticky_cache_size",
        "temporal_workflow_task_execution_latency_bucket",
    ):
        assert expected in names, sorted(names)
    assert _value(samples, "rop_deliveries_total", channel="email", outcome="retrying") >= 1
    _assert_nothing_personal(samples, worker_scrape.workflow_id, worker_scrape.referral_id)


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
    assert set(counts) == {
        "running",
        "overdue",
        "delivery_failed",
        "recording_stalled",
        "record_behind",
    }
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


# --- deploy/monitoring: the alert rules and the dashboard ------------------------------------

MONITORING = Path(__file__).resolve().parent.parent / "deploy" / "monitoring"
DURATION = r"^\d+(ms|s|m|h|d|w|y)$"

NOT_IN_A_HEALTHY_SCRAPE = {
    "temporal_workflow_task_execution_failed_total": "counted only once a workflow task fails",
    "up": "Prometheus' own, per scrape target",
}
"""Metrics the rules may name that a healthy worker does not serve (yet)."""


class Rule(BaseModel):
    """One alerting rule, as Prometheus' rule-file format has it (alerting rules only)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    alert: str = Field(pattern=r"^Rop[A-Za-z]+$")
    expr: str
    for_: str | None = Field(default=None, alias="for", pattern=DURATION)
    labels: dict[str, Literal["info", "warning", "critical"]]
    annotations: dict[Literal["summary", "description"], str]


class RuleGroup(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    interval: str | None = Field(default=None, pattern=DURATION)
    rules: list[Rule] = Field(min_length=1)


class RuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    groups: list[RuleGroup] = Field(min_length=1)


class Target(BaseModel):
    model_config = ConfigDict(extra="allow")

    refId: str  # noqa: N815 - Grafana's name
    expr: str
    legendFormat: str  # noqa: N815


class GridPos(BaseModel):
    h: int = Field(ge=1)
    w: int = Field(ge=1, le=24)
    x: int = Field(ge=0, le=23)
    y: int = Field(ge=0)


class Panel(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: int
    type: Literal["timeseries", "stat", "gauge", "table", "bargauge"]
    title: str
    gridPos: GridPos  # noqa: N815
    targets: list[Target] = Field(min_length=1)


class Dashboard(BaseModel):
    model_config = ConfigDict(extra="allow")

    uid: str
    title: str
    schemaVersion: int = Field(ge=36)  # noqa: N815
    panels: list[Panel] = Field(min_length=1)


def _selectors(expr: str) -> list[promql_parser.VectorSelector]:
    """The metric selectors of a PromQL expression; ValueError if it does not parse."""
    found: list[promql_parser.VectorSelector] = []

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def _rules() -> RuleFile:
    return RuleFile.model_validate(yaml.safe_load((MONITORING / "alerts.yaml").read_text()))


def _dashboard() -> Dashboard:
    return Dashboard.model_validate(json.loads((MONITORING / "dashboard.json").read_text()))


def _expressions() -> list[str]:
    rules = [rule.expr for group in _rules().groups for rule in group.rules]
    return rules + [t.expr for panel in _dashboard().panels for t in panel.targets]


def test_the_alert_rules_and_the_dashboard_are_well_formed() -> None:
    rules = [rule for group in _rules().groups for rule in group.rules]
    assert len({rule.alert for rule in rules}) == len(rules), "alert names repeat"
    wanted = {
        "RopEscalationRaised",
        "RopDeliveryFailed",
        "RopPathwaysRecordingStalled",
        "RopWorkflowTaskFailing",
        "RopWorkerDown",
        "RopScheduleToStartLatencyHigh",
    }
    assert wanted <= {rule.alert for rule in rules}
    for rule in rules:
        assert _selectors(rule.expr), rule.alert
    dashboard = _dashboard()
    assert len({panel.id for panel in dashboard.panels}) == len(dashboard.panels)
    for panel in dashboard.panels:
        assert panel.gridPos.x + panel.gridPos.w <= 24, panel.title
        assert len({t.refId for t in panel.targets}) == len(panel.targets), panel.title
        for target in panel.targets:
            assert _selectors(target.expr), panel.title
    scrape = yaml.safe_load((MONITORING / "prometheus.yaml").read_text())
    assert scrape["rule_files"] == ["alerts.yaml"]
    assert {job["job_name"] for job in scrape["scrape_configs"]} == {"rop-worker", "rop-api"}


def test_a_malformed_rule_is_caught() -> None:
    with pytest.raises(ValueError, match="unclosed left parenthesis"):
        _selectors("sum(rate(rop_deliveries_total[5m])")
    with pytest.raises(ValidationError):
        Rule.model_validate({"alert": "RopX", "expr": "up", "for": "ten minutes", "labels": {}})


async def test_every_metric_and_label_the_rules_and_dashboard_name_is_served(
    worker_scrape: WorkerScrape, dev_server: WorkflowEnvironment
) -> None:
    port = free_port()
    runtime = prometheus_runtime(f"127.0.0.1:{port}")
    await PathwayGauges(dev_server.client, runtime.metric_meter).refresh()
    gauges = await _scrape(f"http://127.0.0.1:{port}/metrics")
    app = create_app(without_connections)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api.local"
    ) as http:
        await http.get("/health")
        api_text = (await http.get("/metrics")).text
    samples = (
        worker_scrape.samples
        + gauges
        + [s for family in text_string_to_metric_families(api_text) for s in family.samples]
    )
    served: dict[str, set[tuple[str, str]]] = {}
    for sample in samples:
        served.setdefault(sample.name, set()).update(sample.labels.items())
    missing = []
    for expr in _expressions():
        for selector in _selectors(expr):
            if selector.name in NOT_IN_A_HEALTHY_SCRAPE:
                continue
            if selector.name not in served:
                missing.append(selector.name)
                continue
            for matcher in selector.matchers.matchers:
                if matcher.op == promql_parser.MatchOp.Equal:
                    pair = (matcher.name, matcher.value)
                    if pair not in served[selector.name] and matcher.name != "job":
                        missing.append(f"{selector.name}{{{matcher.name}={matcher.value!r}}}")
    assert missing == [], missing
