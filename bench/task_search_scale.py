"""`make task-search-scale` (not a test): FHIR Task search at a region's size.

100,000 pathways and 500,000 tasks (a clinician's own, four unit tasks a pathway, one without
a due date) written straight into a fresh embedded PostgreSQL, then each kind of search a
worklist or an EPJ makes, a service's and a unit member's (scoped by need of service, 5,000
pathways of their unit), timed through `starter.task_search` as the API runs it: the first
page of 50 (median of 7) and the ten pages after it (median).
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

from activities.database import API_ROLE, create_pool, migrate
from activities.task_owner import OwnerType
from rop_domain.tasks import TaskStatus
from starter.local_stack import embedded_postgres, ensure_database
from starter.task_list import Viewer
from starter.task_search import Owner, SortOrder, TaskSearch, search_tasks

PATHWAYS = 100_000
SEED = [
    """INSERT INTO pathways (workflow_id, referral_id, received_at, source, referrer,
           receiving_unit, health_trust, municipality, responsible_clinician,
           patient_reference, phase, meeting_deadline)
       SELECT 'rop-S-' || n, 'S-' || n, now() - (n % 1000) * interval '1 day', 'fastlege',
              '9000001', CASE WHEN n % 2 = 0 THEN 'TSB' ELSE 'PHV' END, 'trust-' || (n % 20),
              lpad((4601 + n % 30)::text, 4, '0'), (9100000 + n % 400)::text, 'p-' || n,
              'follow-up', current_date
       FROM generate_series(1, $1::int) n""",
    """INSERT INTO tasks (idempotency_key, workflow_id, kind, recipient, subject, body, due_at,
           status, owner_type, owner)
       SELECT 'k-' || n || '-' || k, 'rop-S-' || n, 'meeting-invitation', 'x@example.invalid',
              's', 'b',
              CASE WHEN k = 4 THEN NULL
                   ELSE now() + ((n * 7 + k) % 2000 - 1000) * interval '1 hour' END,
              CASE WHEN k % 2 = 0 THEN 'requested' ELSE 'completed' END,
              CASE WHEN k = 0 THEN 'Practitioner' ELSE 'CareTeam' END,
              CASE WHEN k = 0 THEN (9100000 + n % 400)::text
                   ELSE 'trust-' || (n % 20) || '.' || CASE WHEN k % 2 = 0 THEN 'TSB' ELSE 'PHV' END
              END
       FROM generate_series(1, $1::int) n, generate_series(0, 4) k""",
    """INSERT INTO pathway_parties (workflow_id, party_type, party, named_as, step_key)
       SELECT 'rop-S-' || n, 'unit',
              'trust-' || (n % 20) || '/' || CASE WHEN n % 2 = 0 THEN 'TSB' ELSE 'PHV' END,
              'receiving-unit', 'k'
       FROM generate_series(1, $1::int) n""",
]


async def main() -> None:
    folder = Path(tempfile.mkdtemp())
    with embedded_postgres(folder / "pg") as server:
        url = await ensure_database(server, "scale")
        owner = await create_pool(url)
        await migrate(owner)
        began = time.perf_counter()
        for statement in SEED:
            await owner.execute(statement, PATHWAYS)
        await owner.execute("ANALYZE")
        print(
            f"seeded {PATHWAYS:,} pathways, {5 * PATHWAYS:,} tasks in {time.perf_counter() - began:.0f} s"
        )
        pool = await create_pool(url, role=API_ROLE)
        member = Viewer(["trust-3/PHV"], "9100003", None)
        open_ = (TaskStatus.REQUESTED,)
        cases = {
            "service: every open task": TaskSearch(statuses=open_),
            "service: a team's": TaskSearch(owner=Owner(OwnerType.CARE_TEAM, "trust-3.TSB")),
            "unit member: every open task they may see": TaskSearch(statuses=open_, visible_to=member),
            "unit member: their team's": TaskSearch(owner=Owner(OwnerType.CARE_TEAM, "trust-3.PHV"), visible_to=member),
            "unit member: a person's (HPR)": TaskSearch(owner=Owner(OwnerType.PRACTITIONER, "9100003"), visible_to=member),
        }  # fmt: skip
        async with pool.acquire() as connection:
            for name, search in cases.items():
                search = dataclasses.replace(search, sort=SortOrder.DUE)
                first: list[float] = []
                for _ in range(7):
                    started = time.perf_counter()
                    found, after = await search_tasks(connection, search)
                    first.append(time.perf_counter() - started)
                later: list[float] = []
                while after is not None and len(later) < 10:
                    started = time.perf_counter()
                    found, after = await search_tasks(
                        connection, dataclasses.replace(search, after=after)
                    )
                    later.append(time.perf_counter() - started)
                print(
                    f"{name}, by due date: first page {statistics.median(first) * 1000:.1f} ms, "
                    f"the next {len(later)} pages {statistics.median(later or [0]) * 1000:.1f} ms "
                    f"(median), {len(found)} a page"
                )
        await pool.close()
        await owner.close()


if __name__ == "__main__":
    asyncio.run(main())
