"""`make bench`: N full pathways against the local dev server and PostgreSQL, and a baseline.

Each pathway goes referral -> assessment -> invite -> meeting -> crisis plan -> one review
-> closure (six Updates). Three baselines run the same number of Updates on the same server
and workflow runner: each with a no-op regular activity; each with a no-op local activity
(the floor: the pathway records each step through a local activity); and each writing a row
to PostgreSQL through a local activity, with one more at the start (the recording floor: the
pathway's round trips to Temporal and to PostgreSQL, done the cheapest way). Each round runs
N of each kind, the one to go first rotating; the last lines are the throughput ratios to
each, the medians of the rounds' ratios (target: at least 0.75 to the floor, with Temporal
CPU per pathway within 1.3 times the floor's), with at most 150 history events per pathway
up to its first review (the first run's history), and the events by type per pathway on
each side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
from pydantic import BaseModel
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.contact_directory import load_directory
from activities.database import WORKER_ROLE, create_pool, migrate
from bench.baseline import (
    UPDATES_PER_PATHWAY,
    BaselinePathway,
    FloorPathway,
    RecordingFloorPathway,
    baseline_noop,
)
from bench.floor_record import TABLE as FLOOR_TABLE
from bench.floor_record import FloorRecord
from rop_domain.followup import (
    Closure,
    ClosureReason,
    CrisisPlan,
    IndividualPlanStatus,
    Measure,
    MeasureKind,
    MeetingOutcome,
    Provider,
    Review,
    ReviewOutcome,
)
from rop_domain.models import (
    Assessment,
    AssessmentDecision,
    MeetingInvite,
    Participant,
    ParticipantRole,
    ValidationPolicy,
    parse_referral,
)
from rop_domain.steps import StepName
from rop_runtime.client import data_converter
from rop_runtime.codec import EncryptionCodec
from rop_runtime.settings import RopSettings
from starter.local_stack import embedded_postgres, ensure_database, packaged_binary
from starter.pathways import Pathways
from worker import WorkerTuning, build_worker
from workflows import search_attributes
from workflows.sandbox import runner_name, workflow_runner

REPO_ROOT = Path(__file__).resolve().parent.parent
CONTACTS = REPO_ROOT / "deploy" / "seed" / "contact-points.example.json"
CLINICIAN = "9000123"


class Timer:
    """Collects Update latencies."""

    def __init__(self) -> None:
        self.latencies: list[float] = []

    async def __call__(self, call: Awaitable[Any]) -> Any:
        began = time.perf_counter()
        result = await call
        self.latencies.append(time.perf_counter() - began)
        return result


def bench_referral(now: datetime) -> dict[str, Any]:
    """A referral as the benchmark submits it (JSON, as the HTTP API takes it)."""
    return {
        "referral_id": f"BENCH-{uuid.uuid4().hex[:12]}",
        "received_at": now.isoformat(),
        "source": "fastlege",
        "referrer": "9000001",
        "receiving_unit": "TSB",
        "health_trust": "helse-bergen",
        "municipality": "4601",
        "responsible_clinician": CLINICIAN,
        "general_practitioner": "9000001",
        "patient": {"reference": "bench"},
    }


def bench_steps(now: datetime) -> Iterator[tuple[StepName, BaseModel]]:
    """The six steps of a benchmark pathway, each made when it is due (the meeting is held
    after its invite)."""
    yield (
        StepName.ASSESS,
        Assessment(assessor=CLINICIAN, decision=AssessmentDecision.IN_TARGET_GROUP, reason="bench"),
    )
    yield (
        StepName.INVITE_TO_MEETING,
        MeetingInvite(
            invited_by=CLINICIAN,
            meeting_at=now + timedelta(days=1),
            location="DPS",
            participants=[
                Participant(role=ParticipantRole.TSB, name="TSB", address="tsb@example.invalid")
            ],
            # Each recommended party not invited needs a reason (issue 13).
            absent_reasons={
                role: "bench"
                for role in (ParticipantRole.PHV, ParticipantRole.FASTLEGE, ParticipantRole.KOMMUNE)
            },
        ),
    )
    yield (
        StepName.RECORD_MEETING,
        MeetingOutcome(
            recorded_by=CLINICIAN,
            held_at=datetime.now(UTC),
            attendees=["TSB", "PHV"],
            koordinator=CLINICIAN,
            individual_plan=IndividualPlanStatus.ACCEPTED,
            crisis_plan_responsible=CLINICIAN,
            measures=[
                Measure(
                    id="poliklinikk",
                    kind=MeasureKind.OUTPATIENT,
                    provider=Provider.TSB,
                    responsible=CLINICIAN,
                ),
                Measure(
                    id="bolig",
                    kind=MeasureKind.MUNICIPAL_HOUSING,
                    provider=Provider.KOMMUNE,
                    responsible="kommune",
                    depends_on=["poliklinikk"],
                ),
            ],
        ),
    )
    yield (
        StepName.REGISTER_CRISIS_PLAN,
        CrisisPlan(
            registered_by=CLINICIAN,
            version=1,
            made_with_patient=True,
            relatives_involved=False,
            next_revision=now.date() + timedelta(days=90),
        ),
    )
    yield (
        StepName.COMPLETE_REVIEW,
        Review(reviewed_by=CLINICIAN, outcome=ReviewOutcome.CONTINUE),
    )
    yield StepName.CLOSE_PATHWAY, Closure(closed_by=CLINICIAN, reason=ClosureReason.COMPLETED)


async def one_pathway(pathways: Pathways, timer: Timer) -> str:
    """A whole benchmark pathway through the Python API, each step's Update timed."""
    now = datetime.now(UTC)
    referral = parse_referral(bench_referral(now), ValidationPolicy())
    workflow_id = (await pathways.submit(referral)).workflow_id
    for name, body in bench_steps(now):
        await timer(pathways.send(name, workflow_id, body))
    return workflow_id


async def one_baseline(
    client: Client,
    task_queue: str,
    timer: Timer,
    kind: type[BaselinePathway | FloorPathway | RecordingFloorPathway] = BaselinePathway,
) -> str:
    """A baseline of `kind`: its Updates run a no-op activity, regular or local, or write a
    row through a local activity."""
    handle = await client.start_workflow(
        kind.run, id=f"{kind.__name__.lower()}-{uuid.uuid4().hex}", task_queue=task_queue
    )
    for _ in range(UPDATES_PER_PATHWAY):
        await timer(handle.execute_update(kind.step))
    await handle.result()
    return handle.id


async def drive(
    count: int, concurrency: int, make: Callable[[], Awaitable[str]]
) -> tuple[float, list[str]]:
    """Run `count` of `make()`, at most `concurrency` at once; return seconds and ids."""
    gate = asyncio.Semaphore(concurrency)

    async def gated() -> str:
        async with gate:
            return await make()

    began = time.perf_counter()
    ids = await asyncio.gather(*(gated() for _ in range(count)))
    return time.perf_counter() - began, list(ids)


ROUNDS = 3


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def cpu_seconds(process: psutil.Process) -> float:
    """User and system CPU time of `process` so far."""
    times = process.cpu_times()
    return times.user + times.system


def database_cpu_seconds() -> float:
    """CPU time so far of the PostgreSQL server's processes (the postmaster's children, the
    pool's backends among them, live through the rounds: the pools keep their connections)."""
    total = 0.0
    for process in psutil.process_iter(["name"]):
        if process.info["name"] == "postgres":
            with contextlib.suppress(psutil.NoSuchProcess):
                total += cpu_seconds(process)
    return total


@dataclass
class Side:
    """What one kind of workflow (ours or the baseline) took, summed over the rounds."""

    timer: Timer = field(default_factory=Timer)
    rates: list[float] = field(default_factory=list)
    """Pathways per second, one per round."""
    pathways: int = 0
    seconds: float = 0.0
    worker_cpu: float = 0.0
    server_cpu: float = 0.0
    driver_cpu: float = 0.0
    """This process: the client's side of starts and Updates (answers decoded and parsed)."""
    database_cpu: float = 0.0
    ids: list[str] = field(default_factory=list)

    async def round(
        self,
        count: int,
        concurrency: int,
        make: Callable[[], Awaitable[str]],
        worker: psutil.Process,
        server: psutil.Process,
    ) -> list[str]:
        """Run `count` workflows and add what they took."""
        driver = psutil.Process()
        worker_before, server_before = cpu_seconds(worker), cpu_seconds(server)
        driver_before, database_before = cpu_seconds(driver), database_cpu_seconds()
        seconds, ids = await drive(count, concurrency, make)
        self.worker_cpu += cpu_seconds(worker) - worker_before
        self.server_cpu += cpu_seconds(server) - server_before
        self.driver_cpu += cpu_seconds(driver) - driver_before
        self.database_cpu += database_cpu_seconds() - database_before
        self.rates.append(count / seconds)
        self.pathways += count
        self.seconds += seconds
        self.ids += ids
        return ids

    def describe(self, name: str, events: float) -> str:
        ms = 1000
        return (
            f"{name}: {statistics.median(self.rates):.2f} pathways/s (median of rounds); "
            f"Update p50 {percentile(self.timer.latencies, 0.5) * ms:.0f} ms, "
            f"p99 {percentile(self.timer.latencies, 0.99) * ms:.0f} ms; CPU per pathway: "
            f"worker {self.worker_cpu / self.pathways * ms:.0f} ms, "
            f"Temporal {self.server_cpu / self.pathways * ms:.0f} ms, "
            f"PostgreSQL {self.database_cpu / self.pathways * ms:.0f} ms, "
            f"driver {self.driver_cpu / self.pathways * ms:.0f} ms; "
            f"history events per pathway {events:g}"
        )


async def events_by_type(client: Client, workflow_ids: list[str]) -> Counter[str]:
    """History events of the workflows' first runs by type, summed."""
    counted: Counter[str] = Counter()
    for workflow_id in workflow_ids:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        counted.update(EventType.Name(event.event_type) for event in history.events)
    return counted


def events_table(sides: dict[str, Counter[str]], pathways: int) -> str:
    """Events by type per pathway, a column per side, the types where they differ first."""
    types = sorted(
        {t for counted in sides.values() for t in counted},
        key=lambda t: (
            -abs(max(c[t] for c in sides.values()) - min(c[t] for c in sides.values())),
            t,
        ),
    )
    names = list(sides)
    lines = ["events by type per pathway: " + " | ".join(["type", *names])]
    for event_type in types:
        values = [f"{sides[name][event_type] / pathways:5.1f}" for name in names]
        lines.append(f"  {event_type.removeprefix('EVENT_TYPE_'):45s} " + " ".join(values))
    return "\n".join(lines)


async def first_run_events(client: Client, workflow_id: str) -> tuple[int, int]:
    """(events of the first run, events of all runs) of one pathway."""
    total, first = 0, 0
    run_id: str | None = ""
    handle = client.get_workflow_handle(workflow_id)
    history = await handle.fetch_history()
    # The latest run's history; earlier runs are found through its first event.
    runs = [history]
    start = history.events[0].workflow_execution_started_event_attributes
    while start.continued_execution_run_id:
        run_id = start.continued_execution_run_id
        earlier = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        runs.insert(0, earlier)
        start = earlier.events[0].workflow_execution_started_event_attributes
    first = len(runs[0].events)
    total = sum(len(r.events) for r in runs)
    return first, total


async def main(counts: list[int], concurrency: int, rounds: int) -> None:
    """Benchmark each N of `counts` in turn on the same servers and worker process."""
    medians: list[tuple[int, tuple[float, float, float]]] = []
    async with local_servers("bench") as (client, database_url):
        address = client.service_client.config.target_host
        async with worker_process("bench.pathways", address, database_url) as worker:
            for count in counts:
                medians.append(
                    (count, await run_benchmark(client, worker, count, concurrency, rounds))
                )
                print()
        print(f"duplicate steps: {await duplicate_steps(database_url)}")
    print(
        "ratio ours/regular-activity baseline: "
        + ", ".join(f"N={n} {ratios[0]:.2f}" for n, ratios in medians)
    )
    print(
        "ratio ours/local-activity floor: "
        + ", ".join(f"N={n} {ratios[1]:.2f}" for n, ratios in medians)
    )
    print(
        "ratio ours/recording floor: "
        + ", ".join(f"N={n} {ratios[2]:.2f}" for n, ratios in medians)
    )


async def duplicate_steps(database_url: str) -> int:
    """Steps written more than once for one pathway (each step of the bench is taken once)."""
    pool = await create_pool(database_url)
    try:
        duplicates: int = await pool.fetchval(
            """SELECT count(*) FROM (
                   SELECT workflow_id, kind FROM pathway_events
                   GROUP BY workflow_id, kind HAVING count(*) > 1) AS repeated"""
        )
    finally:
        await pool.close()
    return duplicates


def temporal_server_process() -> psutil.Process:
    """The dev server `local_servers` started (a child of this process)."""
    for child in psutil.Process().children(recursive=True):
        if child.name().startswith("temporal"):
            return child
    raise RuntimeError("no Temporal dev server among this process's children")


@contextlib.asynccontextmanager
async def local_servers(
    name: str, server_log_level: str = "warn"
) -> AsyncIterator[tuple[Client, str]]:
    """A migrated record database with the example directory (on `DATABASE_URL`'s server, or
    an embedded one) and a dev server; yield a client and the database's URL."""
    settings = RopSettings()
    with contextlib.ExitStack() as stack:
        if settings.database_url:
            server_url = settings.database_url
        else:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"rop-{name}-")))
            server_url = stack.enter_context(embedded_postgres(folder / "pg", keep_data=False))
        database_url = await ensure_database(server_url, f"rop_{name}_{uuid.uuid4().hex[:8]}")
        pool = await create_pool(database_url)
        await migrate(pool)
        await load_directory(pool, CONTACTS)
        await pool.execute(FLOOR_TABLE)
        await pool.close()
        env = await WorkflowEnvironment.start_local(
            data_converter=data_converter(BENCH_CODEC),
            dev_server_existing_path=packaged_binary("temporal"),
            search_attributes=search_attributes.ALL,
            dev_server_log_level=server_log_level,
            dev_server_startup_timeout=timedelta(seconds=30),
        )
        try:
            yield env.client, database_url
        finally:
            await env.shutdown()


@contextlib.asynccontextmanager
async def worker_process(
    module: str, address: str, database_url: str
) -> AsyncIterator[psutil.Process]:
    """The workers of benchmark `module` (its `--serve-workers`) in a process of their own,
    as in production: the driver's CPU and memory are not the worker's."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        "--serve-workers",
        "--address",
        address,
        "--database-url",
        database_url,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    ready = await asyncio.wait_for(process.stdout.readline(), timeout=60)
    if ready.strip() != b"ready":
        raise RuntimeError(f"{module} worker did not start: {ready!r}")
    try:
        yield psutil.Process(process.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):  # killed by the benchmark itself
            process.terminate()
        await process.wait()


def worker_process_arguments(parser: argparse.ArgumentParser) -> None:
    """The hidden options `worker_process` starts a benchmark module's workers with."""
    parser.add_argument("--serve-workers", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)


async def serve_workers(address: str, database_url: str) -> None:
    """The worker process: our worker and the baseline's, until SIGTERM."""
    client = await Client.connect(address, data_converter=data_converter(BENCH_CODEC))
    pool = await create_pool(database_url, role=WORKER_ROLE)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    # The baseline runs as our workflows do, in the sandbox or not (ROP_WORKER_SANDBOX).
    tuning = WorkerTuning.from_settings(RopSettings())
    baseline = Worker(
        client,
        task_queue=BASELINE_QUEUE,
        workflows=[BaselinePathway, FloorPathway, RecordingFloorPathway],
        activities=[baseline_noop, FloorRecord(pool).write],
        workflow_runner=workflow_runner(tuning.sandboxed),
    )
    async with build_worker(client, pool, OURS_QUEUE, tuning=tuning), baseline:
        print("ready", flush=True)
        await stop.wait()
    await pool.close()


class PeakRss:
    """Samples a process's resident memory while the benchmark runs."""

    def __init__(self, process: psutil.Process) -> None:
        self._process = process
        self.peak = 0

    async def run(self) -> None:
        while True:
            self.peak = max(self.peak, self._process.memory_info().rss)
            await asyncio.sleep(0.2)


OURS_QUEUE, BASELINE_QUEUE = "rop-bench", "rop-bench-baseline"
BENCH_KEYS = {"bench": bytes(32)}
BENCH_CODEC = EncryptionCodec(BENCH_KEYS, "bench")
"""Payloads are encrypted in the benchmark as in production; the key protects nothing here."""


async def run_benchmark(
    client: Client, worker: psutil.Process, count: int, concurrency: int, rounds: int
) -> tuple[float, float, float]:
    """Run `rounds` rounds of `count` pathways and of each baseline, the order rotating, print
    what they took, and return the median ratios to the regular-activity baseline, to the
    local-activity floor and to the recording floor."""
    pathways = Pathways(client, task_queue=OURS_QUEUE)
    server = temporal_server_process()
    rss = PeakRss(worker)
    sampling = asyncio.create_task(rss.run())
    warm = Timer()
    await drive(2, 2, lambda: one_pathway(pathways, warm))
    await drive(2, 2, lambda: one_baseline(client, BASELINE_QUEUE, warm))
    await drive(2, 2, lambda: one_baseline(client, BASELINE_QUEUE, warm, FloorPathway))
    await drive(2, 2, lambda: one_baseline(client, BASELINE_QUEUE, warm, RecordingFloorPathway))

    # Rounds of N of each kind, the first to go rotating, so that no side gains from its
    # place (a warmer server, a fuller database) and all see the same noise.
    ours, base, floor, recording = Side(), Side(), Side(), Side()
    to_base: list[float] = []
    to_floor: list[float] = []
    to_recording: list[float] = []
    for number in range(rounds):
        sides = [
            (ours, lambda: one_pathway(pathways, ours.timer)),
            (base, lambda: one_baseline(client, BASELINE_QUEUE, base.timer)),
            (floor, lambda: one_baseline(client, BASELINE_QUEUE, floor.timer, FloorPathway)),
            (
                recording,
                lambda: one_baseline(
                    client, BASELINE_QUEUE, recording.timer, RecordingFloorPathway
                ),
            ),
        ]
        turn = number % len(sides)
        for side, make in sides[turn:] + sides[:turn]:
            await side.round(count, concurrency, make, worker, server)
        to_base.append(ours.rates[-1] / base.rates[-1])
        to_floor.append(ours.rates[-1] / floor.rates[-1])
        to_recording.append(ours.rates[-1] / recording.rates[-1])
    sampling.cancel()
    load = os.getloadavg()
    events = [await first_run_events(client, workflow_id) for workflow_id in ours.ids]
    first, total = [e[0] for e in events], [e[1] for e in events]
    sample = min(count, 20)
    typed = {
        "ours": await events_by_type(client, ours.ids[:sample]),
        "floor": await events_by_type(client, floor.ids[:sample]),
        "regular": await events_by_type(client, base.ids[:sample]),
        "recording": await events_by_type(client, recording.ids[:sample]),
    }
    print(
        f"pathways: {count} of each kind per round, {rounds} rotating rounds, concurrency "
        f"{concurrency}, {UPDATES_PER_PATHWAY} Updates each; workflow runner: "
        f"{runner_name(RopSettings().worker_sandbox)}"
    )
    print(ours.describe("ours                ", statistics.median(total)))
    print(base.describe("regular-activity    ", sum(typed["regular"].values()) / sample))
    print(floor.describe("local-activity floor", sum(typed["floor"].values()) / sample))
    print(recording.describe("recording floor     ", sum(typed["recording"].values()) / sample))
    print(
        f"history events per pathway (ours): first run max {max(first)}; all runs median "
        f"{statistics.median(total):g}, max {max(total)}"
    )
    print(events_table(typed, sample))
    print(f"worker peak RSS (both workers' process): {rss.peak / 2**20:.0f} MiB")
    print(f"load average (1, 5, 15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"ratio to regular per round: {' '.join(f'{r:.2f}' for r in to_base)}")
    print(f"ratio to floor per round:   {' '.join(f'{r:.2f}' for r in to_floor)}")
    print(f"ratio to recording floor per round: {' '.join(f'{r:.2f}' for r in to_recording)}")
    ratios = (
        statistics.median(to_base),
        statistics.median(to_floor),
        statistics.median(to_recording),
    )
    print(
        f"ratio ours/regular-activity baseline: {ratios[0]:.2f}; "
        f"ours/local-activity floor: {ratios[1]:.2f}; ours/recording floor: {ratios[2]:.2f} "
        f"(medians of {rounds} rounds)"
    )
    print(
        "Temporal CPU per pathway, ours/floor: "
        f"{(ours.server_cpu / ours.pathways) / (floor.server_cpu / floor.pathways):.2f}"
    )
    return ratios


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--pathways", type=int, nargs="+", default=[30, 100], help="N of each kind per round"
    )
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="alternating rounds")
    worker_process_arguments(parser)
    args = parser.parse_args()
    if args.serve_workers:
        asyncio.run(serve_workers(args.address, args.database_url))
    else:
        asyncio.run(main(args.pathways, args.concurrency, args.rounds))


if __name__ == "__main__":
    cli()
