"""Identifier and code systems: Norway's official OIDs, and rop-forlop's own where none exists.

The Norwegian OIDs are those of the Directorate of e-health's identifier registry
(fødselsnummer, D-nummer, HPR number) and the municipality code extension of HL7 Norway's
no-basis profiles.
"""

FODSELSNUMMER = "urn:oid:2.16.578.1.12.4.1.4.1"
D_NUMMER = "urn:oid:2.16.578.1.12.4.1.4.2"
HPR = "urn:oid:2.16.578.1.12.4.1.4.4"
NATIONAL_IDS = frozenset({FODSELSNUMMER, D_NUMMER})

MUNICIPALITY_EXTENSION = "http://hl7.no/fhir/StructureDefinition/no-basis-municipalitycode"
_ROP = "https://rop-forlop.no/fhir"
REFERRAL_SOURCE = f"{_ROP}/CodeSystem/referral-source"
PATHWAY_REASON = f"{_ROP}/CodeSystem/pathway-reason"
RECEIVING_UNIT = f"{_ROP}/CodeSystem/receiving-unit"
MEASURE_KIND = f"{_ROP}/CodeSystem/measure-kind"
TASK_KIND = f"{_ROP}/CodeSystem/task-kind"
PARTICIPANT_ROLE = f"{_ROP}/CodeSystem/participant-role"
CARE_ACTIVITY = f"{_ROP}/CodeSystem/care-activity"
MADE_WITH_PATIENT = f"{_ROP}/StructureDefinition/crisis-plan-made-with-patient"
RELATIVES_INVOLVED = f"{_ROP}/StructureDefinition/crisis-plan-relatives-involved"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PATHWAY_PHASE = f"{_ROP}/CodeSystem/pathway-phase"
HEALTH_TRUST = f"{_ROP}/sid/health-trust"
PATIENT_REFERENCE = f"{_ROP}/sid/patient-reference"
PATHWAY = f"{_ROP}/sid/pathway"
TASK = f"{_ROP}/sid/task"
LOCAL_ID = f"{_ROP}/sid/local-id"
"""A person or unit named by an id of ours (koordinator, responsible unit, recipient)."""
