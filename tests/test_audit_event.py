"""The access log as FHIR AuditEvents for the privacy officer, through the HTTP API running
for real and the CLI: one AuditEvent per access to the patient's pathway, the person by HPR
number, breaking the glass marked with its reason, valid R4 (fhir.resources)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from secrets import randbelow
from typing import Any

from fhir.resources.R4B.auditevent import AuditEvent

from rop_domain.calendar import OSLO
from starter.access_log import AccessRecord, Grounds, Outcome
from starter.api.auth import Role
from starter.fhir.audit_event import ACT_REASON, HPR, PROFILE, audit_event
from starter.fhir.systems import FODSELSNUMMER
from tests import factories
from tests.api_harness import Api
from tests.cli_harness import Cli

REASON = "emergency: Pasienten er innlagt akutt og trenger kriseplanen"


def _new_national_id() -> str:
    """A fødselsnummer no other test uses (a random birth day and individual number)."""
    while True:
        day, month, year = 1 + randbelow(28), 1 + randbelow(12), randbelow(100)
        first_nine = f"{day:02d}{month:02d}{year:02d}{randbelow(500):03d}"
        try:
            return factories.national_id(first_nine)
        except ValueError:  # no valid check digits for this individual number: another
            continue


async def _accesses_to_one_patient(api: Api, national_id: str | None = None) -> tuple[str, str]:
    """A referral for a patient of this test's own, read by its unit's clinician and by a
    clinician of another unit who breaks the glass; (workflow id, patient reference)."""
    patient = f"pseudo-{uuid.uuid4().hex[:10]}"
    data = factories.referral_data(datetime.now(UTC))
    data["patient"]["reference"] = patient
    if national_id is not None:
        data["patient"]["national_id"] = national_id
    async with api.client(Role.SYSTEM) as system:
        submitted = await system.post("/referrals", json=data)
    assert submitted.status_code == 201, submitted.text
    workflow_id: str = submitted.json()["workflow_id"]
    async with api.client(Role.CLINICIAN) as clinician:
        assert (await clinician.get(f"/pathways/{workflow_id}")).status_code == 200
    stranger = api.idp.token("stranger", ["clinician"], hpr="9000999", units=["helse-bergen/PHV"])
    async with api.client(token=stranger) as other:
        broken = await other.get(f"/pathways/{workflow_id}", headers={"X-Break-Glass": REASON})
    assert broken.status_code == 200, broken.text
    return workflow_id, patient


def _events(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The bundle's AuditEvents, each valid R4 (as fhir.resources reads it)."""
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "searchset"
    events = [entry["resource"] for entry in bundle["entry"]]
    for event in events:
        AuditEvent.model_validate(event)
    return events


def _contained(event: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for r in event.get("contained", []) if r["resourceType"] == kind]


async def test_the_privacy_officer_sees_each_access_to_a_patient_as_an_audit_event(
    api: Api,
) -> None:
    _, patient = await _accesses_to_one_patient(api)
    async with api.client(Role.PRIVACY_OFFICER) as officer:
        found = await officer.get("/fhir/AuditEvent", params={"patient": patient})
        assert found.status_code == 200, found.text
        assert found.headers["content-type"].startswith("application/fhir+json")
        events = _events(found.json())
        # One per access, in order: the submission, the unit's read, the break-glass read.
        assert [e["action"] for e in events] == ["C", "R", "R"]
        submitted, read, broken = events
        assert "meta" not in submitted  # a service: no person, no profile claim
        assert read["meta"]["profile"] == [PROFILE]
        (practitioner,) = _contained(read, "Practitioner")
        assert practitioner["identifier"] == [{"system": HPR, "value": factories.CLINICIAN}]
        assert read["purposeOfEvent"][0]["coding"][0]["code"] == "TREAT"
        assert broken["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"
        assert "trenger kriseplanen" in broken["purposeOfEvent"][0]["text"]
        patients = [p for e in events for p in _contained(e, "Patient")]
        assert {p["identifier"][0]["value"] for p in patients} == {patient}
        # A period after the accesses finds none; a bad period is a 422 naming the field.
        tomorrow = (datetime.now(OSLO) + timedelta(days=1)).date().isoformat()
        later = await officer.get(
            "/fhir/AuditEvent", params={"patient": patient, "date": f"ge{tomorrow}"}
        )
        assert later.json()["total"] == 0
        bad = await officer.get("/fhir/AuditEvent", params={"patient": patient, "date": "x"})
        assert bad.status_code == 422
        # The search is itself an access, in the pathway's log.
        again = await officer.get("/fhir/AuditEvent", params={"patient": patient})
        assert _events(again.json())[-1]["outcomeDesc"] == "ok: read audit events"
    for role in (Role.OPERATOR, Role.CLINICIAN, Role.SYSTEM):
        async with api.client(role) as other_role:
            refused = await other_role.get("/fhir/AuditEvent", params={"patient": patient})
        assert refused.status_code == 403, role


async def test_rop_access_log_exports_a_pathways_audit_events(api: Api) -> None:
    workflow_id, _ = await _accesses_to_one_patient(api)
    code, out, err = await Cli.on_database(api.database_url)("access-log", workflow_id, "--fhir")
    assert code == 0, err
    events = _events(json.loads(out))
    assert [e["action"] for e in events] == ["C", "R", "R"]


async def test_the_privacy_officer_finds_a_patient_by_fodselsnummer(api: Api) -> None:
    national_id = _new_national_id()
    await _accesses_to_one_patient(api, national_id)
    by_number = f"{FODSELSNUMMER}|{national_id}"
    wrong_check_digit = (int(national_id[-1]) + 1) % 10
    async with api.client(Role.PRIVACY_OFFICER) as officer:
        found = await officer.get("/fhir/AuditEvent", params={"patient:identifier": by_number})
        assert found.status_code == 200, found.text
        events = _events(found.json())
        assert [e["action"] for e in events] == ["C", "R", "R"]
        patients = [p for e in events for p in _contained(e, "Patient")]
        assert {(p["identifier"][0]["system"], p["identifier"][0]["value"]) for p in patients} == {
            (FODSELSNUMMER, national_id)
        }
        # A number that is not one, a system that is not a national identifier, or both ways
        # of naming the patient at once: 422, naming the parameter.
        for params in (
            {"patient:identifier": f"{FODSELSNUMMER}|{national_id[:10]}{wrong_check_digit}"},
            {"patient:identifier": f"urn:oid:2.16.578.1.12.4.1.4.4|{national_id}"},
            {"patient:identifier": by_number, "patient": "pseudo-1"},
        ):
            refused = await officer.get("/fhir/AuditEvent", params=params)
            assert refused.status_code == 422, params
            assert refused.json()["errors"][0]["field"].startswith("patient"), refused.text
    # The CLI exports the same, the officer's search among them; its export is an access too.
    rop = Cli.on_database(api.database_url)
    code, out, err = await rop("access-log", "export", "--fhir", "--patient-identifier", by_number)
    assert code == 0, err
    exported = _events(json.loads(out))
    assert [e["action"] for e in exported] == ["C", "R", "R", "R"]
    assert exported[-1]["outcomeDesc"] == "ok: read audit events"
    code, out, _ = await rop("access-log", "export", "--fhir", "--patient-identifier", by_number)
    assert len(_events(json.loads(out))) == 5  # the first export, logged
    code, _, err = await rop("access-log", "export", "--patient-identifier", by_number)
    assert (code, err.strip()) == (1, "error: export writes FHIR AuditEvents: give --fhir")


def test_a_stated_purpose_of_use_is_the_events_purpose() -> None:
    record = AccessRecord(
        id=1,
        at=datetime.now(UTC),
        principal="jwt:sub@https://helseid-sts.nhn.no",
        roles="clinician",
        workflow_id="rop-T-1",
        action="read status",
        outcome=Outcome.OK,
        grounds=Grounds.UNIT,
        person=factories.CLINICIAN,
        organisation="974557746",
        purpose="COC",
        decision_ref="vedtak-4711",
    )
    event = audit_event(record, "pseudo-1").model_dump(mode="json", exclude_none=True)
    assert event["purposeOfEvent"] == [
        {
            "coding": [{"system": ACT_REASON, "code": "COC"}],
            "text": "decision reference vedtak-4711",
        }
    ]
