"""The record service: the pathway's summary row, its event log, its task outbox and the
contact directory.

Every write is idempotent. A retried activity meets the unique idempotency key of
its own earlier write and changes nothing, so no step is ever recorded twice and no
task is raised twice. A step's events, summary change and tasks are written by one
statement (`activities.step_statement`), so they commit together.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import timedelta

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contact_directory import her_routes
from activities.database import Connection
from activities.step_statement import write_step
from rop_domain import parties
from rop_domain.commands import (
    FIND_UNIT_LEADER,
    OPEN_PATHWAY,
    RECORD_REFUSED,
    RECORD_STEP,
    EventKind,
    Intake,
    LeaderQuery,
    NewPathway,
    Notification,
    PathwayEvent,
    PathwayStep,
    SummaryChange,
)
from rop_domain.models import NO_ADDRESS, Participant, ParticipantRole
from rop_domain.routing import Channel, RoutingTable


class RecordActivities:
    """Activities over the record database; construct with an asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool, routing: RoutingTable | None = None) -> None:
        self._pool = pool
        self._routing = routing or RoutingTable(email_unrouted_addresses=False)

    async def _to_deliver(self, notifications: list[Notification]) -> list[str]:
        """Keys of the tasks a channel must deliver (the rest stay on the task list): by the
        routing table, and a GP by their directory entry's HER address (`her_routes`)."""
        recipients = [n.recipient for n in notifications]
        by_directory = await her_routes(self._pool, self._routing, recipients)
        return [
            n.idempotency_key
            for n in notifications
            if n.recipient in by_directory
            or self._routing.route_for(n.recipient).channel is not Channel.TASK_LIST
        ]

    @activity.defn(name=OPEN_PATHWAY)
    async def open_pathway(self, pathway: NewPathway) -> Intake:
        """Write the referral's pathway row, its first event and first tasks, once; return the
        recommended meeting participants (one round trip for the whole intake)."""
        referral = pathway.referral
        with refusals_are_final():
            inserted = await self._open(pathway)
        activity.logger.info("pathway opened" if inserted else "pathway already recorded")
        participants = await self.resolve_participants(
            referral.health_trust, referral.municipality, referral.general_practitioner
        )
        return Intake(
            participants=participants, deliveries=await self._to_deliver(pathway.notifications)
        )

    async def _open(self, pathway: NewPathway) -> bool:
        async with self._pool.acquire() as connection, connection.transaction():
            return await open_record(connection, pathway)

    @activity.defn(name=RECORD_STEP)
    async def record_step(self, step: PathwayStep) -> list[str]:
        """Record a step: its events, their summary changes, closed and new tasks.

        Returns the keys of the step's tasks that a channel must deliver, the same on a
        retry (which finds the step recorded and writes nothing). A step whose content the
        database refuses fails at once (`RECORD_REFUSED`), having written nothing.
        """
        started = time.monotonic()
        with refusals_are_final():
            recorded = await write_step(self._pool, step)
        activity.metric_meter().create_histogram_timedelta(
            "rop_record_step_seconds", "time to write one pathway step's record"
        ).record(timedelta(seconds=time.monotonic() - started))
        if not recorded:
            activity.logger.info(
                "step already recorded", extra={"event_kind": step.events[0].kind.value}
            )
            return await self._to_deliver(step.notifications)
        activity.logger.info(
            "step recorded",
            extra={
                "event_kinds": [e.kind.value for e in step.events],
                "tasks": [n.kind.value for n in step.notifications],
            },
        )
        return await self._to_deliver(step.notifications)

    async def resolve_participants(
        self, health_trust: str, municipality: str, general_practitioner: str | None
    ) -> list[Participant]:
        """The recommended meeting participants (`recommended_participants`). Part of
        `open_pathway` (one round trip for the intake), not an activity of its own."""
        return await recommended_participants(
            self._pool, health_trust, municipality, general_practitioner
        )

    @activity.defn(name=FIND_UNIT_LEADER)
    async def find_unit_leader(self, query: LeaderQuery) -> str | None:
        """The address of the receiving unit's leader contact, if the directory has one."""
        address: str | None = await self._pool.fetchval(
            """SELECT address FROM contact_points
               WHERE role = 'leder' AND health_trust = $1 AND receiving_unit = $2
               ORDER BY id LIMIT 1""",
            query.health_trust,
            query.receiving_unit.value,
        )
        return address


async def open_record(connection: Connection, pathway: NewPathway) -> bool:
    """Write a new pathway's row, its first event, first tasks and first snapshot, in the
    caller's transaction; False if the row is there already (an earlier attempt, or a
    repair)."""
    referral = pathway.referral
    inserted = await connection.fetchval(
        """INSERT INTO pathways (
               workflow_id, referral_id, received_at, source, referrer, receiving_unit,
               health_trust, municipality, responsible_clinician, general_practitioner,
               patient_reference, patient_national_id, phase, meeting_deadline,
               pathway_reason, birth_year, residence)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
                   'awaiting-assessment', $13, $14, $15, $16)
           ON CONFLICT (workflow_id) DO NOTHING
           RETURNING true""",
        pathway.workflow_id,
        referral.referral_id,
        referral.received_at,
        referral.source.value,
        referral.referrer,
        referral.receiving_unit.value,
        referral.health_trust,
        referral.municipality,
        referral.responsible_clinician,
        referral.general_practitioner,
        referral.patient.reference,
        referral.patient.national_id,
        pathway.meeting_deadline,
        referral.pathway_reason,
        referral.birth_year,
        referral.residence,
    )
    if inserted:
        received = PathwayEvent(
            idempotency_key=f"{pathway.workflow_id}/referral-received",
            workflow_id=pathway.workflow_id,
            kind=EventKind.REFERRAL_RECEIVED,
            actor=referral.referrer,
            occurred_at=referral.received_at,
            change=SummaryChange(),
            details={"source": referral.source.value},
        )
        await write_step(
            connection,
            PathwayStep(events=[received], notifications=pathway.notifications),
            parties.of_referral(pathway.workflow_id, referral, received.idempotency_key),
        )
        if pathway.snapshot is not None:
            await connection.execute(
                """INSERT INTO pathway_snapshots (workflow_id, sequence, snapshot, taken_at)
                   VALUES ($1, $2, $3, $4) ON CONFLICT (workflow_id) DO NOTHING""",
                pathway.workflow_id,
                pathway.snapshot.sequence,
                pathway.snapshot.packed,
                referral.received_at,
            )
    return bool(inserted)


@contextlib.contextmanager
def refusals_are_final() -> Iterator[None]:
    """Tell a refusal of the step's content from trouble with the database.

    A data error (class 22: a character the database cannot store, a value out of range)
    or a constraint violation (class 23) comes back the same on every retry, so it fails
    the activity for good, and the workflow refuses the step. Anything else (a lost
    connection, a database restarting) is retried. The message names the error class and
    SQLSTATE only: PostgreSQL's own message and detail may quote the step's content, and
    failure messages are stored unencrypted in the pathway's history.
    """
    try:
        yield
    except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as error:
        sqlstate = getattr(error, "sqlstate", None) or "none"
        activity.logger.error(
            "record refused the step", extra={"error": type(error).__name__, "sqlstate": sqlstate}
        )
        raise ApplicationError(
            f"the record database refused the step ({type(error).__name__}, SQLSTATE {sqlstate})",
            type=RECORD_REFUSED,
            non_retryable=True,
        ) from None


async def recommended_participants(
    database: asyncpg.Pool | Connection,
    health_trust: str,
    municipality: str,
    general_practitioner: str | None,
) -> list[Participant]:
    """The parties recommended for the first meeting: PHV and TSB of the trust, the
    referral's GP and the patient's municipality, always (the local pathway's rule). The
    contact directory says how to reach them (and may add parties), never whether they
    are recommended: a party it lacks is recommended with `NO_ADDRESS`, and the
    clinician reaches it otherwise.
    """
    rows = await database.fetch(
        """SELECT role, name, address FROM contact_points
           WHERE (role IN ('phv', 'tsb') AND health_trust = $1)
              OR (role = 'kommune' AND municipality = $2)
              OR (role = 'fastlege' AND hpr_number = $3)
           ORDER BY array_position(ARRAY['phv', 'tsb', 'fastlege', 'kommune'], role), id""",
        health_trust,
        municipality,
        general_practitioner,
    )
    found = [
        Participant(role=ParticipantRole(row["role"]), name=row["name"], address=row["address"])
        for row in rows
    ]
    known = {p.role for p in found}
    required = [
        (ParticipantRole.PHV, f"PHV, {health_trust}"),
        (ParticipantRole.TSB, f"TSB, {health_trust}"),
        *(
            [(ParticipantRole.FASTLEGE, f"Fastlege (HPR {general_practitioner})")]
            if general_practitioner
            else []
        ),
        (ParticipantRole.KOMMUNE, f"Kommune {municipality}"),
    ]
    order = [role for role, _ in required]
    found += [
        Participant(role=role, name=name, address=NO_ADDRESS)
        for role, name in required
        if role not in known
    ]
    return sorted(found, key=lambda p: order.index(p.role) if p.role in order else len(order))
