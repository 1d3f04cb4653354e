"""The task list as clinicians and units see it: open tasks, who has them, what is late.

Completing a task that stands for a pathway step goes through that step's Update (the
`rop` command for the step), so the same validation applies and the workflow closes
the task; a task that only informs (an invitation, a closure notice) is completed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from activities.database import Connection
from rop_domain.models import StrictModel
from rop_domain.tasks import TaskKind, TaskStatus
from starter.api.need_of_service import GROUNDS_OF_ROWS, names_caller


class TaskView(StrictModel):
    """A task as the task list shows it; `reference` is the measure id of a measure task."""

    id: int
    workflow_id: str
    kind: TaskKind
    recipient: str
    status: TaskStatus
    due_at: datetime | None
    subject: str
    created_at: datetime
    reference: str | None


_COLUMNS = "t.id, t.workflow_id, t.kind, t.recipient, t.status, t.due_at, t.subject, t.created_at, t.reference"


@dataclass(frozen=True)
class Viewer:
    """A person, for their need of service, as `need_of_service.parties_arguments` gives
    them: their units, HPR number and trusted e-mail address (case folded)."""

    units: list[str]
    person: str | None
    email: str | None


@dataclass(frozen=True)
class TaskFilter:
    """Which tasks to list."""

    workflow_id: str | None = None
    assignee: str | None = None
    health_trust: str | None = None
    receiving_unit: str | None = None
    overdue: bool = False
    include_closed: bool = False
    delivery_failed: bool = False
    """Only tasks no channel could deliver: those an operator re-sends."""
    visible_to: Viewer | None = None
    """Only the tasks of pathways this person has a need of service for."""


async def list_tasks(
    connection: Connection, where: TaskFilter, limit: int = 1000
) -> list[TaskView]:
    """Tasks matching `where`, oldest first, at most `limit`."""
    return [task for task, _ in await list_tasks_with_grounds(connection, where, limit)]


LARGE_SCOPE = 4000
"""Rows naming a viewer above which their tasks are found task by task (in id order, each
checked against `pathway_parties` by index) rather than pathway by pathway: a unit's
member sees thousands of pathways, a GP a handful, and each shape is fast for one of them
(measured with `make record-scale` at 100,000 pathways: 15 against 150 ms for a unit's
member, 14 against 115 ms for a person named in 600 pathways, 0.4 against 1,100 ms for one
named in none)."""


class Binds:
    """A statement's values as it is built: each call binds one and names its placeholder."""

    def __init__(self) -> None:
        self.values: list[object] = []

    def __call__(self, value: object) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


async def scope(connection: Connection, viewer: Viewer | None, bind: Binds) -> tuple[str, str, str]:
    """SQL that keeps the tasks `t` of pathways `viewer` has a need of service for: a join, a
    condition to AND in, and the expression of each row's grounds. A viewer named in many
    pathways is checked task by task, one named in few pathway by pathway (`LARGE_SCOPE`).
    None (a service) sees every task."""
    if viewer is None:
        return "", "", "'service'"
    caller = [viewer.units, viewer.person, viewer.email]
    named = names_caller(*(bind(value) for value in caller))
    mine = f"SELECT {GROUNDS_OF_ROWS} FROM pathway_parties g WHERE g.workflow_id = t.workflow_id AND {named} HAVING count(*) > 0"  # noqa: S608 - fixed SQL
    if await _scope_rows(connection, caller) > LARGE_SCOPE:
        return "", f"AND EXISTS ({mine})", f"({mine})"
    join = f"""JOIN (SELECT g.workflow_id, {GROUNDS_OF_ROWS} AS grounds
                     FROM pathway_parties g WHERE {named} GROUP BY g.workflow_id) scope
                ON scope.workflow_id = t.workflow_id"""  # noqa: S608 - fixed SQL
    return join, "", "scope.grounds"


async def list_tasks_with_grounds(
    connection: Connection, where: TaskFilter, limit: int = 1000
) -> list[tuple[TaskView, str]]:
    """Tasks matching `where`, oldest first, at most `limit`, each with the grounds on which
    `where.visible_to` sees it (`service` without a viewer), in one query: a person's tasks
    are those of the pathways that name them (`pathway_parties`), joined by index."""
    bind = Binds()
    for value in (
        where.workflow_id,
        where.assignee,
        where.health_trust,
        where.receiving_unit,
        where.overdue,
        datetime.now(UTC),
        where.include_closed,
        limit,
    ):
        bind(value)
    join, visible, grounds = await scope(connection, where.visible_to, bind)
    # Only in the statement that asks: the API's role may not read deliveries, and a generic
    # plan (a prepared statement's sixth run) keeps a clause even where its flag is off.
    failed_only = (
        "AND EXISTS (SELECT 1 FROM deliveries d WHERE d.task_id = t.id AND d.status = 'failed')"
        if where.delivery_failed
        else ""
    )
    rows = await connection.fetch(
        f"""SELECT {_COLUMNS}, {grounds} AS grounds
           FROM tasks t JOIN pathways p ON p.workflow_id = t.workflow_id {join}
           WHERE ($1::text IS NULL OR t.workflow_id = $1)
             AND ($2::text IS NULL OR t.recipient = $2)
             AND ($3::text IS NULL OR p.health_trust = $3)
             AND ($4::text IS NULL OR p.receiving_unit = $4)
             AND (NOT $5 OR (t.due_at IS NOT NULL AND t.due_at < $6))
             AND ($7 OR t.status = 'requested')
             {visible}
             {failed_only}
           ORDER BY t.id LIMIT $8""",  # noqa: S608 - fixed SQL, values bound
        *bind.values,
    )
    return [
        (TaskView.model_validate({k: v for k, v in row.items() if k != "grounds"}), row["grounds"])
        for row in rows
    ]


async def _scope_rows(connection: Connection, caller: Sequence[object]) -> int:
    """How many rows name the caller, counted no further than just past `LARGE_SCOPE`."""
    named = names_caller("$1", "$2", "$3")
    count: int = await connection.fetchval(
        f"SELECT count(*) FROM (SELECT FROM pathway_parties g WHERE {named} LIMIT {LARGE_SCOPE + 1}) s",  # noqa: S608 - fixed SQL
        *caller,
    )
    return count


async def find_task(connection: Connection, task_id: int) -> TaskView | None:
    """One task by id."""
    row = await connection.fetchrow(f"SELECT {_COLUMNS} FROM tasks t WHERE t.id = $1", task_id)  # noqa: S608
    return None if row is None else TaskView.model_validate(dict(row))


async def complete_informational(connection: Connection, task_id: int) -> bool:
    """Mark a task that stands for no pathway step as completed. True if it was open."""
    result: str = await connection.execute(
        "UPDATE tasks SET status = 'completed', updated_at = now(), version = version + 1 "
        "WHERE id = $1 AND status = 'requested'",
        task_id,
    )
    return result.endswith(" 1")
