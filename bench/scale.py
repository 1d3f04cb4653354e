"""`make bench-scale`: rop-forlop scaled out on one machine, as a cluster runs it.

Two HTTP API processes and one, then two, worker processes against one Temporal dev server
and one PostgreSQL. Benchmark pathways (those of `make bench`: a referral and six steps)
go through the two APIs in turn, as a load balancer would send them. Three phases:

1. one worker: pathways/s;
2. two workers: pathways/s, and how many workflow tasks each worker completed (both take
   work: the task queue hands tasks to whichever polls);
3. two workers, one killed (SIGKILL) a third of the way through: every pathway still
   closes on the other worker, and none of its steps is written twice.

A client that loses its answer to a step sends it again with the same Idempotency-Key, as
clients of the API should; the retries are counted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import os
import secrets
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import httpx
import psutil
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus

from bench.pathways import (
    BENCH_KEYS,
    OURS_QUEUE,
    bench_referral,
    bench_steps,
    cpu_seconds,
    drive,
    duplicate_steps,
    local_servers,
    temporal_server_process,
    worker_process,
)
from rop_domain.steps import STEPS
from starter.api.auth import KeyHolder, Role, write_tokens_file
from tests.channel_servers import free_port

T = TypeVar("T")
HTTP_PATHS = {step.name: step.http_path for step in STEPS}


class Driver:
    """Drives benchmark pathways through the APIs in turn; counts the retries."""

    def __init__(self, http: httpx.AsyncClient, apis: list[str], mark: int = 0) -> None:
        self._http = http
        self._apis = apis
        self._turn = 0
        self._mark = mark
        self.retries = 0
        self.closed = 0
        self.marked = asyncio.Event()
        """Set when `mark` pathways have closed."""

    async def pathway(self) -> str:
        self._turn += 1
        api = self._apis[self._turn % len(self._apis)]
        now = datetime.now(UTC)
        submitted = await self._post(f"{api}/referrals", bench_referral(now), 201)
        workflow_id = str(submitted["workflow_id"])
        for name, body in bench_steps(now):
            path = f"{api}/pathways/{workflow_id}/{HTTP_PATHS[name]}"
            await self._post(path, body.model_dump(mode="json"), 200)
        self.closed += 1
        if self.closed == self._mark:
            self.marked.set()
        return workflow_id

    async def _post(self, url: str, body: object, expected: int) -> dict[str, object]:
        """POST once per Idempotency-Key, sending again while the answer is lost."""
        key = str(uuid.uuid4())
        for attempt in range(10):
            try:
                response = await self._http.post(url, json=body, headers={"Idempotency-Key": key})
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == expected:
                answer: dict[str, object] = response.json()
                return answer
            if response is not None and response.status_code < 500:
                raise RuntimeError(f"{url}: {response.status_code} {response.text}")
            self.retries += 1
            await asyncio.sleep(0.5 * (attempt + 1))
        raise RuntimeError(f"{url}: no answer after 10 tries")


@contextlib.asynccontextmanager
async def api_processes(
    count: int, address: str, database_url: str, folder: Path
) -> AsyncIterator[tuple[list[str], str, list[psutil.Process]]]:
    """`count` `rop api` processes on ports of their own, sharing one system key; yield
    their base URLs, the key and the processes."""
    token = secrets.token_urlsafe(24)
    tokens_file = folder / "api-tokens.json"
    write_tokens_file(tokens_file, {token: KeyHolder("bench", Role.SYSTEM)})
    [(key_id, key)] = BENCH_KEYS.items()  # the workers' payload key
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "ROP_TEMPORAL_ADDRESS": address,
        "ROP_TASK_QUEUE": OURS_QUEUE,
        "ROP_API_TOKENS_FILE": str(tokens_file),
        "ROP_PAYLOAD_KEYS": f"{key_id}:{base64.b64encode(key).decode()}",
        "ROP_DATA_DIR": str(folder),
        "ROP_LOG_FORMAT": "json",
    }
    ports = [free_port() for _ in range(count)]
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "starter.cli", "api", "--port", str(port),
            env=environment, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        for port in ports
    ]  # fmt: skip
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        async with httpx.AsyncClient() as http:
            for url in urls:
                await _until_healthy(http, url)
        yield urls, token, [psutil.Process(process.pid) for process in processes]
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            await process.wait()


async def _until_healthy(http: httpx.AsyncClient, url: str) -> None:
    for _ in range(150):
        with contextlib.suppress(httpx.TransportError):
            if (await http.get(f"{url}/health")).status_code == 200:
                return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the API at {url} did not start")


async def tasks_by_worker(client: Client, workflow_ids: list[str]) -> collections.Counter[str]:
    """Workflow tasks completed per worker identity (pid@host), over the pathways' histories."""
    counts: collections.Counter[str] = collections.Counter()
    for workflow_id in workflow_ids:
        async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                counts[event.workflow_task_completed_event_attributes.identity] += 1
    return counts


async def not_completed(client: Client, workflow_ids: list[str]) -> int:
    """Pathways whose workflow has not completed (lost or stuck)."""
    statuses = [
        (await client.get_workflow_handle(workflow_id).describe()).status
        for workflow_id in workflow_ids
    ]
    return sum(status != WorkflowExecutionStatus.COMPLETED for status in statuses)


async def cpu_per_pathway(
    processes: dict[str, list[psutil.Process]], count: int, phase: Awaitable[T]
) -> tuple[T, str]:
    """Await `phase` (`count` pathways); its result and the CPU each group of processes
    spent per pathway meanwhile: on one machine they share its cores."""
    before = {name: sum(map(cpu_seconds, group)) for name, group in processes.items()}
    result = await phase
    spent = ", ".join(
        f"{name} {(sum(map(cpu_seconds, group)) - before[name]) / count * 1000:.0f} ms"
        for name, group in processes.items()
    )
    return result, f"CPU per pathway: {spent}"


def share(counts: collections.Counter[str], worker: psutil.Process) -> int:
    return sum(n for identity, n in counts.items() if identity.startswith(f"{worker.pid}@"))


async def main(count: int, concurrency: int) -> None:
    async with local_servers("scale") as (client, database_url):
        address = client.service_client.config.target_host
        with tempfile.TemporaryDirectory(prefix="rop-scale-") as folder:
            async with (
                api_processes(2, address, database_url, Path(folder)) as (apis, token, api_pids),
                httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http,
            ):
                await run_phases(
                    client, http, apis, api_pids, address, database_url, count, concurrency
                )
        print(f"duplicate steps (all phases): {await duplicate_steps(database_url)}")


async def run_phases(
    client: Client,
    http: httpx.AsyncClient,
    apis: list[str],
    api_pids: list[psutil.Process],
    address: str,
    database_url: str,
    count: int,
    concurrency: int,
) -> None:
    print(
        f"{count} pathways per phase through {len(apis)} API processes, concurrency {concurrency}"
    )
    one = Driver(http, apis)
    servers = {"Temporal": [temporal_server_process()], "APIs": api_pids}
    async with worker_process("bench.pathways", address, database_url) as worker:
        await drive(4, 4, one.pathway)  # warm up
        (seconds, _), cpu = await cpu_per_pathway(
            {"worker": [worker], **servers}, count, drive(count, concurrency, one.pathway)
        )
    rate_one = count / seconds
    print(f"1 worker : {rate_one:.2f} pathways/s; {cpu}")

    two = Driver(http, apis)
    async with (
        worker_process("bench.pathways", address, database_url) as first,
        worker_process("bench.pathways", address, database_url) as second,
    ):
        (seconds, ids), cpu = await cpu_per_pathway(
            {"workers": [first, second], **servers}, count, drive(count, concurrency, two.pathway)
        )
    rate_two = count / seconds
    counts = await tasks_by_worker(client, ids)
    print(
        f"2 workers: {rate_two:.2f} pathways/s ({rate_two / rate_one:.2f} x one worker); {cpu}; "
        f"workflow tasks completed: {share(counts, first)} by one, {share(counts, second)} "
        "by the other"
    )
    print(f"machine: {psutil.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")

    killed = Driver(http, apis, mark=count // 3)
    async with (
        worker_process("bench.pathways", address, database_url) as victim,
        worker_process("bench.pathways", address, database_url),
    ):
        running = asyncio.create_task(drive(count, concurrency, killed.pathway))
        await killed.marked.wait()
        victim.kill()
        closed_before = killed.closed
        seconds, ids = await running
    print(
        f"kill -9 of one of two workers after {closed_before} of {count} pathways closed: "
        f"all done in {seconds:.1f} s; pathways not completed: {await not_completed(client, ids)}; "
        f"steps sent again after a lost answer: {killed.retries}"
    )


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pathways", type=int, default=60, help="pathways per phase")
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.pathways, args.concurrency))


if __name__ == "__main__":
    cli()
