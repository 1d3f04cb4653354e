"""Restart a pathway from its record when Temporal has lost its workflow (`rop reconcile
--restart`).

A namespace lost, or a cluster rebuilt without its database: the record still holds every
pathway, and with each step the pathway as that step left it (`pathway_snapshots`, written in
the step's own statement). A restart starts the pathway's workflow again under its own id
from that snapshot, with the referral rebuilt from the pathway's row, as continue-as-new
starts a run: its key counter goes on from the record's (no later step meets an earlier
step's key), its deadlines and open tasks are the record's, and its timers are set afresh
(a reminder already sent is not sent again; one that fell due while no workflow ran goes out
at once). Deliveries that were under way are delivered again (deliveries are idempotent:
one that went out is not sent twice).

A pathway is only restarted when Temporal does not know its id, and each restart is an
access-log entry of its own.
"""

from __future__ import annotations

import asyncpg
import structlog
from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.database import Connection
from activities.records import recommended_participants
from rop_domain.commands import DELIVERY_WINDOW, Snapshot
from rop_domain.models import FINAL_PHASES, Phase, Referral
from rop_domain.state import PathwayInput, unpack_snapshot
from workflows import search_attributes as sa
from workflows.status_view import pathway_summary

log = structlog.get_logger(__name__)

PATHWAY_WORKFLOW = "RopPathway"
"""The pathway workflow's type, as `workflows.pathway` registers it (and reconcile lists it)."""

NO_RECORD = "no row in the record"
ENDED = "ended in the record"
NO_SNAPSHOT = (
    "the record holds no snapshot (a pathway from before migration 0016 with no step since)"
)
KNOWN = "Temporal knows its workflow"


async def restart(
    client: Client,
    connection: Connection,
    workflow_id: str,
    *,
    task_queue: str,
    requested_by: str,
) -> str | None:
    """Start `workflow_id`'s workflow again from its record; None if it was, else why not."""
    row = await connection.fetchrow(
        """SELECT p.*, s.sequence, s.snapshot FROM pathways p
           LEFT JOIN pathway_snapshots s USING (workflow_id)
           WHERE p.workflow_id = $1""",
        workflow_id,
    )
    reason = _why_not(row)
    if reason is not None or await _known(client, workflow_id):
        return reason or KNOWN
    assert row is not None
    pathway = await _input_from(connection, row)
    try:
        await client.start_workflow(
            PATHWAY_WORKFLOW,
            pathway,
            id=workflow_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=_search_attributes(pathway, row),
            static_summary=pathway_summary(pathway.referral),
            static_details=(
                f"Restarted from the record (its step {row['sequence']}) by {requested_by}: "
                "Temporal had lost its workflow."
            ),
        )
    except WorkflowAlreadyStartedError:
        return KNOWN
    await connection.execute(
        "INSERT INTO access_log (principal, roles, workflow_id, action, outcome) "
        "VALUES ($1, 'operator', $2, $3, 'ok')",
        requested_by,
        workflow_id,
        f"reconcile restart (from the record's snapshot at key {row['sequence']})",
    )
    log.warning("pathway restarted from its record", workflow_id=workflow_id)
    return None


def _why_not(row: asyncpg.Record | None) -> str | None:
    """Why the record cannot restart the pathway, if it cannot."""
    if row is None:
        return NO_RECORD
    if Phase(row["phase"]) in FINAL_PHASES:
        return ENDED
    if row["snapshot"] is None:
        return NO_SNAPSHOT
    return None


async def _input_from(connection: Connection, row: asyncpg.Record) -> PathwayInput:
    """The workflow's input as continue-as-new would give it, from the record."""
    referral = referral_of(row)
    snapshot = unpack_snapshot(Snapshot(sequence=row["sequence"], packed=row["snapshot"]))
    state = snapshot.state
    state.runs += 1
    state.record_behind = False
    if not state.participants:  # lost before its first step: the intake found them
        state.participants = await recommended_participants(
            connection, referral.health_trust, referral.municipality, referral.general_practitioner
        )
    return PathwayInput(
        referral=referral,
        settings=snapshot.settings,
        state=state,
        redeliver=await _deliveries_under_way(connection, row["workflow_id"]),
    )


def _search_attributes(pathway: PathwayInput, row: asyncpg.Record) -> TypedSearchAttributes:
    """What operators filter on from the start, as the starter sets them for a new pathway."""
    assert pathway.state is not None
    values = sa.pathway_values(
        phase=pathway.state.phase.value,
        referral=pathway.referral,
        meeting_deadline=row["meeting_deadline"],
        has_crisis_plan=pathway.state.crisis_plan is not None,
        overdue=bool(row["overdue"]),
    )
    return TypedSearchAttributes([SearchAttributePair(key, value) for key, value in values])


def referral_of(row: asyncpg.Record) -> Referral:
    """The referral as the pathway's row keeps it (all of it but the patient's name, which
    only the encrypted referral carried)."""
    get = row.__getitem__
    return Referral.model_validate(
        {
            "referral_id": get("referral_id"),
            "received_at": get("received_at"),
            "source": get("source"),
            "referrer": get("referrer"),
            "receiving_unit": get("receiving_unit"),
            "health_trust": get("health_trust"),
            "municipality": get("municipality"),
            "responsible_clinician": get("responsible_clinician"),
            "general_practitioner": get("general_practitioner"),
            "patient": {
                "reference": get("patient_reference"),
                "national_id": get("patient_national_id"),
            },
            "pathway_reason": get("pathway_reason"),
            "birth_year": get("birth_year"),
            "residence": get("residence"),
        }
    )


async def _known(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def _deliveries_under_way(connection: Connection, workflow_id: str) -> list[str]:
    """Tasks raised within the delivery window whose delivery had not ended (none sent, none
    given up): the lost workflow was delivering them."""
    rows = await connection.fetch(
        """SELECT t.idempotency_key FROM tasks t
           WHERE t.workflow_id = $1 AND t.created_at > now() - $2::interval
             AND NOT EXISTS (SELECT FROM deliveries d WHERE d.task_id = t.id
                             AND d.status IN ('sent', 'task-list', 'failed'))
           ORDER BY t.id""",
        workflow_id,
        DELIVERY_WINDOW,
    )
    return [row["idempotency_key"] for row in rows]
