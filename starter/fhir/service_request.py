"""A FHIR R4 ServiceRequest in, our referral out.

`fhir.resources`' R4B models parse the resource (R4B and R4 are the same for
ServiceRequest, Patient, Practitioner and Organization); then each referral field is
read from where a Norwegian referring system puts it:

| referral field          | ServiceRequest                                                   |
|-------------------------|------------------------------------------------------------------|
| referral_id             | `identifier[0].value`                                            |
| received_at             | `authoredOn` (with a time zone); the time of receipt if absent  |
| source                  | `category` coding in `REFERRAL_SOURCE`                           |
| referrer                | `requester`: its identifier (HPR or other), directly or contained |
| receiving_unit          | `performerType` coding in `RECEIVING_UNIT` (TSB or PHV)          |
| health_trust            | `performer`: the identifier in `HEALTH_TRUST`                    |
| responsible_clinician   | `performer`: the HPR number                                      |
| patient.national_id     | `subject` Patient: identifier in the fødselsnummer/D-nummer OID  |
| patient.reference       | `subject` Patient: identifier in `PATIENT_REFERENCE`, else the referral id |
| patient.name            | `subject` Patient: `name[0]` (text, or given and family)        |
| municipality            | `subject` Patient: `address[].extension` no-basis-municipalitycode |
| general_practitioner    | `subject` Patient: `generalPractitioner` HPR number              |

A field that is missing or wrong is reported with its FHIR path, as a 422 at the API.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic import ValidationError

from rop_domain.models import Referral, ValidationPolicy, parse_referral
from starter.fhir import systems


class FhirMappingError(Exception):
    """The resource is not a referral we can read; `problems` are (FHIR path, message)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{path}: {message}" for path, message in problems))
        self.problems = problems


_REFERRAL_PATHS = {
    "referral_id": "identifier",
    "received_at": "authoredOn",
    "source": "category",
    "referrer": "requester",
    "receiving_unit": "performerType",
    "health_trust": "performer",
    "responsible_clinician": "performer",
    "municipality": "subject.address.extension",
    "general_practitioner": "subject.generalPractitioner",
    "patient.national_id": "subject.identifier",
    "patient.reference": "subject.identifier",
    "patient.name": "subject.name",
}
"""Where a referral field came from, to name the FHIR path when it is invalid."""


def referral_from_service_request(
    data: bytes | dict[str, Any], policy: ValidationPolicy, *, now: datetime | None = None
) -> Referral:
    """Read a referral out of a ServiceRequest (JSON bytes or parsed)."""
    try:
        request = (
            ServiceRequest.model_validate(data)
            if isinstance(data, dict)
            else ServiceRequest.model_validate_json(data)
        )
    except ValidationError as error:
        raise FhirMappingError(
            [(".".join(str(p) for p in e["loc"]) or "(resource)", e["msg"]) for e in error.errors()]
        ) from None
    problems: list[tuple[str, str]] = []
    fields = _fields(request, problems, now or datetime.now(UTC))
    if problems:
        raise FhirMappingError(problems)
    try:
        return parse_referral(fields, policy)
    except ValidationError as error:
        raise FhirMappingError(
            [
                (_REFERRAL_PATHS.get(".".join(str(p) for p in e["loc"]), "(resource)"), e["msg"])
                for e in error.errors()
            ]
        ) from None


def _fields(
    request: ServiceRequest, problems: list[tuple[str, str]], now: datetime
) -> dict[str, Any]:
    def need(path: str, value: Any, message: str) -> Any:
        if value is None:
            problems.append((path, message))
        return value

    if request.status != "active":
        problems.append(("status", "only an active ServiceRequest is a referral"))
    contained = {r.id: r for r in request.contained or [] if r.id}
    referral_id = next((i.value for i in request.identifier or [] if i.value), None)
    received_at: Any = request.authoredOn or now
    if isinstance(received_at, datetime) and received_at.tzinfo is None:
        problems.append(("authoredOn", "give a time zone"))
    patient = _resolve(request.subject, contained)
    if not isinstance(patient, Patient):
        problems.append(("subject", "refer to a Patient (contained, '#id')"))
        patient = Patient()
    performers = [_identifiers(p, contained) for p in request.performer or []]
    fields: dict[str, Any] = {
        "referral_id": need("identifier", referral_id, "give the referral's identifier"),
        "received_at": received_at,
        "source": need(
            "category",
            _code(request.category or [], systems.REFERRAL_SOURCE),
            f"give a category coding in {systems.REFERRAL_SOURCE}",
        ),
        "referrer": need(
            "requester",
            next((i.value for i in _identifiers(request.requester, contained) if i.value), None),
            "give the requester's identifier (HPR number or unit id)",
        ),
        "receiving_unit": need(
            "performerType",
            _code([request.performerType] if request.performerType else [], systems.RECEIVING_UNIT),
            f"give a performerType coding in {systems.RECEIVING_UNIT} (TSB or PHV)",
        ),
        "health_trust": need(
            "performer",
            _value_in(performers, systems.HEALTH_TRUST),
            f"give a performer Organization with an identifier in {systems.HEALTH_TRUST}",
        ),
        "responsible_clinician": need(
            "performer",
            _value_in(performers, systems.HPR),
            "give a performer Practitioner with an HPR number",
        ),
        "municipality": need(
            "subject.address.extension",
            _municipality(patient),
            f"give the patient's municipality ({systems.MUNICIPALITY_EXTENSION})",
        ),
        "general_practitioner": _value_in(
            [_identifiers(gp, contained) for gp in patient.generalPractitioner or []], systems.HPR
        ),
        "patient": {
            "reference": _value_in([patient.identifier or []], systems.PATIENT_REFERENCE)
            or referral_id,
            "national_id": next(
                (i.value for i in patient.identifier or [] if i.system in systems.NATIONAL_IDS),
                None,
            ),
            "name": _name(patient),
        },
        "pathway_reason": _code(request.reasonCode or [], systems.PATHWAY_REASON),
        "birth_year": _birth_year(patient),
    }
    return fields


def _birth_year(patient: Patient) -> int | None:
    born = patient.birthDate
    return born.year if born is not None else None


def _resolve(reference: Reference | None, contained: dict[str, Any]) -> Any:
    if reference is None or not reference.reference:
        return None
    if reference.reference.startswith("#"):
        return contained.get(reference.reference[1:])
    return None


def _identifiers(reference: Reference | None, contained: dict[str, Any]) -> list[Identifier]:
    """The reference's own identifier, and those of the contained resource it points at."""
    if reference is None:
        return []
    found = [reference.identifier] if reference.identifier else []
    target = _resolve(reference, contained)
    return found + list(getattr(target, "identifier", None) or [])


def _value_in(groups: list[list[Identifier]], system: str) -> str | None:
    return next((i.value for group in groups for i in group if i.system == system), None)


def _code(concepts: list[Any], system: str) -> str | None:
    return next(
        (c.code for concept in concepts for c in concept.coding or [] if c.system == system),
        None,
    )


def _municipality(patient: Patient) -> str | None:
    """The kommunenummer: on `Address.district` as HL7 Norway's no-basis puts it, or on the
    `Address` itself as senders did before."""
    for address in patient.address or []:
        district = address.district__ext
        for extension in [
            *(district.extension or [] if district else []),
            *(address.extension or []),
        ]:
            if extension.url == systems.MUNICIPALITY_EXTENSION:
                coding = extension.valueCoding
                return coding.code if coding is not None else extension.valueCode
    return None


def _name(patient: Patient) -> str | None:
    for name in patient.name or []:
        if name.text:
            return str(name.text)
        parts = [*(name.given or []), name.family]
        text = " ".join(str(p) for p in parts if p)
        if text:
            return text
    return None
