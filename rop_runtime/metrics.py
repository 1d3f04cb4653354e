"""The worker's metrics, in Prometheus format: the SDK's own and the pathway's.

One endpoint per worker process (`ROP_WORKER_METRICS_ADDRESS`, e.g. `0.0.0.0:9464`),
served by the SDK's core from the process's `Runtime`:

- the SDK's runtime metrics, prefixed `temporal_`: task slots, schedule-to-start latency,
  the sticky cache, workflow-task failures, activity outcomes;
- the pathway's (`rop_`), counted where they happen: steps by Update and outcome
  (`workflows.metrics`), reminders and escalations raised, deliveries by channel and
  outcome, the record service's step latency (`activities`);
- pathway gauges from Temporal's visibility (`PathwayGauges`): how many pathways run, are
  overdue, have failed deliveries, or have stalled recording. Every worker reports the same
  counts; read them with `max`.

Labels are kinds, channels and outcomes: never an id, a name or a number that points at a
patient or a clinician (tests/test_metrics.py checks the whole exposition).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import structlog
from temporalio.client import Client
from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

log = structlog.get_logger(__name__)


RECORD_STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Seconds: a step's record takes milliseconds, so the SDK's default buckets (from 50 ms)
would put every one in the first."""


def prometheus_runtime(bind_address: str) -> Runtime:
    """A runtime whose metrics (the SDK's and those the workflow and activities add) are
    served at `http://<bind_address>/metrics`, with Prometheus' naming conventions."""
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=bind_address,
                counters_total_suffix=True,
                durations_as_seconds=True,
                histogram_bucket_overrides={"rop_record_step_seconds": RECORD_STEP_BUCKETS},
            )
        )
    )


@dataclass(frozen=True)
class GaugeQuery:
    state: str
    query: str


RUNNING = 'WorkflowType = "RopPathway" AND ExecutionStatus = "Running"'

PATHWAY_GAUGES = (
    GaugeQuery("running", RUNNING),
    GaugeQuery("overdue", f"{RUNNING} AND RopOverdue = true"),
    GaugeQuery("delivery_failed", f"{RUNNING} AND RopDeliveryFailed > 0"),
    GaugeQuery("recording_stalled", f'{RUNNING} AND RopStalled = "recording"'),
    GaugeQuery("record_behind", f'{RUNNING} AND RopStalled = "record-behind"'),
)
"""`rop_pathways{state=...}`: what operators alert on across all pathways."""


class PathwayGauges:
    """Counts pathways by state from Temporal's visibility, every `every`."""

    def __init__(
        self, client: Client, meter: MetricMeter, every: timedelta = timedelta(seconds=30)
    ) -> None:
        self._client = client
        self._every = every
        self._gauge = meter.create_gauge(
            "rop_pathways", "running pathways by state (from visibility; read with max)"
        )

    async def refresh(self) -> dict[str, int]:
        """Count once and set the gauges; the counts, by state."""
        counts: dict[str, int] = {}
        for gauge in PATHWAY_GAUGES:
            counts[gauge.state] = (await self._client.count_workflows(gauge.query)).count
            self._gauge.set(counts[gauge.state], {"state": gauge.state})
        return counts

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as error:  # visibility down: try again, say so
                log.warning("pathway gauges not refreshed", error=str(error))
            await asyncio.sleep(self._every.total_seconds())

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        task = asyncio.create_task(self.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
