"""One place for the privacy officer's search of the access log by patient, for the HTTP API
(`GET /fhir/AuditEvent`) and the CLI (`rop access-log export --fhir`).

A patient is named by the pathway's pseudonymous reference, or by fødselsnummer or D-number
(`urn:oid:2.16.578.1.12.4.1.4.1|<number>`, `…4.2|…`). The API's database role cannot read
fødselsnummer; it finds a patient's pathways through `rop_pathways_of_patient`, a function
that returns only their ids (migration 0019).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fhir.resources.R4B.auditevent import AuditEvent

from activities.database import Connection
from rop_domain.identifiers import has_valid_check_digits
from starter import access_log, pathway_rows
from starter.fhir.audit_event import PATIENT_REFERENCE, audit_event
from starter.fhir.systems import D_NUMMER, FODSELSNUMMER

NATIONAL_IDENTIFIERS = (FODSELSNUMMER, D_NUMMER)


@dataclass(frozen=True)
class PatientQuery:
    """Whom the search is about: `value` in `system`."""

    system: str
    value: str

    @classmethod
    def by_reference(cls, reference: str) -> PatientQuery:
        return cls(PATIENT_REFERENCE, reference)

    @classmethod
    def by_identifier(cls, token: str) -> PatientQuery:
        """`system|value` as FHIR writes a token: a fødselsnummer or D-number; a `ValueError`
        says what is wrong."""
        system, bar, value = token.partition("|")
        if not bar or system not in NATIONAL_IDENTIFIERS:
            raise ValueError(f"write {FODSELSNUMMER}|<fødselsnummer> or {D_NUMMER}|<D-number>")
        if not has_valid_check_digits(value):
            raise ValueError("not a valid fødselsnummer or D-number (11 digits, check digits)")
        return cls(system, value)


async def pathways_of(connection: Connection, patient: PatientQuery) -> list[str]:
    """The workflow ids of the patient's pathways, oldest first."""
    if patient.system == PATIENT_REFERENCE:
        return await pathway_rows.pathways_of_patient(connection, patient.value)
    rows = await connection.fetch("SELECT rop_pathways_of_patient($1)", patient.value)
    return [row[0] for row in rows]


async def audit_events(
    connection: Connection,
    patient: PatientQuery,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[list[str], list[AuditEvent]]:
    """The patient's pathways, and each access to them in [since, until) as an AuditEvent
    naming the patient as they were searched for."""
    pathways = await pathways_of(connection, patient)
    records = await access_log.for_pathways(connection, pathways, since, until)
    return pathways, [audit_event(record, patient.value, patient.system) for record in records]
