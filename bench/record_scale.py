"""`make record-scale N=...` (a benchmark, not a test): a clinician's reads at a region's size.

Builds N pathways' records through the record service's own statements (the intake and the
step statement the worker runs, so every table, index and `pathway_parties` row is what
production writes): referrals over three years from four health trusts (eight units) and
30 municipalities, assessed, most invited with three parties, their meetings held with a
koordinator, a crisis-plan responsible and measures, some reviewed and closed; deliveries
for the tasks e-mailed; three access-log rows each. One more pathway runs for real on the
dev server, in the clinician's unit, for the FHIR bundle (it needs the workflow's status).

Then, as a clinician of helse-bergen/TSB (one unit of eight: an eighth of the pathways) with
a system's view beside, it times `GET /tasks`, `GET /pathways` and one pathway's
`GET /pathways/{id}/fhir` through the real API (p50 and p99 of ROUNDS requests each); as a
system, the region's indicator reads (one set over the three years, a 37-point monthly series,
the quarterly CSV); then fills the access log to ACCESS_LOG_ROWS rows and runs
`rop access-log verify` as its own process (seconds and peak memory); and prints the tables'
size per pathway and the machine's load average.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import structlog
from temporalio.testing import ActivityEnvironment

from activities.database import WORKER_ROLE, create_pool
from activities.records import RecordActivities
from bench.pathways import BENCH_KEYS, OURS_QUEUE, bench_referral, local_servers
from rop_domain.commands import EventKind, NewPathway, PathwayStep, SummaryChange
from rop_domain.followup import IndividualPlanStatus, Measure, MeasureKind, MeetingOutcome, Provider
from rop_domain.models import (
    Assessment,
    AssessmentDecision,
    Phase,
    ValidationPolicy,
    parse_referral,
)
from rop_domain.tasks import TaskKind
from rop_runtime.settings import RopSettings
from starter import access_log
from starter.access_log import Access, Grounds, Outcome
from starter.api.auth import KeyHolder, Role, write_tokens_file
from starter.api.server import EmbeddedServer, app_from_settings, server_config
from starter.pathways import Pathways
from tests.channel_servers import free_port
from tests.factories import event, task
from worker import build_worker

TRUSTS = ["helse-bergen", "helse-stavanger", "helse-fonna", "helse-forde"]
MUNICIPALITIES = [f"{4601 + n:04d}" for n in range(30)]
CLINICIANS = [f"9{n:06d}" for n in range(100_000, 100_400)]
ME = "9000123"
MY_UNIT = "helse-bergen/TSB"
CONCURRENCY = 8
POLICY = ValidationPolicy()


async def one_pathway(records: RecordActivities, pool: asyncpg.Pool, number: int, chance: random.Random) -> None:  # fmt: skip
    """One pathway's records, in the shapes the workflow writes them."""
    received = datetime.now(UTC) - timedelta(days=chance.uniform(0, 3 * 365))
    trust = chance.choice(TRUSTS)
    unit = chance.choice(["TSB", "PHV"])
    clinician = ME if (trust, unit) == ("helse-bergen", "TSB") and chance.random() < 0.05 else chance.choice(CLINICIANS)  # fmt: skip
    data = {
        **bench_referral(received),
        "referral_id": f"SCALE-{number:07d}",
        "health_trust": trust,
        "receiving_unit": unit,
        "municipality": chance.choice(MUNICIPALITIES),
        "responsible_clinician": clinician,
        "general_practitioner": chance.choice(CLINICIANS),
        "referrer": chance.choice(CLINICIANS),
    }
    referral = parse_referral(data, POLICY)
    wid = referral.workflow_id
    env = ActivityEnvironment()
    deadline = received + timedelta(days=14)
    await env.run(
        records.open_pathway,
        NewPathway(
            workflow_id=wid,
            referral=referral,
            meeting_deadline=deadline.date(),
            notifications=[
                task(wid, "1-assess", TaskKind.ASSESS_REFERRAL, clinician, due=deadline)
            ],
        ),
    )
    at = received + timedelta(days=2)
    assessment = Assessment(
        assessor=clinician, decision=AssessmentDecision.IN_TARGET_GROUP, reason="ROP"
    )
    steps = [PathwayStep(events=[event(wid, "2-assessed", EventKind.ASSESSED, clinician, assessment.model_dump(mode="json"), at=at)])]  # fmt: skip
    open_tasks = 1
    if chance.random() < 0.85:
        meeting = at + timedelta(days=7)
        steps.append(PathwayStep(
            events=[event(wid, "3-invited", EventKind.MEETING_INVITED, clinician, {"participants": ["tsb", "phv", "kommune"]}, at=at)],
            notifications=[
                task(wid, f"3-{role}", TaskKind.MEETING_INVITATION, f"{role}@example.invalid", due=meeting, party=role)
                for role in ("tsb", "phv", "kommune")
            ],
        ))  # fmt: skip
        if meeting < datetime.now(UTC) and chance.random() < 0.9:
            koordinator, responsible = chance.choice(CLINICIANS), chance.choice(CLINICIANS)
            measures = [
                Measure(id="poliklinikk", kind=MeasureKind.OUTPATIENT, provider=Provider.TSB, responsible=chance.choice(CLINICIANS)),
                Measure(id="bolig", kind=MeasureKind.MUNICIPAL_HOUSING, provider=Provider.KOMMUNE, responsible=data["municipality"]),
            ]  # fmt: skip
            outcome = MeetingOutcome(
                recorded_by=clinician, held_at=meeting, attendees=["TSB", "PHV"], koordinator=koordinator,
                individual_plan=IndividualPlanStatus.OFFERED, crisis_plan_responsible=responsible, measures=measures,
            )  # fmt: skip
            steps.append(PathwayStep(
                events=[event(wid, "4-held", EventKind.MEETING_HELD, clinician, outcome.model_dump(mode="json"), at=meeting)],
                notifications=[
                    task(wid, "4-crisis", TaskKind.MAKE_CRISIS_PLAN, responsible, due=meeting + timedelta(days=14)),
                    *(task(wid, f"4-{m.id}", TaskKind.START_MEASURE, m.responsible) for m in measures),
                ],
            ))  # fmt: skip
            open_tasks += 3
            if chance.random() < 0.4:
                closed = meeting + timedelta(days=90)
                steps.append(PathwayStep(events=[event(
                    wid, "5-closed", EventKind.PATHWAY_CLOSED, koordinator, {"reason": "completed"},
                    at=closed, change=SummaryChange(closed_at=closed, phase=Phase.CLOSED),
                )]))  # fmt: skip
    for step in steps:
        await env.run(records.record_step, step)
    await pool.execute(
        """INSERT INTO deliveries (task_id, channel, address, message_id, status, attempts, sent_at)
           SELECT id, 'email', recipient, '<' || id || '@bench>', 'sent', 1, created_at
           FROM tasks WHERE workflow_id = $1 AND recipient LIKE '%@%'""",
        wid,
    )
    await access_log.record(
        pool,
        [
            Access(
                principal=f"jwt:{clinician}@bench",
                roles="clinician",
                workflow_id=wid,
                action=action,
                outcome=Outcome.OK,
                grounds=Grounds.UNIT,
            )
            for action in ("read status", "record assessment", "read FHIR bundle")
        ],
    )


async def build(database_url: str, count: int) -> float:
    """Write `count` pathways' records; return the seconds it took."""
    owner = await create_pool(database_url)
    pool = await asyncpg.create_pool(database_url, min_size=CONCURRENCY, max_size=CONCURRENCY)
    assert pool is not None
    records = RecordActivities(pool)
    began = time.monotonic()
    gate = asyncio.Semaphore(CONCURRENCY)

    async def gated(number: int) -> None:
        async with gate:
            await one_pathway(records, pool, number, random.Random(number))  # noqa: S311
            if number and number % 10_000 == 0:
                print(f"  {number} pathways written ({time.monotonic() - began:.0f} s)", flush=True)

    await asyncio.gather(*(gated(n) for n in range(count)))
    await owner.execute("ANALYZE")
    await pool.close()
    await owner.close()
    return time.monotonic() - began


async def timed(
    call: Callable[[], Awaitable[httpx.Response]], rounds: int
) -> tuple[float, float, int]:
    """p50 and p99 in milliseconds over `rounds` calls, and the last answer's item count."""
    seconds, items = [], 0
    for _ in range(rounds):
        began = time.perf_counter()
        answer = await call()
        seconds.append(time.perf_counter() - began)
        assert answer.status_code == 200, answer.text[:300]
        if answer.headers["content-type"].startswith("text/csv"):
            items = len(answer.text.splitlines()) - 1  # rows under the header
            continue
        body = answer.json()
        items = len(body) if isinstance(body, list) else len(body.get("entry", [1]))
    seconds.sort()
    p99 = seconds[min(len(seconds) - 1, int(len(seconds) * 0.99))]
    return statistics.median(seconds) * 1000, p99 * 1000, items


async def main(count: int, rounds: int, access_log_rows: int) -> None:
    # The request log would print a line per timed request: warnings only.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    async with local_servers("scale") as (client, database_url):
        print(f"building {count} pathways' records through the step statement ...", flush=True)
        built = await build(database_url, count)
        print(f"built in {built:.0f} s ({built / count * 1000:.1f} ms a pathway)")
        folder = Path(tempfile.mkdtemp(prefix="rop-scale-"))
        clinician_key, system_key = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        tokens = folder / "api-tokens.json"
        write_tokens_file(tokens, {
            clinician_key: KeyHolder("bench-clinician", Role.CLINICIAN, person=ME, units=(MY_UNIT,)),
            system_key: KeyHolder("bench-system", Role.SYSTEM),
        })  # fmt: skip
        [(key_id, key)] = BENCH_KEYS.items()
        import base64

        os.environ["ROP_PAYLOAD_KEYS"] = f"{key_id}:{base64.b64encode(key).decode()}"
        settings = RopSettings(
            temporal_address=client.service_client.config.target_host,
            task_queue=OURS_QUEUE,
            database_url=database_url,
            api_tokens_file=tokens,
            allow_synthetic_ids=True,
            data_dir=folder,
        )
        port = free_port()
        server = EmbeddedServer(
            server_config(app_from_settings(settings, database_url), "127.0.0.1", port)
        )
        worker_pool = await create_pool(database_url, role=WORKER_ROLE)
        serving = await server.start()
        try:
            async with build_worker(client, worker_pool, OURS_QUEUE):
                real = await Pathways(client, task_queue=OURS_QUEUE).submit(
                    parse_referral(
                        {
                            **bench_referral(datetime.now(UTC)),
                            "referral_id": f"REAL-{uuid.uuid4().hex[:8]}",
                        },
                        POLICY,
                    )
                )
                api = f"http://127.0.0.1:{port}"
                async with httpx.AsyncClient(
                    base_url=api, headers={"Authorization": f"Bearer {clinician_key}"}, timeout=60
                ) as me:
                    await me.get(f"/pathways/{real.workflow_id}")  # its record is written
                    reads = {
                        "GET /tasks (clinician)": lambda: me.get("/tasks"),
                        "GET /pathways (clinician)": lambda: me.get("/pathways"),
                        "GET /pathways/{id}/fhir": lambda: me.get(
                            f"/pathways/{real.workflow_id}/fhir"
                        ),
                    }
                    results = {name: await timed(call, rounds) for name, call in reads.items()}
                async with httpx.AsyncClient(
                    base_url=api, headers={"Authorization": f"Bearer {system_key}"}, timeout=120
                ) as system:
                    today = datetime.now(UTC).date()
                    three_years = f"from_date={today.year - 3}-{today.month:02d}-01&to_date={today}"
                    reads = {
                        "GET /indicators (3 years)": lambda: system.get(
                            f"/indicators?{three_years}"
                        ),
                        "GET /indicators/series (37 months)": lambda: system.get(
                            f"/indicators/series?by=month&{three_years}"
                        ),
                        "GET /indicators/series quarter CSV": lambda: system.get(
                            f"/indicators/series?by=quarter&format=csv&{three_years}"
                        ),
                    }
                    results |= {name: await timed(call, rounds) for name, call in reads.items()}
        finally:
            server.should_exit = True
            await serving
            await worker_pool.close()
        owner = await create_pool(database_url)
        sizes = {
            table: await owner.fetchval("SELECT pg_total_relation_size($1::regclass)", table)
            for table in (
                "pathways",
                "pathway_events",
                "tasks",
                "pathway_parties",
                "pathway_facts",
                "deliveries",
                "access_log",
            )
        }
        rows = {table: await owner.fetchval(f"SELECT count(*) FROM {table}") for table in sizes}  # noqa: S608
        logged = await fill_access_log(owner, access_log_rows)
        await owner.close()
        verify_seconds, verify_mib, verified = verify_as_a_process(database_url)
    load = os.getloadavg()
    print(
        f"\n{count} pathways, {rounds} requests each, as a clinician of {MY_UNIT} (one unit of 8)"
    )
    print(f"{'read':36} {'p50 ms':>8} {'p99 ms':>8} {'items':>6}")
    for name, (p50, p99, items) in results.items():
        print(f"{name:36} {p50:8.1f} {p99:8.1f} {items:6}")
    print(
        f"\nrop access-log verify over {logged} rows: {verify_seconds:.1f} s, "
        f"peak {verify_mib:.0f} MiB ({verified})"
    )
    print("\ntable sizes per pathway (rows, bytes with indexes)")
    for table, size in sizes.items():
        print(f"  {table:16} {rows[table] / (count + 1):6.1f} rows  {size / (count + 1):8.0f} B")
    print(
        f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


async def fill_access_log(owner: asyncpg.Pool, rows: int) -> int:
    """Fill the access log up to `rows` rows (reads of pathways by clinicians, chained by the
    log's own trigger, as the API writes them); return how many it holds."""
    have: int = await owner.fetchval("SELECT count(*) FROM access_log")
    while have < rows:
        batch = min(10_000, rows - have)
        await owner.execute(
            """INSERT INTO access_log (principal, roles, workflow_id, action, outcome, grounds)
               SELECT 'jwt:9' || (100000 + g % 400) || '@bench', 'clinician',
                      'rop-SCALE-' || lpad((g % 100000)::text, 7, '0'), 'read status', 'ok', 'unit'
               FROM generate_series(1, $1) g""",
            batch,
        )
        have += batch
    return have


def verify_as_a_process(database_url: str) -> tuple[float, float, str]:
    """`rop access-log verify` as an operator runs it: (seconds, peak MiB of its process, its
    answer). A wrapper process waits for it, so the peak is the verify's alone."""
    rop = Path(sys.executable).with_name("rop")
    wrapper = (
        "import resource, subprocess, sys; "
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
        "print((done.stdout or done.stderr).strip())"
    )
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", wrapper, str(rop), "access-log", "verify"],
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.monotonic() - began
    peak_kib, answer = done.stdout.split("\n", 1)
    return seconds, int(peak_kib) / 1024, answer.strip()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pathways", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--access-log-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    asyncio.run(main(args.pathways, args.rounds, args.access_log_rows))


if __name__ == "__main__":
    cli()
