"""Claiming a unit's task, and giving it back (issue 30): `Task.owner` from the unit (a
CareTeam) to one of its people and back, never two people at once.

A claim names the task's version as the claimer last saw it (`If-Match`); it applies only if
the task is still at that version, open, and unclaimed, in one statement, so of two
concurrent claims one applies and the other finds the version moved on (412). Each claim and
unclaim bumps the version and is kept in `task_changes` (the task's history), in the same
transaction.
"""

from __future__ import annotations

from enum import StrEnum

import asyncpg

from activities.database import Connection
from activities.task_owner import OwnerType, unit_of


class Refusal(StrEnum):
    """Why a claim or unclaim did not apply."""

    NOT_FOUND = "not-found"
    VERSION_MOVED = "version-moved"
    """Someone changed the task since the caller saw it: read it again."""
    NOT_A_UNIT_TASK = "not-a-unit-task"
    NOT_OF_YOUR_UNIT = "not-of-your-unit"
    NOT_OPEN = "not-open"
    CLAIMED = "claimed"
    NOT_CLAIMED = "not-claimed"


class ClaimRefused(Exception):
    def __init__(self, refusal: Refusal, detail: str) -> None:
        super().__init__(detail)
        self.refusal = refusal


async def claim(
    connection: Connection, task_id: int, version: int, person: str, units: frozenset[str]
) -> int:
    """`person` (an HPR number, a member of `units`) claims the unit task `task_id` seen at
    `version`; the new version, or `ClaimRefused`."""
    return await _change(connection, task_id, version, person, units, claiming=True)


async def unclaim(
    connection: Connection, task_id: int, version: int, person: str, units: frozenset[str]
) -> int:
    """Give the claimed task back to its unit (by anyone of the unit: the claimer may be
    away); the new version, or `ClaimRefused`."""
    return await _change(connection, task_id, version, person, units, claiming=False)


async def _change(
    connection: Connection,
    task_id: int,
    version: int,
    person: str,
    units: frozenset[str],
    *,
    claiming: bool,
) -> int:
    async with connection.transaction():
        row = await connection.fetchrow(
            "SELECT id, owner_type, owner, claimed_by, status, version FROM tasks WHERE id = $1",
            task_id,
        )
        if row is None:
            raise ClaimRefused(Refusal.NOT_FOUND, f"no task {task_id}")
        _check(row, version, units, claiming=claiming)
        changed = await connection.fetchval(
            """UPDATE tasks SET claimed_by = $3, version = version + 1, updated_at = now()
               WHERE id = $1 AND version = $2 AND status = 'requested'
                 AND owner_type = 'CareTeam'
                 AND (claimed_by IS NULL) = $4
               RETURNING version""",
            task_id,
            version,
            person if claiming else None,
            claiming,
        )
        if changed is None:  # another change committed between the read and the update
            raise ClaimRefused(
                Refusal.VERSION_MOVED, f"task {task_id} changed since version {version}"
            )
        await connection.execute(
            "INSERT INTO task_changes (task_id, version, change, by_person) VALUES ($1, $2, $3, $4)",
            task_id,
            changed,
            "claimed" if claiming else "unclaimed",
            person,
        )
    return int(changed)


def _check(task: asyncpg.Record, version: int, units: frozenset[str], *, claiming: bool) -> None:
    """Why the change cannot apply, as the task stands: a version other than the caller saw
    first (whatever else changed, they must read it again), then what the task is."""
    task_id = task["id"]
    if task["version"] != version:
        raise ClaimRefused(
            Refusal.VERSION_MOVED,
            f"task {task_id} is at version {task['version']}, not {version}: read it again",
        )
    if task["owner_type"] != OwnerType.CARE_TEAM.value:
        raise ClaimRefused(Refusal.NOT_A_UNIT_TASK, f"task {task_id} is not a unit's task")
    if unit_of(task["owner"]) not in units:
        raise ClaimRefused(Refusal.NOT_OF_YOUR_UNIT, f"task {task_id} is not of your unit")
    if task["status"] != "requested":
        raise ClaimRefused(Refusal.NOT_OPEN, f"task {task_id} is {task['status']}")
    if claiming and task["claimed_by"] is not None:
        raise ClaimRefused(Refusal.CLAIMED, f"task {task_id} is claimed already")
    if not claiming and task["claimed_by"] is None:
        raise ClaimRefused(Refusal.NOT_CLAIMED, f"task {task_id} is not claimed")
