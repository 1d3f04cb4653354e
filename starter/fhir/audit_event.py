"""The access log as FHIR R4 AuditEvents, shaped as HL7 Norway's AuditEvent guide asks.

One AuditEvent per access to a patient's pathway (an access-log row): who (a person by HPR
number, in a contained PractitionerRole with the organisation they acted for by
organisation number; a service by its name), what (the pathway, and the action as
Create/Read/Update/Execute), when, the outcome, the purpose (`TREAT`, `ETREAT` for breaking
the glass with its reason, `HOPERAT` for operations) and the patient, by the guide's patient
extension. The patient is named as the privacy officer searched: by fødselsnummer or
D-number (`patient:identifier`, the pathways found by a function the API's role may call
though it cannot read the column: migrations 0006, 0019), or by the pathway's pseudonymous
reference.

The guide profiles person accesses (`agent.who` a PractitionerRole); a service's access has
no person and carries no profile claim.
"""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.auditevent import AuditEvent

from starter.access_log import AccessRecord, Grounds, Outcome

PROFILE = "http://hl7.no/fhir/StructureDefinition/no-domain-Trustframework-Auditevent"
PATIENT_EXTENSION = "http://hl7.no/fhir/StructureDefinition/auditevent-patient-extension"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
HPR = "urn:oid:2.16.578.1.12.4.1.4.4"
ORGNR = "urn:oid:2.16.578.1.12.4.1.4.101"
PATIENT_REFERENCE = "https://rop-forlop.no/fhir/patient-reference"
PATHWAY = "https://rop-forlop.no/fhir/pathway"

_OUTCOMES = {
    Outcome.OK: "0",
    Outcome.REJECTED: "4",
    Outcome.NOT_FOUND: "4",
    Outcome.DENIED: "4",
    Outcome.FAILED: "8",
}
"""AuditEvent.outcome: success, minor failure (refused, not found), serious failure."""


def action_code(action: str) -> str:
    """AuditEvent.action for an access-log action: Create, Read, Update or Execute."""
    if action.startswith(("read", "list", "decode")):
        return "R"
    if action.startswith("submit"):
        return "C"
    if action.startswith(("reconcile", "resend")):
        return "E"
    return "U"


def audit_event(record: AccessRecord, patient: str, system: str = PATIENT_REFERENCE) -> AuditEvent:
    """The access `record` to the pathway of the patient identified by `patient` in `system`
    (the pseudonymous reference unless a national identifier's system is given)."""
    person = record.person is not None
    contained: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "id": "patient",
            "identifier": [{"system": system, "value": patient}],
        }
    ]
    if person:
        contained += _practitioner_role(record)
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(record.id),
        "contained": contained,
        "extension": [{"url": PATIENT_EXTENSION, "valueReference": {"reference": "#patient"}}],
        "type": {"system": DCM, "code": "110110", "display": "Patient Record"},
        "action": action_code(record.action),
        "recorded": record.at.isoformat(),
        "outcome": _OUTCOMES[record.outcome],
        "outcomeDesc": f"{record.outcome.value}: {record.action}",
        "purposeOfEvent": [_purpose(record)],
        "agent": [
            {
                "who": {"reference": "#role"} if person else {"display": record.principal},
                "altId": record.principal,
                "requestor": True,
                "role": [{"text": record.roles}],
            }
        ],
        "source": {
            "site": "rop-forlop",
            "observer": {"display": "rop-forlop"},
            "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
        "entity": [
            {
                "what": {
                    "identifier": {"system": PATHWAY, "value": record.workflow_id},
                    "display": "ROP pathway",
                },
                "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            }
        ],
    }
    if person:
        event["meta"] = {"profile": [PROFILE]}
    return AuditEvent.model_validate(event)


def _practitioner_role(record: AccessRecord) -> list[dict[str, Any]]:
    """The person (HPR number) and the organisation they acted for, where known."""
    role: dict[str, Any] = {
        "resourceType": "PractitionerRole",
        "id": "role",
        "active": True,
        "practitioner": {"reference": "#practitioner"},
    }
    resources: list[dict[str, Any]] = [
        {
            "resourceType": "Practitioner",
            "id": "practitioner",
            "identifier": [{"system": HPR, "value": record.person}],
        }
    ]
    if record.organisation is not None:
        resources.append(
            {
                "resourceType": "Organization",
                "id": "organisation",
                "identifier": [{"system": ORGNR, "value": record.organisation}],
            }
        )
        role["organization"] = {"reference": "#organisation"}
    return [role, *resources]


def _purpose(record: AccessRecord) -> dict[str, Any]:
    if record.purpose is not None:  # as the sign-in's trust-framework grounds state it
        stated: dict[str, Any] = {"coding": [{"system": ACT_REASON, "code": record.purpose}]}
        if record.decision_ref is not None:
            stated["text"] = f"decision reference {record.decision_ref}"
        return stated
    if record.grounds is Grounds.BREAK_GLASS:
        return {
            "coding": [{"system": ACT_REASON, "code": "ETREAT", "display": "Emergency Treatment"}],
            "text": f"break-glass: {record.reason or ''}".strip(),
        }
    if record.grounds is Grounds.SERVICE and "clinician" not in record.roles:
        return {
            "coding": [
                {"system": ACT_REASON, "code": "HOPERAT", "display": "healthcare operations"}
            ]
        }
    return {"coding": [{"system": ACT_REASON, "code": "TREAT", "display": "Treatment"}]}


def searchset(events: list[AuditEvent]) -> dict[str, Any]:
    """A FHIR searchset Bundle of the events."""
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(events),
        "entry": [
            {
                "fullUrl": f"AuditEvent/{event.id}",
                "resource": event.model_dump(mode="json", exclude_none=True),
                "search": {"mode": "match"},
            }
            for event in events
        ],
    }
