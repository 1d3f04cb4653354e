"""Find and mend where a pathway's record has fallen behind its workflow (`rop reconcile`).

After the record database is restored from a backup, it lacks the steps the workflows took
since; later steps write on top and nobody notices. For each pathway this asks the workflow
for the steps it recorded (its `recorded_steps` query: the last two weeks', whole), looks
their keys up in the record, and reports what is missing, by ids only. A repair writes the
missing steps back with their original keys and times, in the order they were taken,
through the same statements the worker uses (idempotent: a step already there writes
nothing), never deleting; then it puts the pathway row back as the newest step left it and
refreshes its facts. Each repair is an access-log entry of its own.

The other direction is listed too: an open pathway in the record whose workflow Temporal
does not know (a namespace lost) is reported, and with `restart` started again from its
record (`activities.restart`).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, time, timedelta

import asyncpg
import structlog
from temporalio import activity
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from activities.database import Connection
from activities.records import open_record
from activities.restart import PATHWAY_WORKFLOW, restart
from activities.step_statement import write_step, write_summary
from rop_domain.calendar import OSLO
from rop_domain.commands import RECONCILE_RECORDS
from rop_domain.models import Phase
from rop_domain.reconcile import (
    Difference,
    NotRestarted,
    ReconcileReport,
    ReconcileRequest,
    RecordBehind,
    RecordedSteps,
    compare,
)

log = structlog.get_logger(__name__)

CONCURRENCY = 16
"""Pathways checked at once: queries to the workers, look-ups in the record."""
QUERY_TIMEOUT = timedelta(seconds=10)
"""A pathway whose workflow does not answer in this time is reported as unanswered."""


async def reconcile(
    client: Client, pool: asyncpg.Pool, request: ReconcileRequest
) -> ReconcileReport:
    """Check (and with `request.repair`, mend) the pathways `request` names."""
    workflow_ids = await _workflows(client, request)
    without_workflow = (
        [] if request.pathway else await _without_workflow(pool, workflow_ids, request)
    )
    gate = asyncio.Semaphore(CONCURRENCY)
    behind: list[Difference] = []
    unanswered: list[str] = []
    unknown: list[str] = []
    repaired: list[str] = []
    written = 0

    async def one(workflow_id: str) -> None:
        nonlocal written
        async with gate:
            recorded = await _recorded_steps(client, workflow_id)
            if recorded is UNKNOWN:
                unknown.append(workflow_id)
                return
            if recorded is None:
                unanswered.append(workflow_id)
                return
            difference = await _difference(pool, recorded)
            if difference.behind:
                behind.append(difference)
                if request.repair:
                    steps = await repair(pool, recorded, request.requested_by)
                    written += steps  # after the await: the checks run concurrently
                    repaired.append(workflow_id)
            still_behind = difference.behind and not request.repair
            if request.flag and still_behind != recorded.record_behind:
                await _tell(client, workflow_id, still_behind, len(difference.missing_events))

    await asyncio.gather(*(one(workflow_id) for workflow_id in sorted(workflow_ids)))
    without_workflow = sorted({*without_workflow, *unknown})
    restarted, not_restarted = (
        await _restart_each(client, pool, without_workflow, request)
        if request.restart
        else ([], [])
    )
    report = ReconcileReport(
        checked=len(workflow_ids),
        behind=sorted(behind, key=lambda d: d.workflow_id),
        without_workflow=without_workflow,
        unanswered=sorted(unanswered),
        repaired=sorted(repaired),
        steps_written=written,
        restarted=restarted,
        not_restarted=not_restarted,
    )
    log.info(
        "reconciled",
        checked=report.checked,
        behind=len(report.behind),
        without_workflow=len(report.without_workflow),
        unanswered=len(report.unanswered),
        repaired=len(report.repaired),
    )
    return report


async def _restart_each(
    client: Client, pool: asyncpg.Pool, workflow_ids: list[str], request: ReconcileRequest
) -> tuple[list[str], list[NotRestarted]]:
    """Start each pathway in `workflow_ids` again from its record (`activities.restart`)."""
    assert request.task_queue is not None  # the request's validator says so
    restarted: list[str] = []
    not_restarted: list[NotRestarted] = []
    for workflow_id in workflow_ids:
        async with pool.acquire() as connection:
            reason = await restart(
                client,
                connection,
                workflow_id,
                task_queue=request.task_queue,
                requested_by=request.requested_by,
            )
        if reason is None:
            restarted.append(workflow_id)
        else:
            not_restarted.append(NotRestarted(workflow_id=workflow_id, reason=reason))
    return restarted, not_restarted


async def repair(pool: asyncpg.Pool, recorded: RecordedSteps, requested_by: str) -> int:
    """Write what the record lacks of `recorded`, in one transaction; return how many steps
    were written. Steps already there write nothing; after the first one written, every
    later step's summary is applied again, so the pathway row ends as the newest step left
    it; the pathway's facts are refreshed from its events."""
    written = 0
    async with pool.acquire() as connection, connection.transaction():
        for kept in recorded.steps:
            if kept.intake is not None:
                wrote = await open_record(connection, kept.intake)
            else:
                assert kept.step is not None
                wrote = await write_step(connection, kept.step)
                if not wrote and written:
                    await write_summary(connection, kept.step)
            written += wrote
        await connection.execute("SELECT rop_refresh_facts($1)", recorded.workflow_id)
        await _log_repair(connection, recorded.workflow_id, requested_by, written)
    log.info("record repaired", workflow_id=recorded.workflow_id, steps=written)
    return written


async def _log_repair(
    connection: Connection, workflow_id: str, requested_by: str, steps: int
) -> None:
    """The repair in the access log (as `starter.access_log.record` writes a row)."""
    await connection.execute(
        "INSERT INTO access_log (principal, roles, workflow_id, action, outcome) "
        "VALUES ($1, 'operator', $2, $3, 'ok')",
        requested_by,
        workflow_id,
        f"reconcile repair ({steps} steps written from the workflow)",
    )


async def _difference(pool: asyncpg.Pool, recorded: RecordedSteps) -> Difference:
    events = [key for step in recorded.steps for key in step.event_keys()]
    tasks = [key for step in recorded.steps for key in step.task_keys()]
    row = await pool.fetchrow(
        """SELECT (SELECT phase FROM pathways WHERE workflow_id = $1) AS phase,
                  ARRAY(SELECT idempotency_key FROM pathway_events
                        WHERE idempotency_key = ANY ($2::text[])) AS events,
                  ARRAY(SELECT idempotency_key FROM tasks
                        WHERE idempotency_key = ANY ($3::text[])) AS tasks""",
        recorded.workflow_id,
        events,
        tasks,
    )
    assert row is not None
    return compare(recorded, set(row["events"]), set(row["tasks"]), row["phase"])


async def _workflows(client: Client, request: ReconcileRequest) -> set[str]:
    """The pathways' workflow ids, from Temporal's visibility (one per pathway, all runs)."""
    if request.pathway is not None:
        return {request.pathway}
    query = f'WorkflowType = "{PATHWAY_WORKFLOW}"'
    if request.task_queue is not None:
        query += f' AND TaskQueue = "{request.task_queue}"'
    if request.since is not None:
        since = datetime.combine(request.since, time(), tzinfo=OSLO).isoformat()
        query += f' AND (ExecutionStatus = "Running" OR CloseTime >= "{since}")'
    return {execution.id async for execution in client.list_workflows(query)}


async def _without_workflow(
    pool: asyncpg.Pool, known: set[str], request: ReconcileRequest
) -> list[str]:
    """Open pathways in the record (changed since `request.since`) Temporal does not list."""
    rows = await pool.fetch(
        """SELECT workflow_id FROM pathways
           WHERE phase NOT IN ('closed', 'not-in-target-group')
             AND ($1::date IS NULL OR updated_at >= $1::date)""",
        request.since,
    )
    return sorted(row["workflow_id"] for row in rows if row["workflow_id"] not in known)


UNKNOWN = RecordedSteps(workflow_id="", phase=Phase.CLOSED, steps=[])
"""What `_recorded_steps` answers for a workflow id Temporal does not know."""


async def _recorded_steps(client: Client, workflow_id: str) -> RecordedSteps | None:
    """The workflow's recorded steps; `UNKNOWN` if Temporal does not know it, None if it
    did not answer."""
    try:
        recorded: RecordedSteps = await client.get_workflow_handle(workflow_id).query(
            "recorded_steps", result_type=RecordedSteps, rpc_timeout=QUERY_TIMEOUT
        )
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            return UNKNOWN
        log.warning("reconcile: no answer", workflow_id=workflow_id, status=error.status.name)
        return None
    return recorded


async def _tell(client: Client, workflow_id: str, behind: bool, missing: int) -> None:
    """Flag the pathway (or lift its flag). A closed pathway takes no Update, and shows no
    flag: its difference is in the report alone."""
    finding = RecordBehind(behind=behind, checked_at=datetime.now(OSLO), missing_events=missing)
    try:
        await client.get_workflow_handle(workflow_id).execute_update("note_reconciliation", finding)
    except (RPCError, WorkflowUpdateFailedError) as error:
        log.info("reconcile: flag not set", workflow_id=workflow_id, error=type(error).__name__)


class ReconcileActivities:
    """The reconciliation as the worker's activity: its Temporal client and record pool."""

    def __init__(self, client: Client, pool: asyncpg.Pool) -> None:
        self._client = client
        self._pool = pool

    @activity.defn(name=RECONCILE_RECORDS)
    async def reconcile_records(self, request: ReconcileRequest) -> ReconcileReport:
        """Check (and repair, if asked). The pathways found behind show in `rop_pathways`
        (state `record_behind`, from their search attribute); one whole check's report is
        the activity's result, and logged."""
        report = await reconcile(self._client, self._pool, request)
        for line in report.lines():
            log.info("reconcile report", line=line)
        return report
