"""`make footprint`: what one benchmark pathway leaves behind, for deploy/README's capacity
plan: Temporal history events and bytes, PostgreSQL rows and bytes per table, and the
worker's CPU per step.

N pathways of `make bench` (a referral and six steps: assessment, invite, meeting, crisis
plan, a review, closure) run on the local dev server and PostgreSQL; the figures are per
pathway and per step, the PostgreSQL bytes those of each table with its indexes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from datetime import UTC, datetime

import asyncpg
from temporalio.client import Client

from activities.database import create_pool
from bench.pathways import (
    OURS_QUEUE,
    Timer,
    bench_steps,
    cpu_seconds,
    drive,
    local_servers,
    one_pathway,
    worker_process,
)
from starter.pathways import Pathways

RECORD_TABLES = ("pathways", "pathway_events", "tasks", "deliveries")
"""The tables that grow with pathways (the others hold directories and the access log)."""


async def history_sizes(client: Client, workflow_ids: list[str]) -> tuple[list[int], list[int]]:
    """(events, bytes) of each pathway's latest run: a benchmark pathway is one run
    (`make bench` prints its runs' events)."""
    events, sizes = [], []
    for workflow_id in workflow_ids:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        events.append(len(history.events))
        sizes.append(sum(event.ByteSize() for event in history.events))
    return events, sizes


async def main(count: int) -> None:
    steps = 1 + len(list(bench_steps(datetime.now(UTC))))
    async with local_servers("footprint") as (client, database_url):
        address = client.service_client.config.target_host
        async with worker_process("bench.pathways", address, database_url) as worker:
            pathways = Pathways(client, task_queue=OURS_QUEUE)
            await drive(2, 2, lambda: one_pathway(pathways, Timer()))  # warm up
            pool = await create_pool(database_url)
            before = {t: await _table(pool, t) for t in RECORD_TABLES}
            cpu = cpu_seconds(worker)
            _, ids = await drive(count, 10, lambda: one_pathway(pathways, Timer()))
            cpu = cpu_seconds(worker) - cpu
            after = {t: await _table(pool, t) for t in RECORD_TABLES}
            await pool.close()
        events, sizes = await history_sizes(client, ids)
    print(f"{count} pathways of {steps} steps each (the referral and six steps)")
    print(
        f"worker CPU: {cpu / count * 1000:.0f} ms per pathway, {cpu / count / steps * 1000:.1f} ms per step"
    )
    print(
        f"Temporal history per pathway: median {statistics.median(events):g} events, "
        f"{statistics.median(sizes) / 1024:.1f} KiB (max {max(sizes) / 1024:.1f} KiB)"
    )
    for table in RECORD_TABLES:
        rows = (after[table][0] - before[table][0]) / count
        kib = (after[table][1] - before[table][1]) / count / 1024
        print(f"PostgreSQL {table}: {rows:.1f} rows, {kib:.1f} KiB per pathway")


async def _table(pool: asyncpg.Pool, table: str) -> tuple[int, int]:
    """(rows, bytes with indexes and TOAST) of `table` now."""
    rows: int = await pool.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608 (our constant)
    size: int = await pool.fetchval("SELECT pg_total_relation_size($1::regclass)", table)
    return rows, size


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pathways", type=int, default=200)
    asyncio.run(main(parser.parse_args().pathways))


if __name__ == "__main__":
    cli()
