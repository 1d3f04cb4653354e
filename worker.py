"""The rop-forlop worker: runs the pathway workflow and its activities on task queue `rop-forlop`.

Run it with `rop worker`. It applies pending database migrations before it polls,
so a deployment never runs activities against an older schema.
"""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import structlog
from temporalio.client import Client
from temporalio.worker import Worker

from activities.database import WORKER_ROLE, create_pool, migrate
from activities.delivery import DeliveryActivities
from activities.records import RecordActivities
from rop_domain.routing import RoutingTable
from starter.client import connect
from starter.codec import KeyConfigurationError
from starter.delivery_setup import build_delivery
from starter.logs import configure_logging
from starter.settings import RopSettings
from workflows.pathway import RopPathway
from workflows.sandbox import workflow_runner

log = structlog.get_logger(__name__)


def build_worker(
    client: Client,
    pool: asyncpg.Pool,
    task_queue: str,
    delivery: DeliveryActivities | None = None,
) -> Worker:
    """A worker with every workflow and activity of the pathway, its activities bound to `pool`.

    Without `delivery`, tasks stay on the task list (no e-mail or webhook is configured).
    """
    delivery = delivery or DeliveryActivities(pool, RoutingTable(email_unrouted_addresses=False))
    records = RecordActivities(pool, delivery.routing)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[RopPathway],
        workflow_runner=workflow_runner(),
        activities=[
            records.open_pathway,
            records.record_step,
            records.find_unit_leader,
            delivery.deliver,
            delivery.give_up,
        ],
    )


async def run_worker(settings: RopSettings, database_url: str, stop: asyncio.Event) -> None:
    """Migrate the database, then run the worker until `stop` is set."""
    owner = await create_pool(database_url)
    try:
        await migrate(owner)
    finally:
        await owner.close()
    pool = await create_pool(database_url, role=WORKER_ROLE)
    try:
        client = await connect(settings)
        async with (
            httpx.AsyncClient(timeout=20.0) as http,
            build_worker(client, pool, settings.task_queue, build_delivery(settings, pool, http)),
        ):
            log.info("worker polling", task_queue=settings.task_queue)
            await stop.wait()
    finally:
        await pool.close()


def main() -> None:
    """Entry point of `rop worker`: needs DATABASE_URL and a reachable Temporal server."""
    settings = RopSettings()
    configure_logging(settings.log_format)
    if not settings.database_url:
        raise SystemExit(
            "error: set DATABASE_URL for the worker (or use `make run` for a local stack)"
        )
    try:
        asyncio.run(run_worker(settings, settings.database_url, asyncio.Event()))
    except KeyConfigurationError as error:
        raise SystemExit(f"error: {error}") from None
    except KeyboardInterrupt:
        log.info("worker stopped")


if __name__ == "__main__":
    main()
