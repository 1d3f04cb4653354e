"""The recording floor's record: one row a step, written by one statement, the cheapest a
record can be. The pathway writes a step whole (events, tasks, parties, its snapshot) in one
statement too (`activities.step_statement`); this is the same round trip to PostgreSQL with
none of that content. Used only by `make bench` (`bench.baseline.RecordingFloorPathway`).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from temporalio import activity

from activities.database import WORKER_ROLE

TABLE = f"""
CREATE TABLE IF NOT EXISTS bench_floor_steps (
    idempotency_key text PRIMARY KEY,
    workflow_id     text NOT NULL,
    step            integer NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT ON bench_floor_steps TO {WORKER_ROLE};
"""
"""Made by the benchmark in its own database, beside the record's tables."""


@dataclass(frozen=True)
class FloorStep:
    workflow_id: str
    step: int
    """0 for the record opened at the start, as the pathway's intake; then 1, 2, …"""


class FloorRecord:
    """The recording floor's activity, on the worker's pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn(name="floor_record")
    async def write(self, step: FloorStep) -> int:
        """Write the step's row once (a retry writes nothing), as the pathway's statement."""
        await self._pool.execute(
            """INSERT INTO bench_floor_steps (idempotency_key, workflow_id, step)
               VALUES ($1, $2, $3) ON CONFLICT (idempotency_key) DO NOTHING""",
            f"{step.workflow_id}/{step.step}",
            step.workflow_id,
            step.step,
        )
        return step.step
