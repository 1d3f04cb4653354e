"""The check that each pathway's record keeps up with its workflow, as a workflow of its own.

A Temporal Schedule runs it every night (`worker.ensure_nightly_check`), and operators run it
on demand through the HTTP API (`POST /reconcile`): either way the work is the worker's
activity (`activities.reconcile`), with the worker's database role, which may write the
steps a restored record lacks. Nothing here does I/O.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from rop_domain.commands import RECONCILE_RECORDS
    from rop_domain.reconcile import ReconcileReport, ReconcileRequest

RECONCILE_WORKFLOW = "RopReconcile"
NIGHTLY_SCHEDULE = "rop-reconcile-nightly"


@workflow.defn(name=RECONCILE_WORKFLOW)
class RopReconcile:
    """Check the pathways a request names (and repair, if it asks); answer the report."""

    @workflow.run
    async def run(self, request: ReconcileRequest | None = None) -> ReconcileReport:
        """`request` None: the nightly check of every pathway on this task queue (the
        Schedule passes no input: a payload is bound to its workflow id, and a Schedule's
        runs get ids of their own)."""
        request = request or ReconcileRequest(
            requested_by="nightly check", task_queue=workflow.info().task_queue
        )
        report: ReconcileReport = await workflow.execute_activity(
            RECONCILE_RECORDS,
            request,
            result_type=ReconcileReport,
            # 100,000 pathways at 16 at a time take minutes; a check may be run again whole.
            start_to_close_timeout=timedelta(hours=3),
            retry_policy=RetryPolicy(initial_interval=timedelta(minutes=1), maximum_attempts=3),
        )
        return report
