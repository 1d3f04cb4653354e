"""One place for searching tasks as a worklist searches them: `GET /fhir/Task` (issue 30).

A search is typed (`TaskSearch`: owner, statuses, kinds, pathway, periods of authoring and of
due date, sort order, page size, where the last page ended) and becomes one SQL statement.
Need of service scopes it in the same statement, as the task list's (`task_list.scope`): a
person finds only the tasks of pathways that name them or their unit. Paging is by key (the
sort value and the task id of the last row), so a page never repeats or skips a row however
many tasks are written between two pages.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from activities.database import Connection
from activities.task_owner import OwnerType
from rop_domain.tasks import TaskKind, TaskStatus
from starter.task_list import Binds, TaskView, Viewer, scope


class SortOrder(StrEnum):
    """`_sort`: by task id (the default: the order tasks were raised), by due date (tasks
    without one last, first when descending), or by when they were raised; `-` for
    descending."""

    ID = "_id"
    DUE = "due"
    DUE_DESCENDING = "-due"
    AUTHORED = "authored-on"
    AUTHORED_DESCENDING = "-authored-on"


_DUE_KEY = "coalesce(t.due_at, 'infinity'::timestamptz)"
"""A task's place by due date: one without comes after all others (before them in `-due`);
the expression of the indexes `tasks_due_order_idx` and `tasks_owner_due_idx`."""
_SORT_KEYS = {
    SortOrder.ID: ("t.id::text", ""),
    SortOrder.DUE: (_DUE_KEY, "timestamptz"),
    SortOrder.DUE_DESCENDING: (_DUE_KEY, "timestamptz"),
    SortOrder.AUTHORED: ("t.created_at", "timestamptz"),
    SortOrder.AUTHORED_DESCENDING: ("t.created_at", "timestamptz"),
}
"""Each order's key expression and its type; a descending order compares the other way."""


@dataclass(frozen=True)
class Owner:
    """`owner`: a person (by HPR number), a unit (a CareTeam) or a municipality."""

    type: OwnerType
    id: str


@dataclass(frozen=True)
class Bound:
    """One side of a period: `ge`, `gt`, `le` or `lt` an instant."""

    prefix: str
    at: datetime

    @property
    def operator(self) -> str:
        return {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}[self.prefix]


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: its last row's sort value and task id, under one sort order."""

    sort: SortOrder
    value: str
    task_id: int

    def encode(self) -> str:
        raw = json.dumps([self.sort.value, self.value, self.task_id]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """A cursor from `encode`; a `ValueError` for anything else (its sort value is checked
        here, never left for the database to refuse)."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            sort, value, task_id = json.loads(raw)
            cursor = cls(SortOrder(sort), str(value), int(task_id))
            if cursor.sort is SortOrder.ID:
                int(cursor.value)
            elif cursor.value not in ("infinity", "-infinity"):
                datetime.fromisoformat(cursor.value)
            return cursor
        except (ValueError, TypeError) as error:
            raise ValueError("not a page token of this server") from error


@dataclass(frozen=True)
class TaskSearch:
    """What `GET /fhir/Task` asks for, typed and validated (`starter.api.routes_fhir_tasks`)."""

    owner: Owner | None = None
    statuses: tuple[TaskStatus, ...] = ()
    kinds: tuple[TaskKind, ...] = ()
    workflow_id: str | None = None
    authored: tuple[Bound, ...] = ()
    due: tuple[Bound, ...] = ()
    sort: SortOrder = SortOrder.ID
    count: int = 50
    after: Cursor | None = None
    visible_to: Viewer | None = None
    """A person's need of service; None for a service, which sees every task."""


class FoundTask(TaskView):
    """A task as a FHIR Task shows it, with the grounds its reader sees it on."""

    updated_at: datetime
    owner_type: OwnerType | None
    owner: str | None
    claimed_by: str | None
    version: int
    patient_reference: str
    grounds: str
    sort_value: str


_COLUMNS = """t.id, t.workflow_id, t.kind, t.recipient, t.status, t.due_at, t.subject,
    t.created_at, t.updated_at, t.reference, t.owner_type, t.owner, t.claimed_by, t.version,
    p.patient_reference"""


async def search_tasks(
    connection: Connection, search: TaskSearch
) -> tuple[list[FoundTask], Cursor | None]:
    """One page of the tasks `search` finds, and the cursor of the next page (None if this
    is the last)."""
    bind = Binds()
    conditions = ["TRUE"]
    if search.owner is not None:
        conditions.append(_owner_condition(search.owner, bind))
    if search.statuses:
        conditions.append(f"t.status = ANY ({bind([s.value for s in search.statuses])}::text[])")
    if search.kinds:
        conditions.append(f"t.kind = ANY ({bind([k.value for k in search.kinds])}::text[])")
    if search.workflow_id is not None:
        conditions.append(f"t.workflow_id = {bind(search.workflow_id)}")
    for bound in search.authored:
        conditions.append(f"t.created_at {bound.operator} {bind(bound.at)}")
    for bound in search.due:
        conditions.append(f"t.due_at {bound.operator} {bind(bound.at)}")
    key, key_type = _SORT_KEYS[search.sort]
    descending = search.sort.value.startswith("-")
    if search.after is not None:
        if search.after.sort is not search.sort:
            raise ValueError("the page token belongs to another _sort")
        later = "<" if descending else ">"
        if search.sort is SortOrder.ID:
            conditions.append(f"t.id {later} {bind(search.after.task_id)}")
        else:
            value = f"{bind(search.after.value)}::text::{key_type}"
            conditions.append(f"({key}, t.id) {later} ({value}, {bind(search.after.task_id)})")
    join, visible, grounds = await scope(connection, search.visible_to, bind)
    direction = "DESC" if descending else "ASC"
    order = (
        f"t.id {direction}"
        if search.sort is SortOrder.ID
        else f"{key} {direction}, t.id {direction}"
    )
    rows = await connection.fetch(
        f"""SELECT {_COLUMNS}, {grounds} AS grounds, ({key})::text AS sort_value
           FROM tasks t JOIN pathways p ON p.workflow_id = t.workflow_id {join}
           WHERE {" AND ".join(conditions)} {visible}
           ORDER BY {order} LIMIT {bind(search.count + 1)}""",  # noqa: S608 - fixed SQL, values bound
        *bind.values,
    )
    found = [FoundTask.model_validate(dict(row)) for row in rows[: search.count]]
    if len(rows) <= search.count:
        return found, None
    last = found[-1]
    return found, Cursor(search.sort, last.sort_value, last.id)


def _owner_condition(owner: Owner, bind: Binds) -> str:
    """A person owns the tasks that name them and the unit tasks they claimed; a unit or
    municipality owns its tasks nobody has claimed."""
    if owner.type is OwnerType.PRACTITIONER:
        person = bind(owner.id)
        return (
            f"((t.owner_type = 'Practitioner' AND t.owner = {person}) OR t.claimed_by = {person})"
        )
    return (
        f"(t.owner_type = {bind(owner.type.value)} AND t.owner = {bind(owner.id)} "
        "AND t.claimed_by IS NULL)"
    )


async def find_task(connection: Connection, task_id: int) -> FoundTask | None:
    """One task, as a search finds it (grounds are the caller's to establish)."""
    row = await connection.fetchrow(
        f"""SELECT {_COLUMNS}, 'service' AS grounds, t.id::text AS sort_value
           FROM tasks t JOIN pathways p ON p.workflow_id = t.workflow_id
           WHERE t.id = $1""",  # noqa: S608 - fixed SQL
        task_id,
    )
    return None if row is None else FoundTask.model_validate(dict(row))
