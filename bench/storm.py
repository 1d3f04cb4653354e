"""`make storm N=1000`: N pathways whose meeting deadline passed before they started.

A benchmark, not a test. Each pathway, as it starts, owes its reminder and its
escalation at once: a deadline storm. The worker runs in a process of its own with the
settings of `rop worker` (`ROP_WORKER_*`), against the local dev server and PostgreSQL.
It prints the time from the last start to the last escalation row, the workflow-task
timeouts in the pathways' histories, the worker's CPU time and peak RSS, and the load
average. `--busy K` runs K CPU-bound processes beside it for the whole storm.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import psutil
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from activities.database import WORKER_ROLE, create_pool
from bench.pathways import (
    BENCH_CODEC,
    PeakRss,
    local_servers,
    worker_process,
    worker_process_arguments,
)
from rop_domain.models import ValidationPolicy, parse_referral
from rop_runtime.client import data_converter
from rop_runtime.settings import RopSettings
from starter.pathways import Pathways
from worker import WorkerTuning, build_worker

QUEUE = "rop-storm"
LATE_BY = timedelta(days=30)
"""How long before its start each referral was received: its deadline has passed."""


def referral(now: datetime) -> dict[str, object]:
    return {
        "referral_id": f"STORM-{uuid.uuid4().hex[:12]}",
        "received_at": (now - LATE_BY).isoformat(),
        "source": "fastlege",
        "referrer": "9000001",
        "receiving_unit": "TSB",
        "health_trust": "helse-bergen",
        "municipality": "4601",
        "responsible_clinician": "9000123",
        "general_practitioner": "9000001",
        "patient": {"reference": "storm"},
    }


@contextlib.contextmanager
def busy_processes(count: int) -> Iterator[None]:
    """`count` processes that keep a core busy each, as other work on the machine would."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


async def start_all(pathways: Pathways, count: int, concurrency: int) -> float:
    """Start `count` pathways; return the monotonic time the last start returned."""
    gate = asyncio.Semaphore(concurrency)
    policy = ValidationPolicy()

    async def one() -> None:
        async with gate:
            await pathways.submit(parse_referral(referral(datetime.now(UTC)), policy))

    await asyncio.gather(*(one() for _ in range(count)))
    return time.monotonic()


async def escalations_done(pool: asyncpg.Pool, count: int, last_start: float) -> float:
    """Wait until every pathway's escalation row is written; seconds from the last start."""
    while True:
        written = await pool.fetchval(
            "SELECT count(*) FROM pathway_events WHERE kind = 'meeting-overdue'"
        )
        if written >= count:
            return time.monotonic() - last_start
        await asyncio.sleep(0.2)


async def task_timeouts(client: Client, workflow_ids: list[str]) -> int:
    """Workflow-task timeouts in the pathways' histories."""
    gate = asyncio.Semaphore(20)

    async def timeouts(workflow_id: str) -> int:
        async with gate:
            history = await client.get_workflow_handle(workflow_id).fetch_history()
        return sum(
            1
            for event in history.events
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT
        )

    return sum(await asyncio.gather(*(timeouts(w) for w in workflow_ids)))


async def main(count: int, busy: int, concurrency: int) -> None:
    async with local_servers("storm", server_log_level="error") as (client, database_url):
        address = client.service_client.config.target_host
        pool = await create_pool(database_url)
        try:
            async with worker_process("bench.storm", address, database_url) as worker:
                await storm(client, pool, worker, RopSettings(), count, busy, concurrency)
        finally:
            await pool.close()


async def storm(
    client: Client,
    pool: asyncpg.Pool,
    worker: psutil.Process,
    settings: RopSettings,
    count: int,
    busy: int,
    concurrency: int,
) -> None:
    pathways = Pathways(
        client,
        task_queue=QUEUE,
        workflow_task_timeout=timedelta(seconds=settings.workflow_task_timeout_seconds),
    )
    rss = PeakRss(worker)
    sampling = asyncio.create_task(rss.run())
    cpu_before = worker.cpu_times()
    with busy_processes(busy):
        began = time.monotonic()
        last_start = await start_all(pathways, count, concurrency)
        seconds = await escalations_done(pool, count, last_start)
        load = os.getloadavg()
    cpu_after = worker.cpu_times()
    sampling.cancel()
    cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    ids = [row["workflow_id"] for row in await pool.fetch("SELECT workflow_id FROM pathways")]
    timeouts = await task_timeouts(client, ids)
    tuning = WorkerTuning.from_settings(settings)
    print(
        f"storm: {count} pathways past their meeting deadline, {busy} busy processes beside "
        f"the worker; worker slots {tuning.workflow_task_slots} workflow tasks / "
        f"{tuning.local_activity_slots} local activities, cache {tuning.cached_workflows or 'by memory'}, "
        f"workflow-task timeout {settings.workflow_task_timeout_seconds} s"
    )
    print(f"starts: {last_start - began:.1f} s for {count}")
    print(f"last start to last escalation row: {seconds:.1f} s")
    print(f"workflow-task timeouts: {timeouts}")
    print(
        f"worker CPU: {cpu:.1f} s ({cpu / count * 1000:.0f} ms per pathway), "
        f"peak RSS {rss.peak / 2**20:.0f} MiB"
    )
    print(f"load average (1, 5, 15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


async def serve_worker(address: str, database_url: str) -> None:
    """The worker process, tuned by the `ROP_WORKER_*` settings, until SIGTERM."""
    settings = RopSettings()
    client = await Client.connect(address, data_converter=data_converter(BENCH_CODEC))
    pool = await create_pool(database_url, role=WORKER_ROLE)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with build_worker(client, pool, QUEUE, tuning=WorkerTuning.from_settings(settings)):
        print("ready", flush=True)
        await stop.wait()
    await pool.close()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pathways", type=int, default=1000)
    parser.add_argument("--busy", type=int, default=0, help="CPU-bound processes beside it")
    parser.add_argument("--concurrency", type=int, default=50, help="starts at once")
    worker_process_arguments(parser)
    args = parser.parse_args()
    if args.serve_workers:
        asyncio.run(serve_worker(args.address, args.database_url))
    else:
        asyncio.run(main(args.pathways, args.busy, args.concurrency))


if __name__ == "__main__":
    cli()
