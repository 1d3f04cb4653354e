"""The rop-forlop worker: runs the pathway workflow and its activities on task queue `rop-forlop`.

Run it with `rop worker`, after `rop db migrate`: it refuses to poll while the record
database has migrations pending, so it never runs activities against an older schema, and
it needs a login that is only a member of `rop_worker`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx
import structlog
from opentelemetry.sdk.trace import TracerProvider
from pydantic import ValidationError
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
)
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import Worker, WorkerDeploymentConfig

from activities.database import WORKER_ROLE, MigrationsPending, open_records
from activities.delivery import DeliveryActivities
from activities.reconcile import ReconcileActivities
from activities.records import RecordActivities
from activities.subscriptions import SubscriptionActivities
from rop_domain.routing import RoutingTable
from rop_runtime.client import TemporalConfigError, connect
from rop_runtime.codec import KeyConfigurationError
from rop_runtime.delivery_setup import build_delivery
from rop_runtime.logs import configure_logging
from rop_runtime.metrics import PathwayGauges, prometheus_runtime
from rop_runtime.settings import RopSettings
from rop_runtime.stopping import stop_on_signals
from rop_runtime.tracing import TracingConfigError, client_interceptors, provider_from_environment
from rop_runtime.validation import one_line
from workflows.pathway import RopPathway
from workflows.reconcile import RECONCILE_WORKFLOW, RopReconcile
from workflows.sandbox import runner_name, workflow_runner
from workflows.subscription import RopSubscription

log = structlog.get_logger(__name__)

DRAIN_SECONDS = 20
"""How long a stopping worker lets its running activities finish: below Kubernetes'
default grace period (30 s), so a rollout never kills a worker mid-delivery."""

MIB_PER_CACHED_PATHWAY = 0.3
"""Memory of one pathway in the worker's cache (measured: 0.285 MiB)."""


def cache_size_for_memory(share: float = 0.25, most: int = 20_000) -> int:
    """How many pathways to keep cached: a quarter of the machine's memory, at most `most`.

    A pathway evicted from the cache is rebuilt from its history at its next task, so a
    cache smaller than the open pathways costs CPU for every timer that fires.
    """
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(100, min(most, int(total * share / (MIB_PER_CACHED_PATHWAY * 2**20))))


@dataclass(frozen=True)
class WorkerTuning:
    """How much one worker process takes on at once.

    Workflow tasks and the record service's local activities share one event loop, so a
    worker that takes more than its CPU can turn round lets started tasks wait past their
    timeout; tasks it has not taken wait at the server, where waiting is harmless. The
    defaults (`RopSettings`) suit two cores; measure with `make storm` before changing them.
    """

    workflow_task_slots: int
    local_activity_slots: int
    cached_workflows: int
    """0: sized to memory (`cache_size_for_memory`)."""
    sandboxed: bool = False
    """Run workflow code in Temporal's sandbox (`workflows.sandbox` says why not by default)."""

    @classmethod
    def from_settings(cls, settings: RopSettings) -> WorkerTuning:
        return cls(
            workflow_task_slots=settings.worker_workflow_task_slots,
            local_activity_slots=settings.worker_local_activity_slots,
            cached_workflows=settings.worker_cached_workflows,
            sandboxed=settings.worker_sandbox,
        )


def deployment_version(settings: RopSettings) -> WorkerDeploymentVersion | None:
    """The worker deployment version `ROP_WORKER_DEPLOYMENT_NAME` and `ROP_WORKER_BUILD_ID`
    name; None: worker versioning is off."""
    if settings.worker_deployment_name is None or settings.worker_build_id is None:
        return None
    return WorkerDeploymentVersion(settings.worker_deployment_name, settings.worker_build_id)


def versioned(version: WorkerDeploymentVersion) -> WorkerDeploymentConfig:
    """Worker versioning with pathways pinned: a pathway stays on the version it started on
    until an operator moves it forward (deploy/README, "Rolling out new workflow code"), so
    a faulty new version reaches only pathways started on it, and rolling back never asks
    old code to replay what new code wrote."""
    return WorkerDeploymentConfig(
        version=version,
        use_worker_versioning=True,
        default_versioning_behavior=VersioningBehavior.PINNED,
    )


def build_worker(
    client: Client,
    pool: asyncpg.Pool,
    task_queue: str,
    delivery: DeliveryActivities | None = None,
    tuning: WorkerTuning | None = None,
    version: WorkerDeploymentVersion | None = None,
    pathway: type[RopPathway] = RopPathway,
    drain: timedelta = timedelta(0),
    subscriptions: SubscriptionActivities | None = None,
) -> Worker:
    """A worker with every workflow and activity of the pathway, its activities bound to `pool`.

    Without `delivery`, tasks stay on the task list (no e-mail or webhook is configured).
    With `version`, the worker is that worker deployment version (`versioned`); `pathway` is
    the workflow class (a later version's, in the rollout test). `drain`: how long a
    shutdown waits for running activities before it cancels them.
    """
    tuning = tuning or WorkerTuning.from_settings(RopSettings())
    delivery = delivery or DeliveryActivities(pool, RoutingTable(email_unrouted_addresses=False))
    records = RecordActivities(pool, delivery.routing)
    reconciliation = ReconcileActivities(client, pool)
    subscriptions = subscriptions or SubscriptionActivities(
        pool, delivery.webhook, RopSettings().fhir_base_url
    )
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[pathway, RopReconcile, RopSubscription],
        workflow_runner=workflow_runner(tuning.sandboxed),
        activities=[
            records.open_pathway,
            records.record_step,
            records.find_unit_leader,
            delivery.deliver,
            delivery.give_up,
            reconciliation.reconcile_records,
            subscriptions.handshake,
            subscriptions.notify,
            subscriptions.failed,
        ],
        max_concurrent_workflow_tasks=tuning.workflow_task_slots,
        max_concurrent_local_activities=tuning.local_activity_slots,
        max_cached_workflows=tuning.cached_workflows or cache_size_for_memory(),
        deployment_config=versioned(version) if version else None,
        graceful_shutdown_timeout=drain,
    )


async def run_worker(settings: RopSettings, database_url: str, stop: asyncio.Event) -> None:
    """Run the worker until `stop` is set, on a record database whose schema is current."""
    pool = await open_records(database_url, WORKER_ROLE, migrate_first=settings.migrate_on_start)
    tracing = provider_from_environment("rop-worker")
    try:
        async with (
            observed_client(settings, tracing) as client,
            httpx.AsyncClient(timeout=20.0) as http,
            build_worker(
                client,
                pool,
                settings.task_queue,
                delivery := build_delivery(settings, pool, http),
                WorkerTuning.from_settings(settings),
                deployment_version(settings),
                drain=timedelta(seconds=DRAIN_SECONDS),
                subscriptions=SubscriptionActivities(
                    pool,
                    delivery.webhook,
                    settings.fhir_base_url,
                    wait=timedelta(seconds=settings.subscription_wait_seconds),
                ),
            ),
        ):
            await ensure_nightly_check(client, settings.task_queue)
            ready = _readiness(settings.worker_ready_file)
            log.info(
                "worker polling",
                task_queue=settings.task_queue,
                workflow_runner=runner_name(settings.worker_sandbox),
                version=settings.worker_build_id,
                metrics=(
                    f"http://{settings.worker_metrics_address}/metrics"
                    if settings.worker_metrics_address
                    else None
                ),
            )
            try:
                await stop.wait()
            finally:
                if ready is not None:
                    ready.unlink(missing_ok=True)
    finally:
        await pool.close()
        if tracing is not None:
            tracing.shutdown()


def nightly_schedule(task_queue: str) -> str:
    """The id of the Schedule that checks the pathways of one task queue every night."""
    return f"rop-reconcile-nightly-{task_queue}"


NIGHTLY_AT = (2, 30)
"""When the nightly reconciliation runs, Norwegian time (hour, minute): after the backups."""


async def ensure_nightly_check(client: Client, task_queue: str) -> bool:
    """Create the Schedule that runs the reconciliation every night, once: a worker's start
    makes it where it is missing, and leaves one that exists (an operator may have paused
    it). True if this call created it."""
    hour, minute = NIGHTLY_AT
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            RECONCILE_WORKFLOW,
            id=f"{nightly_schedule(task_queue)}-run",
            task_queue=task_queue,
        ),
        spec=ScheduleSpec(
            calendars=[
                ScheduleCalendarSpec(hour=[ScheduleRange(hour)], minute=[ScheduleRange(minute)])
            ],
            time_zone_name="Europe/Oslo",
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    try:
        await client.create_schedule(nightly_schedule(task_queue), schedule)
    except ScheduleAlreadyRunningError:
        return False
    log.info(
        "nightly reconciliation scheduled",
        schedule=nightly_schedule(task_queue),
        at=f"{hour}:{minute:02d}",
    )
    return True


def _readiness(path: Path | None) -> Path | None:
    """Say the worker polls: the file a readiness probe looks for (`rop_runtime.healthcheck`)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("polling\n", encoding="utf-8")
    return path


@contextlib.asynccontextmanager
async def observed_client(
    settings: RopSettings, tracing: TracerProvider | None
) -> AsyncIterator[Client]:
    """The worker's Temporal client: traced by `tracing`, and with
    `ROP_WORKER_METRICS_ADDRESS` its metrics endpoint and the pathway gauges beside it.
    `rop worker` and the local stack both run their worker on it."""
    address = settings.worker_metrics_address
    runtime = prometheus_runtime(address) if address else None
    client = await connect(settings, runtime=runtime, interceptors=client_interceptors(tracing))
    if runtime is None:
        yield client
        return
    every = timedelta(seconds=settings.metrics_refresh_seconds)
    async with PathwayGauges(client, runtime.metric_meter, every).running():
        yield client


def main() -> None:
    """Entry point of `rop worker`: needs DATABASE_URL and a reachable Temporal server."""
    try:
        settings = RopSettings()
    except ValidationError as error:
        raise SystemExit(f"error: invalid settings: {one_line(error)}") from None
    configure_logging(settings.log_format)
    if not settings.database_url:
        raise SystemExit(
            "error: set DATABASE_URL for the worker (or use `make run` for a local stack)"
        )
    try:
        asyncio.run(_run_until_stopped(settings, settings.database_url))
    except (
        KeyConfigurationError,
        MigrationsPending,
        TemporalConfigError,
        TracingConfigError,
        ConnectionError,
    ) as error:
        raise SystemExit(f"error: {error}") from None
    log.info("worker stopped")


async def _run_until_stopped(settings: RopSettings, database_url: str) -> None:
    """Run the worker until SIGTERM or SIGINT, then drain (`DRAIN_SECONDS`) and return."""
    stop = asyncio.Event()
    stop_on_signals(stop)
    await run_worker(settings, database_url, stop)


if __name__ == "__main__":
    main()
